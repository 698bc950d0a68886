import Foundation
import ModelKit
import TensorKit
import TrainKit

/// Which trainer a job runs.
public enum TrainerKind: String, Sendable, CaseIterable {
    case sft, rm, dpo, ppo
}

/// The training data of a job.
public enum TrainingInput: Sendable {
    case sft([SFTText])
    case preferences([PreferenceText])

    var count: Int {
        switch self {
        case .sft(let e): e.count
        case .preferences(let e): e.count
        }
    }
}

/// One training run (a pipeline stage or `precept train`): its settings, base model and output
/// directory. Writes `metrics.jsonl`, `adapter/` (PEFT), `merged.gguf` (SFT and DPO),
/// `summary.json` and `training.json` into the directory.
public struct TrainingJob {
    public var name: String
    public var kind: TrainerKind
    public var spec: TrainingSpec
    public var rewardModel: RewardModelSpec?
    public var dpo: DPOSpec?
    public var modelURL: URL
    public var modelFingerprint: String
    /// The Hugging Face model the adapter applies to (`base_model_name_or_path`).
    public var huggingFaceBase: String
    public var promptStyle: PromptStyle
    public var system: String?
    public var seed: UInt64
    public var directory: URL

    public init(name: String, kind: TrainerKind, spec: TrainingSpec, rewardModel: RewardModelSpec? = nil, dpo: DPOSpec? = nil,
                modelURL: URL, modelFingerprint: String, huggingFaceBase: String, promptStyle: PromptStyle, system: String? = nil,
                seed: UInt64, directory: URL) {
        self.name = name
        self.kind = kind
        self.spec = spec
        self.rewardModel = rewardModel
        self.dpo = dpo
        self.modelURL = modelURL
        self.modelFingerprint = modelFingerprint
        self.huggingFaceBase = huggingFaceBase
        self.promptStyle = promptStyle
        self.system = system
        self.seed = seed
        self.directory = directory
    }

    /// Hugging Face ids of the catalog models, for adapter configs.
    public static func huggingFaceName(catalog name: String) -> String {
        ["gemma-3-270m": "google/gemma-3-270m",
         "qwen2.5-coder-0.5b-instruct": "Qwen/Qwen2.5-Coder-0.5B-Instruct",
         "qwen2.5-coder-1.5b-instruct": "Qwen/Qwen2.5-Coder-1.5B-Instruct"][name] ?? name
    }

    var trainingConfig: TrainingConfig {
        var c = TrainingConfig()
        c.epochs = spec.epochs
        c.maxSteps = spec.maxSteps
        c.learningRate = spec.learningRate
        c.schedule = spec.schedule
        c.warmupRatio = spec.warmupRatio
        c.weightDecay = spec.weightDecay
        c.maxGradNorm = spec.maxGradNorm
        c.batchSize = spec.batchSize
        c.gradientAccumulation = spec.gradientAccumulation
        c.microBatchTokens = max(spec.microBatchTokens, 2 * spec.maxLength)
        c.checkpointEvery = spec.checkpointEvery
        c.seed = seed
        return c
    }
}

/// What a training job produced.
public struct TrainingOutcome: Sendable {
    public var directory: URL
    public var trainExamples: Int
    public var evalExamples: Int
    public var eval: [String: Double]
    public var train: [String: Double]
    public var seconds: Double
    public var warnings: [String]
    /// True when the outputs were already there for the same inputs and nothing ran.
    public var upToDate: Bool
}

extension TrainingJob {
    /// Runs the job (or finds it done). `progress` receives one line per step; `stop` is polled
    /// after each step (a checkpoint is saved and the job throws `TrainingError.interrupted`).
    public func run(_ input: TrainingInput, progress: ((String) -> Void)? = nil, stop: (() -> Bool)? = nil) throws -> TrainingOutcome {
        let started = Date()
        let model = try LanguageModel(path: modelURL.path)
        let tokenizer = TrainingTokenizer(model: model, style: promptStyle, system: system, maxLength: spec.maxLength)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let config = trainingConfig
        let adapter = LoRAAdapter(config: spec.lora, model: model.config, seed: seed)
        let network = TrainableTransformer(base: model.transformer, adapter: adapter)
        var warnings: [String] = []

        // Fingerprint of everything that decides the result: settings, model and tokenised data.
        var fields = [kind.rawValue, settingsText("\(spec)"), settingsText("\(String(describing: rewardModel))"),
                      settingsText("\(String(describing: dpo))"),
                      modelFingerprint, promptStyle.rawValue, system ?? "", "\(seed)"]
        func split<T>(_ items: [T], id: (T) -> String) -> (train: [T], eval: [T]) {
            var train: [T] = [], eval: [T] = []
            for item in items {
                if Exporter.isTest(record: id(item), seed: seed, fraction: spec.evalFraction) { eval.append(item) } else { train.append(item) }
            }
            return (train, eval)
        }
        var fingerprint: String { SHA256.hex(fields.joined(separator: "\u{1E}")) }
        let outcome: (eval: [String: Double], train: [String: Double])
        var trainCount = 0, evalCount = 0
        var scoreHead: RewardHead?
        switch input {
        case .sft(let texts):
            let examples = texts.map(tokenizer.sft)
            fields += examples.map { "\($0.id)|\($0.prompt)|\($0.response)" }
            let (train, eval) = split(examples) { $0.id }
            trainCount = train.count
            evalCount = eval.count
            if let done = TrainedDirectory(directory).finished(fingerprint) { return done }
            let trainer = SFTTrainer(model: network)
            outcome = try loop(trainer, fingerprint: fingerprint, progress: progress, stop: stop, config: config).run(train: train, eval: eval)
        case .preferences(let texts):
            var examples = texts.map(tokenizer.preference)
            fields += examples.map { "\($0.id)|\($0.prompt)|\($0.chosen)|\($0.rejected)|\($0.probability)" }
            if let done = TrainedDirectory(directory).finished(fingerprint) { return done }
            if kind == .dpo {
                var c = DPOConfig()
                if let dpo { (c.beta, c.loss, c.labelSmoothing, c.rpoAlpha) = (dpo.beta, dpo.loss, dpo.labelSmoothing, dpo.rpoAlpha) }
                let trainer = DPOTrainer(model: network, config: c)
                progress?("reference log-probabilities for \(examples.count) pairs")
                trainer.precomputeReference(&examples)
                let (train, eval) = split(examples) { $0.id }
                trainCount = train.count
                evalCount = eval.count
                outcome = try loop(trainer, fingerprint: fingerprint, progress: progress, stop: stop, config: config).run(train: train, eval: eval)
            } else {
                var c = RewardModelConfig()
                if let r = rewardModel { (c.softLabels, c.margin, c.centerRewards) = (r.labels == .soft, r.margin, r.centerRewards) }
                let head = RewardHead(hidden: model.config.hidden, seed: seed ^ 0x5C0E)
                scoreHead = head
                let trainer = RewardTrainer(model: network, scoreHead: head, config: c)
                let (train, eval) = split(examples) { $0.id }
                trainCount = train.count
                evalCount = eval.count
                outcome = try loop(trainer, fingerprint: fingerprint, progress: progress, stop: stop, config: config).run(train: train, eval: eval)
                if let accuracy = outcome.eval["accuracy"], accuracy < 0.70 {
                    warnings.append(String(format: "held-out accuracy %.2f is below 0.70 on %d pairs: this reward model is unreliable", accuracy, evalCount))
                } else if evalCount == 0 {
                    warnings.append("no held-out pairs (eval_fraction \(spec.evalFraction)): accuracy unmeasured")
                }
            }
        }

        try PEFTAdapter.save(adapter, scoreHead: scoreHead, baseModel: huggingFaceBase, to: directory.appendingPathComponent("adapter"))
        if kind != .rm, let precision = spec.merge {
            progress?("writing merged.gguf (\(precision.rawValue))")
            try MergedModel.write(base: model.file, adapter: adapter, precision: precision,
                                  to: directory.appendingPathComponent("merged.gguf"))
        }
        let seconds = Date().timeIntervalSince(started)
        try TrainedDirectory(directory).write(
            TrainingSetup(trainer: kind.rawValue, baseModelPath: modelURL.path, baseModelFingerprint: modelFingerprint, baseModel: huggingFaceBase,
                          promptStyle: promptStyle, system: system, maxLength: spec.maxLength),
            TrainingSummary(trainer: kind.rawValue, name: name, fingerprint: fingerprint,
                            trainExamples: trainCount, evalExamples: evalCount, train: outcome.train, eval: outcome.eval, seconds: seconds,
                            warnings: warnings, adapter: adapter))
        return TrainingOutcome(directory: directory, trainExamples: trainCount, evalExamples: evalCount, eval: outcome.eval,
                               train: outcome.train, seconds: seconds, warnings: warnings, upToDate: false)
    }

    private func loop<O: TrainingObjective>(_ objective: O, fingerprint: String, progress: ((String) -> Void)?, stop: (() -> Bool)?,
                                            config: TrainingConfig) -> TrainingLoop<O> {
        let loop = TrainingLoop(config: config, objective: objective, directory: directory, fingerprint: fingerprint)
        let keys = kind == .dpo ? ["loss", "rewards/accuracies", "rewards/margins"] : kind == .rm ? ["loss", "accuracy"] : ["loss"]
        loop.onProgress = { p in
            let metrics = keys.compactMap { k in p.metrics[k].map { String(format: "%@ %.4f", k, $0) } }.joined(separator: "  ")
            progress?(String(format: "step %d/%d  %@  %.0f tok/s  %.0f s", p.step, p.totalSteps, metrics, p.tokensPerSecond, p.elapsed))
        }
        loop.shouldStop = stop
        return loop
    }
}

/// A training spec as its fingerprint reads it, so a run finished before a change here stays up to
/// date: TrainKit's types written as the PipelineKit copies they replaced printed (issue 18), and
/// the fields added on 2026-12-02 left out while they hold their defaults (the training data,
/// which a `gate` changes, is fingerprinted separately).
func settingsText(_ printed: String) -> String {
    func words<T: RawRepresentable & CaseIterable>(_: T.Type, _ prefix: String, _ suffix: String = "") -> [(String, String)]
        where T.RawValue == String { T.allCases.map { ("\(prefix)\($0)\(suffix)", "\"\($0.rawValue)\"") } }
    let mirrors = [("TrainKit.LoRAConfig(", "PipelineKit.LoRASpec("), ("TrainKit.LoRATargetModule.", "PipelineKit.LoRATarget."),
                   ("TrainKit.DPOLossKind.", "PipelineKit.DPOLoss."), ("TrainKit.RLAlgorithm.", "PipelineKit.PolicyAlgorithm."),
                   ("TrainKit.MonitorConfig(rewardDriftSD: ", "PipelineKit.MonitorSpec(rewardDriftSD: "),
                   (", varianceFloor: ", ", rewardVarianceFloor: "), ("merge: nil, ", "merge: \"none\", ")]
        + words(LearningRateSchedule.self, "TrainKit.LearningRateSchedule.") + words(KLEstimator.self, "TrainKit.KLEstimator.")
        + words(MergedModel.Precision.self, "Optional(TrainKit.MergedModel.Precision.", ")") + words(MonitorKind.self, "TrainKit.MonitorKind.")
    var text = printed
    for (new, old) in mirrors { text = text.replacingOccurrences(of: new, with: old) }
    for unchanged in [", gate: nil", ", rpoAlpha: 0.0", ", missingEOSPenalty: nil", ", maxTruncationRate: 0.5"] {
        text = text.replacingOccurrences(of: unchanged, with: "")
    }
    return text
}
