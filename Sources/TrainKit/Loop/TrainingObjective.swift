import Foundation
import TensorKit

/// What a trainer plugs into `TrainingLoop`: its examples, its loss and its metrics.
public protocol TrainingObjective: AnyObject {
    associatedtype Example
    /// The tensors the optimiser updates, with their gradients, in a fixed order.
    var parameters: [(name: String, value: Tensor, gradient: Tensor)] { get }
    /// Adds `weight` · ∇(mean loss over `batch`) into the gradients; returns the batch's mean metrics
    /// (always including "loss").
    func accumulate(_ batch: [Example], weight: Float) -> [String: Double]
    /// The batch's mean metrics, without gradients or dropout.
    func evaluate(_ batch: [Example]) -> [String: Double]
    /// Tokens one example puts through the model (for micro-batch sizing and throughput).
    func tokenCount(_ example: Example) -> Int
}

/// Example-weighted running means of metrics.
struct MetricMeans {
    private(set) var sums: [String: Double] = [:]
    private(set) var count = 0

    mutating func add(_ metrics: [String: Double], examples: Int) {
        for (k, v) in metrics { sums[k, default: 0] += v * Double(examples) }
        count += examples
    }

    var means: [String: Double] { sums.mapValues { $0 / Double(max(count, 1)) } }
}
