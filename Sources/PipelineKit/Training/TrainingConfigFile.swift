import Foundation
import ModelKit

/// The configuration file of `precept train sft|rm|dpo|ppo`: the keys of the matching pipeline
/// stage (without `input`; the data comes from `--data`), plus `version`, `prompt_style`, `system`
/// and `seed`. `base` is a catalog name or a `.gguf` path relative to the file; for ppo it replaces
/// `policy`, and `reward_model` is a directory written by a reward_model stage or `precept train rm`
/// (relative to the file).
///
/// ```yaml
/// version: 1
/// base: gemma-3-270m
/// lora: { rank: 16 }
/// epochs: 2
/// beta: 0.1          # dpo only
/// ```
public struct TrainingConfigFile: Sendable {
    public var method: TrainingMethod
    public var model: ModelSpec
    public var system: String?
    public var seed: UInt64
    /// ppo only: the reward model's directory.
    public var rewardModel: URL?

    /// A path in the file: absolute, or relative to the file's directory.
    static func fileURL(_ text: String, relativeTo path: String) -> URL {
        text.hasPrefix("/") ? URL(fileURLWithPath: text) : URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent(text)
    }

    /// `base`: a catalog name, or a `.gguf` path relative to the config file.
    static func modelSource(_ reader: NodeReader, file path: String) throws -> ModelSource {
        let base = try reader.text()
        if base.hasSuffix(".gguf") {
            let url = fileURL(base, relativeTo: path)
            guard FileManager.default.fileExists(atPath: url.path) else { throw reader.invalid("no file at \(url.path)") }
            return .file(url.standardizedFileURL.path)
        }
        guard ModelCatalog.entry(named: base) != nil else {
            throw reader.invalid("`\(base)` is neither a catalog model (\(ModelCatalog.entries.map(\.name).joined(separator: ", "))) nor a .gguf path")
        }
        return .catalog(base)
    }

    public static func load(path: String, kind: TrainerKind) throws -> TrainingConfigFile {
        let reader = NodeReader(node: try YAMLDocument.load(path: path), path: "", file: path)
        let m = try reader.mapping(allowed: ["version", "prompt_style", "system", "seed"] + TrainingMethod.keys(kind, file: true))
        if let v = m["version"], try v.int() != 1 { throw v.invalid("only version 1 exists") }
        var rewardModel: URL?
        if kind == .ppo {
            let r = try m.require("reward_model")
            let url = fileURL(try r.text(), relativeTo: path)
            guard FileManager.default.fileExists(atPath: TrainedDirectory(url).setupURL.path) else {
                throw r.invalid("no reward model at \(url.path) (expected the directory of a reward_model stage or `precept train rm`)")
            }
            rewardModel = url
        }
        // The order of reading decides which of two errors is reported: sft, rm and dpo read the
        // shared training keys before `base` and their own after `seed`, ppo its keys after `base`.
        let training = kind == .ppo ? nil : try TrainingMethod.training(kind, m, file: true)
        let baseReader = try m.require("base")
        let source = try modelSource(baseReader, file: path)
        let ppo = try rewardModel.map { TrainingMethod.ppo(try PPOSpec.decode(m, policy: "base", rewardModel: $0.path)) }
        let model = ModelSpec(name: "base", source: source, promptStyle: try m["prompt_style"]?.oneOf(PromptStyle.self),
                              location: baseReader.location)
        let system = try m["system"]?.text(), seed = UInt64(try m["seed"]?.int(in: 0...Int(Int32.max)) ?? 1234)
        return TrainingConfigFile(method: try ppo ?? TrainingMethod.decode(kind, m, training: training), model: model, system: system,
                                  seed: seed, rewardModel: rewardModel?.standardizedFileURL)
    }
}
