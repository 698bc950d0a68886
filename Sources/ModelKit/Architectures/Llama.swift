import Foundation
import TensorKit

/// The Llama family (`llama`, `qwen2`, `mistral`, SmolLM under `llama`), as llama.cpp builds
/// them: RMSNorm before attention and MLP, grouped-query attention, RoPE (interleaved pairs for
/// Llama, NeoX pairs for Qwen2), optional Q/K/V biases (Qwen2), SwiGLU MLP, and a separate or
/// tied output head. Llama 3 rope scaling comes as per-pair frequency factors (`rope_freqs`)
/// and linear scaling as `rope.scaling.type = linear`.
public enum Llama {
    public static let architectures = ["llama", "qwen2", "mistral"]

    public static func config(_ file: GGUFFile) throws -> TransformerConfig {
        let a = try file.string("general.architecture")
        let hidden = try file.int("\(a).embedding_length")
        let heads = try file.int("\(a).attention.head_count")
        let headDim = try file.optionalInt("\(a).attention.key_length") ?? hidden / heads
        let ropeDims = try file.optionalInt("\(a).rope.dimension_count") ?? headDim
        let base = Float(try file.optionalDouble("\(a).rope.freq_base") ?? 10_000)
        var positionScale: Float = 1
        if (try? file.string("\(a).rope.scaling.type")) == "linear",
           let factor = try file.optionalDouble("\(a).rope.scaling.factor"), factor > 0 {
            positionScale = Float(1 / factor)
        }
        var factors: [Float]?
        if let info = file.tensor(named: "rope_freqs.weight") {
            guard info.elementCount == ropeDims / 2 else {
                throw GGUFError.wrongShape(path: file.path, tensor: info.name, expected: [ropeDims / 2], found: info.dims)
            }
            factors = Dequantize.tensor(info, from: file)
        }
        let style: RoPEStyle = a == "qwen2" ? .neox : .interleaved
        let rope = RoPE(style: style, dims: ropeDims, base: base, positionScale: positionScale, frequencyFactors: factors)
        let layers = try file.int("\(a).block_count")
        return TransformerConfig(
            architecture: a, vocabSize: file.tensor(named: "token_embd.weight")?.rows ?? 0, hidden: hidden,
            layers: layers, heads: heads,
            kvHeads: try file.optionalInt("\(a).attention.head_count_kv") ?? heads, headDim: headDim,
            ffn: try file.int("\(a).feed_forward_length"),
            contextLength: try file.optionalInt("\(a).context_length") ?? 4096,
            normEps: Float(try file.optionalDouble("\(a).attention.layer_norm_rms_epsilon") ?? 1e-5),
            embeddingScale: 1, activation: .silu, attentionScale: 1 / Float(headDim).squareRoot(),
            qkNorm: false, postNorms: false, globalRoPE: rope, localRoPE: rope,
            slidingWindow: nil, slidingLayers: [Bool](repeating: false, count: layers))
    }
}
