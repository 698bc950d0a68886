import Foundation
import CQuant
import TensorKit

/// Hyperparameters of a decoder-only transformer, as an architecture file reads them from GGUF.
/// The architecture files (Architectures/) set the family-specific switches.
public struct TransformerConfig: Sendable {
    public var architecture: String
    public var vocabSize: Int
    public var hidden: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var ffn: Int
    public var contextLength: Int
    public var normEps: Float
    /// Embeddings are multiplied by this (Gemma: √hidden).
    public var embeddingScale: Float
    public var activation: GatedActivation
    /// Scale applied to queries before QKᵀ.
    public var attentionScale: Float
    /// Per-head RMSNorm of queries and keys (Gemma 3).
    public var qkNorm: Bool
    /// RMSNorm of the attention and MLP outputs before the residual add (Gemma 2/3).
    public var postNorms: Bool
    /// RoPE for layers with full attention.
    public var globalRoPE: RoPE
    /// RoPE for sliding-window layers (Gemma 3: base 10 000).
    public var localRoPE: RoPE
    /// Window for sliding-window layers; nil when no layer slides.
    public var slidingWindow: Int?
    /// Which layers use the sliding window.
    public var slidingLayers: [Bool]

    public var qDim: Int { heads * headDim }
    public var kvDim: Int { kvHeads * headDim }

    /// Parameters in the weights (for FLOP estimates): per token ≈ 2 × this in a forward pass.
    public func matmulParameters(includeHead: Bool) -> Int {
        let perLayer = hidden * (qDim + 2 * kvDim) + qDim * hidden + 3 * hidden * ffn
        return layers * perLayer + (includeHead ? vocabSize * hidden : 0)
    }
}

/// One transformer block's weights. Linear weights are (out, in) `WeightMatrix`es (quantized or
/// Float32); norms and biases are Float32.
public final class LayerWeights: @unchecked Sendable {
    public let attnNorm: Tensor       // (hidden)
    /// Q, K and V projections stacked by rows: (qDim + 2·kvDim, hidden), one GEMM per layer.
    public let qkv: WeightMatrix
    public let qkvBias: Tensor?       // (qDim + 2·kvDim)
    public let qNorm: Tensor?         // (headDim)
    public let kNorm: Tensor?         // (headDim)
    public let output: WeightMatrix   // (hidden, qDim)
    public let postAttnNorm: Tensor?  // (hidden)
    public let ffnNorm: Tensor        // (hidden)
    /// Gate and up projections stacked by rows: (2·ffn, hidden).
    public let gateUp: WeightMatrix
    public let down: WeightMatrix     // (hidden, ffn)
    public let postFFNNorm: Tensor?   // (hidden)

    public init(attnNorm: Tensor, qkv: WeightMatrix, qkvBias: Tensor?, qNorm: Tensor?, kNorm: Tensor?, output: WeightMatrix,
                postAttnNorm: Tensor?, ffnNorm: Tensor, gateUp: WeightMatrix, down: WeightMatrix, postFFNNorm: Tensor?) {
        self.attnNorm = attnNorm
        self.qkv = qkv
        self.qkvBias = qkvBias
        self.qNorm = qNorm
        self.kNorm = kNorm
        self.output = output
        self.postAttnNorm = postAttnNorm
        self.ffnNorm = ffnNorm
        self.gateUp = gateUp
        self.down = down
        self.postFFNNorm = postFFNNorm
    }
}

/// All weights of a model.
public final class TransformerWeights: @unchecked Sendable {
    public let embedding: WeightMatrix  // (vocab, hidden)
    public let layers: [LayerWeights]
    public let outputNorm: Tensor     // (hidden)
    /// Separate LM head (vocab, hidden), or nil when tied to the embedding.
    public let lmHead: WeightMatrix?

    public init(embedding: WeightMatrix, layers: [LayerWeights], outputNorm: Tensor, lmHead: WeightMatrix?) {
        self.embedding = embedding
        self.layers = layers
        self.outputNorm = outputNorm
        self.lmHead = lmHead
    }

    /// The matrix the LM head multiplies with.
    public var head: WeightMatrix { lmHead ?? embedding }
}

/// Reads GGUF tensors by llama.cpp's names, shape-checked: vectors as Float32, matrices kept in
/// their block format (`storage: .quantized`, types with a kernel) or dequantized.
struct WeightReader {
    let file: GGUFFile
    var storage: WeightStorage = .quantized

    func has(_ name: String) -> Bool { file.tensor(named: name) != nil }

    /// The header of tensor `name`, which must have the GGML dims `dims` (`[columns, rows]` for a matrix).
    func info(_ name: String, _ dims: [Int]) throws -> GGUFTensorInfo {
        guard let info = file.tensor(named: name) else { throw GGUFError.missingTensor(path: file.path, name: name) }
        guard info.dims == dims else { throw GGUFError.wrongShape(path: file.path, tensor: name, expected: dims, found: info.dims) }
        return info
    }

    /// A tensor with the expected GGML dims, as Float32.
    func tensor(_ name: String, _ dims: [Int]) throws -> Tensor {
        let found = try info(name, dims)
        let out = Tensor(shape: dims.count == 1 ? [dims[0]] : [found.rows, found.columns], zeroed: false)
        Dequantize.tensor(found, from: file, into: out.data)
        return out
    }

    /// A (rows, columns) matrix, `dims` = [columns, rows].
    func matrix(_ name: String, _ dims: [Int]) throws -> WeightMatrix {
        try stacked([name], rows: [dims[1]], columns: dims[0])
    }

    func optionalMatrix(_ name: String, _ dims: [Int]) throws -> WeightMatrix? {
        has(name) ? try matrix(name, dims) : nil
    }

    /// Several (rows, columns) matrices with equal columns stacked by rows into one.
    func stacked(_ names: [String], rows: [Int], columns: Int) throws -> WeightMatrix {
        let infos = try zip(names, rows).map { try info($0, [columns, $1]) }
        let kept = storage == .quantized && infos.allSatisfy { pq_supported(Int32($0.type.rawValue)) != 0 && columns % $0.type.blockSize == 0 }
        guard kept else { return WeightMatrix(dense: try stackedDense(names, rows: rows, columns: columns)) }
        var segments: [WeightMatrix.Segment] = [], first = 0
        for (info, r) in zip(infos, rows) {
            segments.append(.init(type: info.type, base: file.data(of: info).baseAddress!, firstRow: first, rows: r,
                                  rowBytes: columns / info.type.blockSize * info.type.blockBytes))
            first += r
        }
        return WeightMatrix(columns: columns, segments: segments, owner: file, releasesPages: file.isMapped)
    }

    /// Several (rows, columns) matrices with equal columns stacked by rows into one, as Float32.
    func stackedDense(_ names: [String], rows: [Int], columns: Int) throws -> Tensor {
        let out = Tensor(shape: [rows.reduce(0, +), columns], zeroed: false)
        var offset = 0
        for (name, r) in zip(names, rows) {
            Dequantize.tensor(try info(name, [columns, r]), from: file, into: out.data + offset * columns)
            offset += r
        }
        return out
    }

    func stackedVectors(_ names: [String], lengths: [Int]) throws -> Tensor? {
        guard names.allSatisfy(has) else { return nil }
        let out = Tensor(shape: [lengths.reduce(0, +)])
        var offset = 0
        for (name, n) in zip(names, lengths) {
            let part = try tensor(name, [n])
            withExtendedLifetime(part) { (out.data + offset).update(from: part.data, count: n) }
            offset += n
        }
        return out
    }

    /// The block weights under llama.cpp's standard names (`blk.N.*`).
    func layer(_ l: Int, _ c: TransformerConfig) throws -> LayerWeights {
        let p = "blk.\(l)."
        let h = c.hidden
        return LayerWeights(
            attnNorm: try tensor(p + "attn_norm.weight", [h]),
            qkv: try stacked([p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"],
                             rows: [c.qDim, c.kvDim, c.kvDim], columns: h),
            qkvBias: try stackedVectors([p + "attn_q.bias", p + "attn_k.bias", p + "attn_v.bias"],
                                        lengths: [c.qDim, c.kvDim, c.kvDim]),
            qNorm: c.qkNorm ? try tensor(p + "attn_q_norm.weight", [c.headDim]) : nil,
            kNorm: c.qkNorm ? try tensor(p + "attn_k_norm.weight", [c.headDim]) : nil,
            output: try matrix(p + "attn_output.weight", [c.qDim, h]),
            postAttnNorm: c.postNorms ? try tensor(p + "post_attention_norm.weight", [h]) : nil,
            ffnNorm: try tensor(p + "ffn_norm.weight", [h]),
            gateUp: try stacked([p + "ffn_gate.weight", p + "ffn_up.weight"], rows: [c.ffn, c.ffn], columns: h),
            down: try matrix(p + "ffn_down.weight", [c.ffn, h]),
            postFFNNorm: c.postNorms ? try tensor(p + "post_ffw_norm.weight", [h]) : nil)
    }

    /// Embedding, blocks, final norm and (untied) head.
    func weights(_ c: TransformerConfig) throws -> TransformerWeights {
        TransformerWeights(
            embedding: try matrix("token_embd.weight", [c.hidden, c.vocabSize]),
            layers: try (0..<c.layers).map { try layer($0, c) },
            outputNorm: try tensor("output_norm.weight", [c.hidden]),
            lmHead: try optionalMatrix("output.weight", [c.hidden, c.vocabSize]))
    }
}
