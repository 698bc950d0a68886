import Foundation
import ModelKit
import TensorKit

/// Saves and loads LoRA adapters in PEFT's layout: `adapter_config.json` and
/// `adapter_model.safetensors` with tensors named
/// `base_model.model.model.layers.{L}.self_attn.q_proj.lora_A.weight` (rank, in) and `….lora_B.weight`
/// (out, rank), as PEFT saves a LoRA on a Hugging Face Gemma 3 / Llama / Qwen2 decoder.
/// A reward model's head is saved as `base_model.model.score.weight` (1, hidden), PEFT's name
/// for a `modules_to_save` entry of a sequence-classification model.
public enum PEFTAdapter {
    public static let configFile = "adapter_config.json"
    public static let weightsFile = "adapter_model.safetensors"
    public static let scoreName = "base_model.model.score.weight"

    /// The adapter's tensors under PEFT's names, converted from llama.cpp's row order where it differs.
    public static func tensors(_ adapter: LoRAAdapter, scoreHead: RewardHead? = nil) -> [(name: String, tensor: Tensor)] {
        var out: [(String, Tensor)] = []
        for (prefix, target, m) in adapter.peftModules {
            out.append(("\(prefix).lora_A.weight", m.a))
            out.append(("\(prefix).lora_B.weight", huggingFaceRows(m.b, target: target, config: adapter.modelConfig, inverse: false)))
        }
        if let scoreHead { out.append((scoreName, scoreHead.weight)) }
        return out
    }

    /// Writes the adapter into `directory` (created if needed).
    public static func save(_ adapter: LoRAAdapter, scoreHead: RewardHead? = nil, baseModel: String,
                            to directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let c = adapter.config
        var config: [String: Any] = [
            "peft_type": "LORA",
            "task_type": scoreHead == nil ? "CAUSAL_LM" : "SEQ_CLS",
            "base_model_name_or_path": baseModel,
            "r": c.rank,
            "lora_alpha": c.alpha,
            "lora_dropout": c.dropout,
            "target_modules": c.targets.map(\.huggingFaceName).sorted(),
            "bias": "none",
            "use_rslora": c.rsLoRA,
            "use_dora": false,
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": scoreHead == nil ? NSNull() : ["score"],
            "layers_to_transform": NSNull(),
            "layers_pattern": NSNull(),
            "rank_pattern": [String: Any](),
            "alpha_pattern": [String: Any](),
            "revision": NSNull(),
        ]
        if scoreHead != nil { config["num_labels"] = 1 }
        let json = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try json.write(to: directory.appendingPathComponent(configFile), options: .atomic)
        try Safetensors.write(tensors(adapter, scoreHead: scoreHead), to: directory.appendingPathComponent(weightsFile))
    }

    /// Reads `adapter_config.json` into a LoRA configuration.
    public static func readConfig(_ directory: URL) throws -> LoRAConfig {
        let url = directory.appendingPathComponent(configFile)
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw SafetensorsError.cannotRead(path: url.path, reason: error.localizedDescription) }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let rank = object["r"] as? Int, let alpha = (object["lora_alpha"] as? NSNumber)?.doubleValue,
              let modules = object["target_modules"] as? [String] else {
            throw SafetensorsError.malformed(path: url.path, offset: 0, reason: "expected a PEFT LoRA config with r, lora_alpha and target_modules")
        }
        var targets: [LoRATargetModule] = []
        for name in modules {
            guard let t = LoRATargetModule.allCases.first(where: { $0.huggingFaceName == name }) else {
                throw SafetensorsError.malformed(path: url.path, offset: 0, reason: "target module '\(name)' is not one of q/k/v/o/gate/up/down_proj")
            }
            targets.append(t)
        }
        return LoRAConfig(rank: rank, alpha: alpha, dropout: (object["lora_dropout"] as? NSNumber)?.doubleValue ?? 0,
                          targets: LoRATargetModule.allCases.filter(targets.contains), rsLoRA: object["use_rslora"] as? Bool ?? false)
    }

    /// Loads an adapter saved by `save` (or by PEFT for the same base) for `model`, and the reward
    /// head when the file has one.
    public static func load(_ directory: URL, model: TransformerConfig) throws -> (LoRAAdapter, RewardHead?) {
        let config = try readConfig(directory)
        let adapter = LoRAAdapter(config: config, model: model, seed: 0)
        let file = try Safetensors.read(directory.appendingPathComponent(weightsFile))
        for (prefix, target, m) in adapter.peftModules {
            try file.load("\(prefix).lora_A.weight", into: m.a)
            let b = Tensor(shape: m.b.shape)
            try file.load("\(prefix).lora_B.weight", into: b)
            let ours = huggingFaceRows(b, target: target, config: model, inverse: true)
            m.b.data.update(from: ours.data, count: ours.count)
        }
        var head: RewardHead?
        if file.tensors[scoreName] != nil {
            let h = RewardHead(hidden: model.hidden, seed: 0)
            try file.load(scoreName, into: h.weight)
            head = h
        }
        return (adapter, head)
    }

    /// llama.cpp stores a Llama-architecture model's Q and K rows permuted for its interleaved RoPE
    /// (convert_hf_to_gguf's `permute`: within each head, row 2i + j holds Hugging Face row
    /// j·d/2 + i). LoRA B rows of q/k follow the same order; Gemma 3 and Qwen2 are not permuted.
    static func huggingFaceRows(_ b: Tensor, target: LoRATargetModule, config: TransformerConfig, inverse: Bool) -> Tensor {
        guard config.architecture == "llama", target == .q || target == .k else { return b }
        let heads = target == .q ? config.heads : config.kvHeads, d = config.headDim, width = b.columns
        let out = Tensor(shape: b.shape)
        for h in 0..<heads {
            for i in 0..<(d / 2) {
                for j in 0..<2 {
                    let gguf = h * d + 2 * i + j, hf = h * d + j * (d / 2) + i
                    let (from, to) = inverse ? (hf, gguf) : (gguf, hf)
                    (out.data + to * width).update(from: b.data + from * width, count: width)
                }
            }
        }
        return out
    }
}
