import Foundation
import TrainKit

// The ppo stage's settings beyond `PPOSpec` itself: its failure-mode monitors and its decoding
// (shared by pipelines and `precept train ppo`).

/// `monitors:` on a ppo stage: the RL failure-mode monitors' thresholds.
extension MonitorConfig {
    static func decode(_ r: NodeReader?) throws -> MonitorConfig {
        var spec = MonitorConfig()
        guard let r else { return spec }
        let m = try r.mapping(allowed: ["reward_drift_sd", "reward_variance_floor", "max_kl", "length_growth", "distinct_drop",
                                        "max_truncation_rate", "stop_on"])
        spec.maxTruncationRate = try m["max_truncation_rate"]?.double(in: 0...1) ?? spec.maxTruncationRate
        spec.rewardDriftSD = try m["reward_drift_sd"]?.double(in: 0.1...100) ?? spec.rewardDriftSD
        spec.varianceFloor = try m["reward_variance_floor"]?.double(in: 0...1) ?? spec.varianceFloor
        spec.maxKL = try m["max_kl"]?.double(in: 0...100_000) ?? spec.maxKL
        spec.lengthGrowth = try m["length_growth"]?.double(in: 1...100) ?? spec.lengthGrowth
        spec.distinctDrop = try m["distinct_drop"]?.double(in: 0...1) ?? spec.distinctDrop
        for item in try m["stop_on"]?.list() ?? [] {
            let name = try item.text()
            guard let kind = MonitorKind(rawValue: name) else {
                throw item.invalid("unknown monitor `\(name)`; expected one of \(MonitorKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            spec.stopOn.append(kind)
        }
        return spec
    }
}

extension PPOSpec {
    static let keys = ["policy", "reward_model", "algorithm", "lora", "steps", "batch_size", "ppo_epochs", "learning_rate", "kl_coef",
                       "adaptive_kl", "target_kl", "gamma", "lambda", "cliprange", "cliprange_value", "rloo_k", "vf_coef", "kl_estimator",
                       "checkpoint_every", "merge", "monitors", "missing_eos_penalty"] + SamplingSpec.keys

    /// `policy` and `reward_model` are required in a pipeline; `precept train ppo` passes defaults for them.
    static func decode(_ m: MappingReader, policy: String? = nil, rewardModel: String? = nil) throws -> PPOSpec {
        PPOSpec(
            policy: try policy ?? m.require("policy").text(),
            rewardModel: try rewardModel ?? m.require("reward_model").text(),
            algorithm: try m["algorithm"]?.oneOf(RLAlgorithm.self) ?? .ppo,
            lora: try LoRAConfig.decode(m["lora"]),
            steps: try m["steps"]?.int(in: 1...1_000_000) ?? 20,
            batchSize: try m["batch_size"]?.int(in: 1...4096) ?? 8,
            ppoEpochs: try m["ppo_epochs"]?.int(in: 1...100) ?? 2,
            learningRate: try m["learning_rate"]?.double(in: 1e-9...1) ?? 1e-5,
            klCoef: try m["kl_coef"]?.double(in: 0...100) ?? 0.05,
            adaptiveKL: try m["adaptive_kl"]?.bool() ?? false,
            targetKL: try m["target_kl"]?.double(in: 0.0001...100) ?? 6,
            gamma: try m["gamma"]?.double(in: 0...1) ?? 1,
            lambda: try m["lambda"]?.double(in: 0...1) ?? 0.95,
            clipRange: try m["cliprange"]?.double(in: 0.001...10) ?? 0.2,
            clipRangeValue: try m["cliprange_value"]?.double(in: 0.001...10) ?? 0.2,
            rlooK: try m["rloo_k"]?.int(in: 2...64) ?? 4,
            valueCoef: try m["vf_coef"]?.double(in: 0...100) ?? 0.1,
            klEstimator: try m["kl_estimator"]?.oneOf(KLEstimator.self) ?? .k1,
            checkpointEvery: try m["checkpoint_every"]?.int(in: 0...1_000_000) ?? 5,
            merge: try TrainingSpec.decodeMerge(m["merge"]),
            monitors: try MonitorConfig.decode(m["monitors"]),
            sampling: try .decode(m, defaultTemperature: 1.0, defaultMaxTokens: 64),
            missingEOSPenalty: try m["missing_eos_penalty"]?.double(in: 0...1000))
    }
}
