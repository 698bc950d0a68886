import Foundation
import TensorKit

/// Gemma 3 (`general.architecture = gemma3`), as llama.cpp builds it (llm_build_gemma3):
/// embeddings × √hidden; per-head RMSNorm of Q and K; RoPE (NeoX pairing) with base 10 000 on
/// sliding-window layers and the file's base on global ones; five sliding-window layers for
/// every global one; queries scaled by 1/√headDim; GELU-tanh gated MLP; RMSNorm after the
/// attention and MLP outputs as well as before; tied LM head. Norm weights in GGUF already
/// include Gemma's +1, so they multiply as stored.
public enum Gemma3 {
    /// Every sixth layer attends globally (Gemma 3 report: 5 local : 1 global).
    public static let slidingPattern = 6
    public static let localRoPEBase: Float = 10_000

    public static func config(_ file: GGUFFile) throws -> TransformerConfig {
        let a = "gemma3"
        let hidden = try file.int("\(a).embedding_length")
        let heads = try file.int("\(a).attention.head_count")
        let headDim = try file.optionalInt("\(a).attention.key_length") ?? hidden / heads
        let layers = try file.int("\(a).block_count")
        let vocab = file.tensor(named: "token_embd.weight")?.rows ?? 0
        let base = Float(try file.optionalDouble("\(a).rope.freq_base") ?? 1_000_000)
        // Larger Gemma 3 models scale global-layer positions linearly (rope.scaling.factor).
        let factor = Float(try file.optionalDouble("\(a).rope.scaling.factor") ?? 1)
        return TransformerConfig(
            architecture: a, vocabSize: vocab, hidden: hidden, layers: layers, heads: heads,
            kvHeads: try file.optionalInt("\(a).attention.head_count_kv") ?? heads, headDim: headDim,
            ffn: try file.int("\(a).feed_forward_length"),
            contextLength: try file.optionalInt("\(a).context_length") ?? 8192,
            normEps: Float(try file.optionalDouble("\(a).attention.layer_norm_rms_epsilon") ?? 1e-6),
            embeddingScale: Float(hidden).squareRoot(),
            activation: .geluTanh,
            attentionScale: 1 / Float(headDim).squareRoot(),
            qkNorm: true, postNorms: true,
            globalRoPE: RoPE(style: .neox, dims: headDim, base: base, positionScale: 1 / factor),
            localRoPE: RoPE(style: .neox, dims: headDim, base: localRoPEBase),
            slidingWindow: try file.optionalInt("\(a).attention.sliding_window") ?? 512,
            slidingLayers: (0..<layers).map { ($0 + 1) % slidingPattern != 0 })
    }
}
