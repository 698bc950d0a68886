import Foundation
import ModelKit
import TrainKit

/// The configuration file of `precept train sft|rm|dpo`: the keys of the matching pipeline stage
/// (without `input`; the data comes from `--data`), plus `version`, `prompt_style`, `system` and
/// `seed`. `base` is a catalog name or a `.gguf` path relative to the file.
///
/// ```yaml
/// version: 1
/// base: gemma-3-270m
/// lora: { rank: 16 }
/// epochs: 2
/// beta: 0.1          # dpo only
/// ```
public struct TrainingConfigFile: Sendable {
    public var kind: TrainerKind
    public var spec: TrainingSpec
    public var rewardModel: RewardModelSpec?
    public var dpo: DPOSpec?
    public var model: ModelSpec
    public var system: String?
    public var seed: UInt64

    static let commonKeys = ["version", "prompt_style", "system", "seed"]

    /// `base`: a catalog name, or a `.gguf` path relative to the config file.
    static func modelSource(_ reader: NodeReader, file path: String) throws -> ModelSource {
        let base = try reader.text()
        if base.hasSuffix(".gguf") {
            let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
            let url = base.hasPrefix("/") ? URL(fileURLWithPath: base) : directory.appendingPathComponent(base)
            guard FileManager.default.fileExists(atPath: url.path) else { throw reader.invalid("no file at \(url.path)") }
            return .file(url.standardizedFileURL.path)
        }
        guard ModelCatalog.entry(named: base) != nil else {
            throw reader.invalid("`\(base)` is neither a catalog model (\(ModelCatalog.entries.map(\.name).joined(separator: ", "))) nor a .gguf path")
        }
        return .catalog(base)
    }

    public static func load(path: String, kind: TrainerKind) throws -> TrainingConfigFile {
        let root = try YAMLDocument.load(path: path)
        let reader = NodeReader(node: root, path: "", file: path)
        let extra: [String]
        switch kind {
        case .sft, .ppo: extra = []
        case .rm: extra = ["labels", "margin", "center_rewards"]
        case .dpo: extra = ["beta", "loss", "label_smoothing", "rpo_alpha"]
        }
        let m = try reader.mapping(allowed: commonKeys + TrainingSpec.keys + extra)
        if let v = m["version"], try v.int() != 1 { throw v.invalid("only version 1 exists") }
        let spec = try TrainingSpec.decode(m, defaultLearningRate: kind == .dpo ? 5e-5 : 1e-4, inputRequired: false)
        let baseReader = try m.require("base")
        let source = try modelSource(baseReader, file: path)
        let style = try m["prompt_style"]?.oneOf(PromptStyle.self)
        let model = ModelSpec(name: "base", source: source, promptStyle: style, location: baseReader.location)
        var config = TrainingConfigFile(kind: kind, spec: spec, model: model, system: try m["system"]?.text(),
                                        seed: UInt64(try m["seed"]?.int(in: 0...Int(Int32.max)) ?? 1234))
        switch kind {
        case .sft, .ppo: break
        case .rm:
            config.rewardModel = RewardModelSpec(training: spec, labels: try m["labels"]?.oneOf(LabelKind.self) ?? .soft,
                                                 margin: try m["margin"]?.double(in: 0...100) ?? 0,
                                                 centerRewards: try m["center_rewards"]?.double(in: 0...1) ?? 0)
        case .dpo:
            config.dpo = DPOSpec(training: spec, beta: try m["beta"]?.double(in: 0.0001...100) ?? 0.1,
                                 loss: try m["loss"]?.oneOf(DPOLossKind.self) ?? .sigmoid,
                                 labelSmoothing: try m["label_smoothing"]?.double(in: 0...0.5) ?? 0,
                                 rpoAlpha: try m["rpo_alpha"]?.double(in: 0...100) ?? 0)
        }
        return config
    }
}

/// The configuration file of `precept train ppo`: the keys of a `ppo` stage, with `base` (a
/// catalog name or a `.gguf` path) instead of `policy` and `reward_model` a directory written by
/// a reward_model stage or `precept train rm` (relative to the file), plus `version`,
/// `prompt_style`, `system` and `seed`.
public struct PPOConfigFile: Sendable {
    public var spec: PPOSpec
    public var model: ModelSpec
    public var rewardModel: URL
    public var system: String?
    public var seed: UInt64

    public static func load(path: String) throws -> PPOConfigFile {
        let root = try YAMLDocument.load(path: path)
        let reader = NodeReader(node: root, path: "", file: path)
        let m = try reader.mapping(allowed: TrainingConfigFile.commonKeys + ["base"] + PPOSpec.keys.filter { $0 != "policy" })
        if let v = m["version"], try v.int() != 1 { throw v.invalid("only version 1 exists") }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        let rmReader = try m.require("reward_model")
        let rmPath = try rmReader.text()
        let rm = rmPath.hasPrefix("/") ? URL(fileURLWithPath: rmPath) : directory.appendingPathComponent(rmPath)
        guard FileManager.default.fileExists(atPath: TrainedDirectory(rm).setupURL.path) else {
            throw rmReader.invalid("no reward model at \(rm.path) (expected the directory of a reward_model stage or `precept train rm`)")
        }
        let baseReader = try m.require("base")
        let source = try TrainingConfigFile.modelSource(baseReader, file: path)
        let spec = try PPOSpec.decode(m, policy: "base", rewardModel: rm.path)
        let model = ModelSpec(name: "base", source: source, promptStyle: try m["prompt_style"]?.oneOf(PromptStyle.self),
                              location: baseReader.location)
        return PPOConfigFile(spec: spec, model: model, rewardModel: rm.standardizedFileURL, system: try m["system"]?.text(),
                             seed: UInt64(try m["seed"]?.int(in: 0...Int(Int32.max)) ?? 1234))
    }
}
