import Foundation
import TrainKit

/// training.json: the base model an adapter applies to and how its text was formatted.
public struct TrainingSetup: Codable, Sendable {
    public var trainer: String, baseModelPath: String, baseModelFingerprint = "", baseModel = ""
    public var promptStyle = PromptStyle.completion, system: String?, maxLength = 512

    enum CodingKeys: String, CodingKey {
        case trainer, system, baseModelPath = "base_model_path", baseModelFingerprint = "base_model_fingerprint", baseModel = "base_model",
             promptStyle = "prompt_style", maxLength = "max_length"
    }
}

extension TrainingSetup {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(trainer: try c.decode(String.self, forKey: .trainer), baseModelPath: try c.decode(String.self, forKey: .baseModelPath),
                  baseModelFingerprint: try c.decodeIfPresent(String.self, forKey: .baseModelFingerprint) ?? "",
                  baseModel: try c.decodeIfPresent(String.self, forKey: .baseModel) ?? "",
                  promptStyle: try c.decodeIfPresent(String.self, forKey: .promptStyle).flatMap(PromptStyle.init(rawValue:)) ?? .completion,
                  system: try c.decodeIfPresent(String.self, forKey: .system), maxLength: try c.decodeIfPresent(Int.self, forKey: .maxLength) ?? 512)
    }

    /// Every key, `system` as null when there is none.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        for (key, value) in [(CodingKeys.trainer, trainer), (.baseModelPath, baseModelPath), (.baseModelFingerprint, baseModelFingerprint),
                             (.baseModel, baseModel), (.promptStyle, promptStyle.rawValue)] { try c.encode(value, forKey: key) }
        try c.encode(system, forKey: .system)
        try c.encode(maxLength, forKey: .maxLength)
    }
}

/// summary.json: what a training run produced, and the fingerprint of its inputs. Every key has
/// been written since the file's first version, so the synthesized decoding reads all of them.
struct TrainingSummary: Codable {
    struct LoRA: Codable {
        var rank: Int, alpha: Double, targets: [String], trainableParameters: Int
        enum CodingKeys: String, CodingKey { case rank, alpha, targets, trainableParameters = "trainable_parameters" }
    }
    var trainer: String, name: String, fingerprint: String, trainExamples: Int, evalExamples: Int
    var train: [String: Double], eval: [String: Double], seconds: Double, warnings: [String], lora: LoRA?, rewardModel: String?

    enum CodingKeys: String, CodingKey {
        case trainer, name, fingerprint, train, eval, seconds, warnings, lora, trainExamples = "train_examples", evalExamples = "eval_examples",
             rewardModel = "reward_model"
    }

    /// Non-finite metrics are left out (JSON has no NaN).
    init(trainer: String, name: String, fingerprint: String, trainExamples: Int, evalExamples: Int, train: [String: Double],
         eval: [String: Double], seconds: Double, warnings: [String], adapter: LoRAAdapter, rewardModel: String? = nil) {
        (self.trainer, self.name, self.fingerprint, self.trainExamples, self.evalExamples) = (trainer, name, fingerprint, trainExamples, evalExamples)
        (self.train, self.eval) = (train.filter { $0.value.isFinite }, eval.filter { $0.value.isFinite })
        (self.seconds, self.warnings, self.rewardModel) = (seconds, warnings, rewardModel)
        lora = LoRA(rank: adapter.config.rank, alpha: adapter.config.alpha, targets: adapter.config.targets.map(\.huggingFaceName),
                    trainableParameters: adapter.parameterCount)
    }
}

/// The output directory of a training run: `training.json`, `summary.json` and `adapter/`.
public struct TrainedDirectory {
    public var url: URL
    public init(_ url: URL) { self.url = url }

    public var setupURL: URL { url.appendingPathComponent("training.json") }
    var summaryURL: URL { url.appendingPathComponent("summary.json") }
    /// The adapter's weights are there.
    public var hasAdapter: Bool { FileManager.default.fileExists(atPath: url.appendingPathComponent("adapter/\(PEFTAdapter.weightsFile)").path) }

    public func setup() throws -> TrainingSetup { try JSONDecoder().decode(TrainingSetup.self, from: Data(contentsOf: setupURL)) }
    func summary() -> TrainingSummary? { try? JSONDecoder().decode(TrainingSummary.self, from: Data(contentsOf: summaryURL)) }

    func write(_ setup: TrainingSetup, _ summary: TrainingSummary) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(setup).write(to: setupURL, options: .atomic)
        try encoder.encode(summary).write(to: summaryURL, options: .atomic)
    }

    /// The stored outcome when summary.json was written for exactly this fingerprint and the adapter is there.
    func finished(_ fingerprint: String) -> TrainingOutcome? {
        guard let s = summary(), s.fingerprint == fingerprint, hasAdapter else { return nil }
        return TrainingOutcome(directory: url, trainExamples: s.trainExamples, evalExamples: s.evalExamples, eval: s.eval, train: s.train,
                               seconds: 0, warnings: s.warnings, upToDate: true)
    }
}
