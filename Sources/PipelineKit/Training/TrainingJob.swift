import Foundation
import ModelKit
import TensorKit
import TrainKit

/// Which trainer a job runs.
public enum TrainerKind: String, Sendable, CaseIterable {
    case sft, rm, dpo, ppo
}

/// The training data of a job: texts for sft, pairs for rm and dpo, prompts and a reward model
/// directory for ppo.
public enum TrainingInput: Sendable {
    case sft([SFTText])
    case preferences([PreferenceText])
    case prompts([(id: String, text: String)], rewardModel: URL)
}

/// The model a job trains on: its GGUF file, the fingerprint of that file, the Hugging Face name
/// an adapter applies to (`base_model_name_or_path`) and how its text is formatted.
public struct TrainingBase: Sendable {
    public var url: URL
    public var fingerprint: String
    public var huggingFace: String
    public var promptStyle: PromptStyle

    /// A local `models:` entry or config-file `base`; a catalog model is fetched on first use.
    public init(_ model: ModelSpec, reporter: RunReporter?) throws {
        (url, fingerprint) = try PipelineRunner.localModel(model, reporter: reporter)
        huggingFace = url.lastPathComponent
        if case .catalog(let name) = model.source { huggingFace = Self.huggingFaceName(catalog: name) }
        promptStyle = model.effectivePromptStyle
    }

    /// Hugging Face ids of the catalog models, for adapter configs.
    public static func huggingFaceName(catalog name: String) -> String {
        ["gemma-3-270m": "google/gemma-3-270m",
         "qwen2.5-coder-0.5b-instruct": "Qwen/Qwen2.5-Coder-0.5B-Instruct",
         "qwen2.5-coder-1.5b-instruct": "Qwen/Qwen2.5-Coder-1.5B-Instruct"][name] ?? name
    }
}

/// One training run, a pipeline stage or `precept train`: the method with its settings, the base
/// model and the output directory. Writes `metrics.jsonl`, `adapter/` (PEFT), `merged.gguf` (all
/// but rm), `summary.json` and `training.json`; ppo also `samples.jsonl`, `monitors.jsonl` and
/// `value_head.safetensors` (PPO's critic).
public struct TrainingJob {
    public var name: String
    public var method: TrainingMethod
    public var base: TrainingBase
    public var system: String?
    public var seed: UInt64
    public var directory: URL

    public init(name: String, method: TrainingMethod, base: TrainingBase, system: String?, seed: UInt64, directory: URL) {
        (self.name, self.method, self.base, self.system, self.seed, self.directory) = (name, method, base, system, seed, directory)
    }

    /// Runs the job, or finds it done for the same inputs. `progress` receives one line per step
    /// (and ppo's monitor warnings, prefixed "warning: "); `stop` is polled after each step, when a
    /// checkpoint is saved and the job throws `TrainingError.interrupted`.
    public func run(_ input: TrainingInput, progress: ((String) -> Void)? = nil, stop: (() -> Bool)? = nil) throws -> TrainingOutcome {
        switch (method, input) {
        case (.ppo(let spec), .prompts(let prompts, let rewardModel)):
            return try runPPO(spec, prompts: prompts, rewardModel: rewardModel, progress: progress, stop: stop)
        case (.ppo, _), (_, .prompts):
            throw TrainingError.noExamples(what: "ppo trains on prompts with a reward model, the other methods on texts or pairs")
        default:
            return try runSupervised(input, progress: progress, stop: stop)
        }
    }

    /// The result in one line, as a stage reports it.
    public func headline(_ outcome: TrainingOutcome) -> String {
        let done = outcome.upToDate ? "up to date" : String(format: "trained in %.0f s", outcome.seconds)
        func metrics(_ keys: [String], _ values: [String: Double]) -> String {
            keys.compactMap { k in values[k].map { String(format: "%@ %.3f", k, $0) } }.joined(separator: ", ")
        }
        if case .ppo(let spec) = method {
            return "\(done); \(spec.algorithm.rawValue), \(spec.steps) steps; last step "
                + metrics(["objective/scores", "objective/kl", "objective/rlhf_reward"], outcome.train)
        }
        let keys = switch method {
        case .dpo: ["rewards/accuracies", "rewards/margins", "loss"]
        case .rewardModel: ["accuracy", "loss"]
        default: ["loss", "perplexity"]
        }
        return "\(done); \(outcome.trainExamples) train / \(outcome.evalExamples) held-out; "
            + "\(outcome.eval.isEmpty ? "train" : "held-out") " + metrics(keys, outcome.eval.isEmpty ? outcome.train : outcome.eval)
    }

    /// Warnings not yet shown while the job ran: ppo reports its monitors through `progress`.
    public func unshownWarnings(_ outcome: TrainingOutcome) -> [String] {
        if case .ppo = method, !outcome.upToDate { return [] }
        return outcome.warnings
    }

    /// Everything the result depends on besides the data, in the order fingerprints have used since
    /// the first version (a finished run stays up to date).
    func fingerprintFields(_ kind: String, _ settings: [String]) -> [String] {
        [kind] + settings + [base.fingerprint, base.promptStyle.rawValue, system ?? "", "\(seed)"]
    }

    /// training.json and summary.json, then the outcome.
    func finish(_ trainer: String, fingerprint: String, adapter: LoRAAdapter, maxLength: Int, counts: (train: Int, eval: Int),
                metrics: (train: [String: Double], eval: [String: Double]), warnings: [String], rewardModel: String? = nil,
                started: Date) throws -> TrainingOutcome {
        let seconds = Date().timeIntervalSince(started)
        try TrainedDirectory(directory).write(
            TrainingSetup(trainer: trainer, baseModelPath: base.url.path, baseModelFingerprint: base.fingerprint,
                          baseModel: base.huggingFace, promptStyle: base.promptStyle, system: system, maxLength: maxLength),
            TrainingSummary(trainer: trainer, name: name, fingerprint: fingerprint, trainExamples: counts.train, evalExamples: counts.eval,
                            train: metrics.train, eval: metrics.eval, seconds: seconds, warnings: warnings, adapter: adapter,
                            rewardModel: rewardModel))
        return TrainingOutcome(directory: directory, trainExamples: counts.train, evalExamples: counts.eval, eval: metrics.eval,
                               train: metrics.train, seconds: seconds, warnings: warnings, upToDate: false)
    }

    /// The adapter, and `merged.gguf` when the method merges.
    func save(_ adapter: LoRAAdapter, scoreHead: RewardHead?, model: LanguageModel, merge: MergedModel.Precision?,
              progress: ((String) -> Void)?) throws {
        try PEFTAdapter.save(adapter, scoreHead: scoreHead, baseModel: base.huggingFace, to: directory.appendingPathComponent("adapter"))
        if let merge {
            progress?("writing merged.gguf (\(merge.rawValue))")
            try MergedModel.write(base: model.file, adapter: adapter, precision: merge, to: directory.appendingPathComponent("merged.gguf"))
        }
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
