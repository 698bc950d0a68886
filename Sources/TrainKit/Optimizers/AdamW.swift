import Foundation
import TensorKit

/// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization"), in PyTorch's
/// arrangement: p ← p·(1 − lr·λ), then p ← p − lr · m̂ / (√v̂ + ε) with bias-corrected moments.
public struct AdamWConfig: Sendable, Equatable {
    public var learningRate: Float = 1e-4
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8
    public var weightDecay: Float = 0.01

    public init(learningRate: Float = 1e-4, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0.01) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }
}

/// Optimiser state for one parameter tensor (first and second moments, allocated on first step).
public final class AdamW {
    public let config: AdamWConfig
    public internal(set) var step = 0
    private var m: [Float] = []
    private var v: [Float] = []
    var moments: (m: [Float], v: [Float]) {
        get { (m, v) }
        set { (m, v) = newValue }
    }

    public init(config: AdamWConfig) { self.config = config }

    /// One update of `parameters` (count values) with `gradients`; `learningRate` overrides the
    /// config's (for schedules).
    public func update(_ parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, count: Int,
                       learningRate: Float? = nil) {
        if m.isEmpty {
            m = [Float](repeating: 0, count: count)
            v = [Float](repeating: 0, count: count)
        }
        precondition(m.count == count, "AdamW state was created for \(m.count) parameters")
        step += 1
        let c = config, lr = learningRate ?? c.learningRate
        let correction1 = 1 - powf(c.beta1, Float(step)), correction2 = 1 - powf(c.beta2, Float(step))
        for i in 0..<count {
            let g = gradients[i]
            m[i] = c.beta1 * m[i] + (1 - c.beta1) * g
            v[i] = c.beta2 * v[i] + (1 - c.beta2) * g * g
            parameters[i] *= 1 - lr * c.weightDecay
            parameters[i] -= lr * (m[i] / correction1) / ((v[i] / correction2).squareRoot() + c.epsilon)
        }
    }
}
