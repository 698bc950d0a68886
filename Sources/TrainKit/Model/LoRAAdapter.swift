import Foundation
import ModelKit
import TensorKit

/// The projections LoRA can adapt, with their Hugging Face module names (PEFT's `target_modules`).
public enum LoRATargetModule: String, CaseIterable, Sendable, Codable {
    case q, k, v, o, gate, up, down

    /// The module name in a Hugging Face Llama/Gemma/Qwen2 decoder layer (`q_proj`, `down_proj`).
    public var huggingFaceName: String { "\(rawValue)_proj" }

    /// q, k, v and o sit in the attention block; gate, up and down in the MLP.
    var isAttention: Bool { [.q, .k, .v, .o].contains(self) }

    /// The submodule path inside a decoder layer (`self_attn.q_proj`, `mlp.down_proj`).
    public var huggingFacePath: String { (isAttention ? "self_attn." : "mlp.") + huggingFaceName }

    /// llama.cpp's tensor name in block `layer` (`attn_q`, `attn_output`, `ffn_down`).
    public func ggufName(layer: Int) -> String {
        let suffix = self == .o ? "attn_output" : (isAttention ? "attn_" : "ffn_") + rawValue
        return "blk.\(layer).\(suffix).weight"
    }

    /// (out, in) of the projection.
    public func shape(_ c: TransformerConfig) -> (out: Int, in: Int) {
        switch self {
        case .q: (c.qDim, c.hidden)
        case .k, .v: (c.kvDim, c.hidden)
        case .o: (c.hidden, c.qDim)
        case .gate, .up: (c.ffn, c.hidden)
        case .down: (c.hidden, c.ffn)
        }
    }

    /// First column of this projection's output inside the fused product it belongs to
    /// (Q|K|V or gate|up); 0 for o and down.
    public func fusedOffset(_ c: TransformerConfig) -> Int {
        switch self {
        case .q, .o, .gate, .down: 0
        case .k: c.qDim
        case .v: c.qDim + c.kvDim
        case .up: c.ffn
        }
    }
}

/// LoRA hyperparameters (PEFT's LoraConfig, trimmed).
public struct LoRAConfig: Sendable, Equatable, Codable {
    public var rank: Int
    public var alpha: Double
    public var dropout: Double
    public var targets: [LoRATargetModule]
    public var rsLoRA: Bool

    public init(rank: Int = 16, alpha: Double = 32, dropout: Double = 0, targets: [LoRATargetModule] = LoRATargetModule.allCases,
                rsLoRA: Bool = false) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.targets = targets
        self.rsLoRA = rsLoRA
    }
}

/// One LoRA module per (layer, target) of a transformer; the base weights stay frozen.
public final class LoRAAdapter {
    public let config: LoRAConfig
    public let modelConfig: TransformerConfig
    /// modules[layer][target]
    public let modules: [[LoRATargetModule: LoRAModule]]

    public init(config: LoRAConfig, model: TransformerConfig, seed: UInt64) {
        self.config = config
        modelConfig = model
        modules = (0..<model.layers).map { l in
            var layer: [LoRATargetModule: LoRAModule] = [:]
            for (t, target) in LoRATargetModule.allCases.enumerated() where config.targets.contains(target) {
                let (out, inF) = target.shape(model)
                layer[target] = LoRAModule(inFeatures: inF, outFeatures: out, rank: config.rank, alpha: Float(config.alpha),
                                           rsLoRA: config.rsLoRA, dropout: Float(config.dropout),
                                           seed: seed &+ UInt64(l * 16 + t) &* 0x9E37_79B9)
            }
            return layer
        }
    }

    /// Every module in a fixed order (layer, then target), with PEFT's name prefix for its tensors
    /// (`base_model.model.model.layers.{L}.self_attn.q_proj`).
    public var peftModules: [(prefix: String, target: LoRATargetModule, module: LoRAModule)] {
        modules.enumerated().flatMap { l, layer in
            LoRATargetModule.allCases.compactMap { target in
                layer[target].map { ("base_model.model.model.layers.\(l).\(target.huggingFacePath)", target, $0) }
            }
        }
    }

    /// Every trainable tensor with its gradient, in a fixed order (layer, target, A then B),
    /// named as PEFT names them.
    public var parameters: [(name: String, value: Tensor, gradient: Tensor)] {
        peftModules.flatMap { p, _, m in [("\(p).lora_A.weight", m.a, m.gradA), ("\(p).lora_B.weight", m.b, m.gradB)] }
    }

    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.value.count } }

    public func zeroGradients() { for layer in modules { for m in layer.values { m.zeroGradients() } } }
}
