import Foundation
import ModelKit
import TensorKit

/// Configuration of reward-model training (TRL's RewardConfig, with soft labels).
public struct RewardModelConfig: Sendable, Equatable {
    /// Use the judge's probabilities as targets (true) or round them to hard labels.
    public var softLabels = true
    public var margin = 0.0
    /// TRL's center_rewards_coefficient.
    public var centerRewards = 0.0

    public init() {}
}

/// A reward model: the backbone with LoRA and a scalar head read at each sequence's last token,
/// trained with the Bradley-Terry loss against the judge's soft labels (`bradleyTerryLoss`).
public final class RewardTrainer: TrainingObjective {
    public let model: TrainableTransformer
    public let scoreHead: RewardHead
    public let config: RewardModelConfig

    public init(model: TrainableTransformer, scoreHead: RewardHead, config: RewardModelConfig) {
        self.model = model
        self.scoreHead = scoreHead
        self.config = config
    }

    public var parameters: [(name: String, value: Tensor, gradient: Tensor)] {
        (model.adapter?.parameters ?? []) + [(PEFTAdapter.scoreName, scoreHead.weight, scoreHead.gradient)]
    }

    public func tokenCount(_ e: PreferenceExample) -> Int { 2 * e.prompt.count + e.chosen.count + e.rejected.count }

    /// Rewards of prompt + response sequences, from one stacked forward pass.
    public func scores(_ sequences: [[Int32]]) -> [Float] {
        model.training = false
        defer { model.training = true }
        let acts = model.forward(sequences, keep: false)
        return zip(acts.offsets, sequences).map { scoreHead.score(acts.hidden, row: $0 + $1.count - 1) }
    }

    private func target(_ e: PreferenceExample) -> Double {
        config.softLabels ? e.probability : (e.probability >= 0.5 ? 1 : 0)
    }

    public func accumulate(_ batch: [PreferenceExample], weight: Float) -> [String: Double] {
        model.training = true
        let sequences = batch.flatMap { [$0.prompt + $0.chosen, $0.prompt + $0.rejected] }
        let acts = model.forward(sequences)
        let last = zip(acts.offsets, sequences).map { $0 + $1.count - 1 }
        let rewards = last.map { scoreHead.score(acts.hidden, row: $0) }
        let dHidden = Tensor(shape: [acts.rows, model.config.hidden])
        var losses: [PairLoss] = []
        for (i, e) in batch.enumerated() {
            let l = bradleyTerryLoss(chosen: Double(rewards[2 * i]), rejected: Double(rewards[2 * i + 1]), target: target(e),
                                     margin: config.margin, centering: config.centerRewards)
            losses.append(l)
            let w = Double(weight) / Double(batch.count)
            scoreHead.backward(acts.hidden, row: last[2 * i], dScore: Float(w * l.dChosen), into: dHidden)
            scoreHead.backward(acts.hidden, row: last[2 * i + 1], dScore: Float(w * l.dRejected), into: dHidden)
        }
        model.backward(acts, dHidden: dHidden)
        return metrics(rewards, losses)
    }

    public func evaluate(_ batch: [PreferenceExample]) -> [String: Double] {
        let rewards = scores(batch.flatMap { [$0.prompt + $0.chosen, $0.prompt + $0.rejected] })
        let losses = batch.enumerated().map { i, e in
            bradleyTerryLoss(chosen: Double(rewards[2 * i]), rejected: Double(rewards[2 * i + 1]), target: target(e),
                             margin: config.margin, centering: config.centerRewards)
        }
        return metrics(rewards, losses)
    }

    private func metrics(_ rewards: [Float], _ losses: [PairLoss]) -> [String: Double] {
        let n = Double(losses.count)
        var chosen = 0.0, rejected = 0.0, correct = 0.0
        for i in 0..<losses.count {
            chosen += Double(rewards[2 * i])
            rejected += Double(rewards[2 * i + 1])
            if rewards[2 * i] > rewards[2 * i + 1] { correct += 1 }
        }
        return ["loss": losses.reduce(0) { $0 + $1.loss } / n, "accuracy": correct / n,
                "rewards/chosen": chosen / n, "rewards/rejected": rejected / n, "rewards/margins": (chosen - rejected) / n]
    }
}
