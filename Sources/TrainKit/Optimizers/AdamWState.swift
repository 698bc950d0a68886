import Foundation

extension AdamW {
    /// The optimiser's state, for checkpoints: step count and both moment vectors.
    public var state: (step: Int, m: [Float], v: [Float]) { (step, moments.m, moments.v) }

    /// Restores a state saved by `state`.
    public func restore(step: Int, m: [Float], v: [Float]) {
        precondition(m.count == v.count)
        self.step = step
        moments = (m, v)
    }
}
