import Foundation
import ModelKit
import TensorKit

/// Supervised fine-tuning with LoRA: mean negative log-likelihood of the response tokens (the
/// prompt is context only, TRL's completion-only loss).
public final class SFTTrainer: TrainingObjective {
    public let model: TrainableTransformer
    public let head: TokenLogProbHead

    public init(model: TrainableTransformer) {
        self.model = model
        head = TokenLogProbHead(head: model.base.weights.head)
    }

    public var parameters: [(name: String, value: Tensor, gradient: Tensor)] { model.adapter?.parameters ?? [] }
    public func tokenCount(_ e: SFTExample) -> Int { e.prompt.count + e.response.count }

    func layout(_ batch: [SFTExample]) -> (sequences: [[Int32]], rows: [Int], targets: [Int32]) {
        var sequences: [[Int32]] = [], rows: [Int] = [], targets: [Int32] = []
        var offset = 0
        for e in batch {
            sequences.append(e.prompt + e.response)
            rows += responseRows(offset: offset, promptCount: e.prompt.count, responseCount: e.response.count)
            targets += e.response
            offset += e.prompt.count + e.response.count
        }
        return (sequences, rows, targets)
    }

    public func accumulate(_ batch: [SFTExample], weight: Float) -> [String: Double] {
        model.training = true
        let (sequences, rows, targets) = layout(batch)
        let acts = model.forward(sequences)
        let (logProbs, lse) = head.forward(acts.hidden, rows: rows, targets: targets)
        let dHidden = Tensor(shape: [acts.rows, model.config.hidden])
        // L = −(1/N) Σ log p(t): dL/dlog p = −1/N per token.
        let g = -weight / Float(max(rows.count, 1))
        head.backward(acts.hidden, rows: rows, targets: targets, weights: [Float](repeating: g, count: rows.count), logSumExp: lse,
                      into: dHidden)
        model.backward(acts, dHidden: dHidden)
        return metrics(logProbs)
    }

    public func evaluate(_ batch: [SFTExample]) -> [String: Double] {
        model.training = false
        defer { model.training = true }
        let (sequences, rows, targets) = layout(batch)
        let acts = model.forward(sequences, keep: false)
        return metrics(head.logProbs(acts.hidden, rows: rows, targets: targets))
    }

    private func metrics(_ logProbs: [Float]) -> [String: Double] {
        let nll = -logProbs.reduce(0.0) { $0 + Double($1) } / Double(max(logProbs.count, 1))
        return ["loss": nll, "perplexity": exp(nll)]
    }
}
