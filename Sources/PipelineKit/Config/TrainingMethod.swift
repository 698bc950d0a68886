import TrainKit

/// What a training stage or a `precept train` config file trains: the trainer and its settings,
/// decoded by the same code for both.
public enum TrainingMethod: Sendable, Equatable {
    case sft(TrainingSpec), rewardModel(RewardModelSpec), dpo(DPOSpec), ppo(PPOSpec)

    /// sft, rm and dpo: the trainer and its settings; nil for ppo.
    public var supervised: (kind: TrainerKind, spec: TrainingSpec, rewardModel: RewardModelSpec?, dpo: DPOSpec?)? {
        switch self {
        case .sft(let spec): (.sft, spec, nil, nil)
        case .rewardModel(let spec): (.rm, spec.training, spec, nil)
        case .dpo(let spec): (.dpo, spec.training, nil, spec)
        case .ppo: nil
        }
    }

    /// A stage body's keys in the order "did you mean" searches them, or (`file`) a config file's besides
    /// `version`, `prompt_style`, `system` and `seed`: there sft has no `gate` and ppo has `base`, not `policy`.
    static func keys(_ kind: TrainerKind, file: Bool) -> [String] {
        switch kind {
        case .sft: TrainingSpec.keys + (file ? [] : ["gate"])
        case .rm: TrainingSpec.keys + ["labels", "margin", "center_rewards"]
        case .dpo: TrainingSpec.keys + ["beta", "loss", "label_smoothing", "rpo_alpha", "ld_alpha"]
        case .ppo: file ? ["base"] + PPOSpec.keys.filter { $0 != "policy" } : PPOSpec.keys
        }
    }

    /// The settings sft, rm and dpo share; a config file's `input` is optional (its data is `--data`).
    static func training(_ kind: TrainerKind, _ m: MappingReader, file: Bool = false) throws -> TrainingSpec {
        try TrainingSpec.decode(m, defaultLearningRate: kind == .dpo ? 5e-5 : 1e-4, inputRequired: !file)
    }

    /// `training`: the shared settings if the caller read them already; then only the method's own keys are read.
    static func decode(_ kind: TrainerKind, _ m: MappingReader, training: TrainingSpec? = nil) throws -> TrainingMethod {
        func shared() throws -> TrainingSpec { try training ?? Self.training(kind, m) }
        switch kind {
        case .sft:
            var spec = try shared()
            spec.gate = try m["gate"]?.text()
            return .sft(spec)
        case .rm:
            return .rewardModel(RewardModelSpec(
                training: try shared(),
                labels: try m["labels"]?.oneOf(LabelKind.self) ?? .soft,
                margin: try m["margin"]?.double(in: 0...100) ?? 0,
                centerRewards: try m["center_rewards"]?.double(in: 0...1) ?? 0))
        case .dpo:
            return .dpo(DPOSpec(
                training: try shared(),
                beta: try m["beta"]?.double(in: 0.0001...100) ?? 0.1,
                loss: try m["loss"]?.oneOf(DPOLossKind.self) ?? .sigmoid,
                labelSmoothing: try m["label_smoothing"]?.double(in: 0...0.5) ?? 0,
                rpoAlpha: try m["rpo_alpha"]?.double(in: 0...100) ?? 0,
                ldAlpha: try m["ld_alpha"]?.double(in: 0...1) ?? 1))
        case .ppo:
            return .ppo(try PPOSpec.decode(m))
        }
    }
}

/// `lora:` on a training stage.
extension LoRAConfig {
    static let keys = ["rank", "alpha", "dropout", "targets", "rslora"]

    static func decode(_ r: NodeReader?) throws -> LoRAConfig {
        guard let r else { return LoRAConfig() }
        let m = try r.mapping(allowed: keys)
        let rank = try m["rank"]?.int(in: 1...1024) ?? 16
        return LoRAConfig(
            rank: rank,
            alpha: try m["alpha"]?.double(in: 0.001...100_000) ?? Double(2 * rank),
            dropout: try m["dropout"]?.double(in: 0...0.9) ?? 0,
            targets: try m["targets"]?.list().map { try $0.oneOf(LoRATargetModule.self) } ?? LoRATargetModule.allCases,
            rsLoRA: try m["rslora"]?.bool() ?? false)
    }
}

extension TrainingSpec {
    static let keys = ["base", "input", "lora", "epochs", "learning_rate", "batch_size", "gradient_accumulation",
                       "max_length", "eval_fraction", "schedule", "warmup_ratio", "weight_decay", "max_grad_norm",
                       "max_steps", "checkpoint_every", "micro_batch_tokens", "merge"]

    /// `merge:` (f16 when absent), its words in the order errors list them.
    static func decodeMerge(_ r: NodeReader?) throws -> MergedModel.Precision? {
        guard let r else { return .f16 }
        return try r.oneOf([("f16", .f16), ("q8_0", .q8_0), ("f32", .f32), ("none", nil)])
    }

    static func decode(_ m: MappingReader, defaultLearningRate: Double, inputRequired: Bool = true) throws -> TrainingSpec {
        TrainingSpec(
            base: try m.require("base").text(),
            input: inputRequired ? try m.require("input").text() : try m["input"]?.text() ?? "",
            lora: try LoRAConfig.decode(m["lora"]),
            epochs: try m["epochs"]?.int(in: 1...1000) ?? 1,
            learningRate: try m["learning_rate"]?.double(in: 1e-9...1) ?? defaultLearningRate,
            batchSize: try m["batch_size"]?.int(in: 1...4096) ?? 4,
            gradientAccumulation: try m["gradient_accumulation"]?.int(in: 1...4096) ?? 1,
            maxLength: try m["max_length"]?.int(in: 16...32_768) ?? 512,
            evalFraction: try m["eval_fraction"]?.double(in: 0...0.9) ?? 0.1,
            schedule: try m["schedule"]?.oneOf(LearningRateSchedule.self) ?? .linear,
            warmupRatio: try m["warmup_ratio"]?.double(in: 0...1) ?? 0.1,
            weightDecay: try m["weight_decay"]?.double(in: 0...1) ?? 0,
            maxGradNorm: try m["max_grad_norm"]?.double(in: 0...1000) ?? 1,
            maxSteps: try m["max_steps"]?.int(in: 1...10_000_000),
            checkpointEvery: try m["checkpoint_every"]?.int(in: 0...1_000_000) ?? 10,
            microBatchTokens: try m["micro_batch_tokens"]?.int(in: 16...1_000_000) ?? 2048,
            merge: try decodeMerge(m["merge"]))
    }
}

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
