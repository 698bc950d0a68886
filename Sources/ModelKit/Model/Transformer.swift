import CQuant
import Foundation
import TensorKit

/// New tokens for one sequence, appended after what its cache holds.
public struct SequenceInput {
    public var cache: KVCache
    public var tokens: [Int32]

    public init(cache: KVCache, tokens: [Int32]) {
        self.cache = cache
        self.tokens = tokens
    }
}

/// A decoder-only transformer (Gemma 3, Llama, Qwen2, …) on quantized or Float32 weights.
///
/// A forward pass takes any number of sequences at once: their new tokens are stacked into one
/// (T, hidden) matrix so every projection is a single GEMM, while attention runs per sequence
/// against its own cache. Prefill (many tokens, one sequence) and batched decode (one token,
/// many sequences) are the same call.
public final class Transformer: @unchecked Sendable {
    public let config: TransformerConfig
    public let weights: TransformerWeights
    /// Quantized projections round activations to 8 bits (`WeightMatrix.apply`); false keeps
    /// Float32 activations (the engine's oracle tests compare both).
    public let int8Activations: Bool

    public init(config: TransformerConfig, weights: TransformerWeights, int8Activations: Bool = WeightMatrix.int8Activations) {
        self.config = config
        self.weights = weights
        self.int8Activations = int8Activations
    }

    /// An empty cache for one sequence.
    public func makeCache(capacity: Int = 256) -> KVCache {
        KVCache(layers: config.layers, kvDim: config.kvDim, capacity: capacity)
    }

    /// Runs the new tokens of every sequence through all layers, appending to their caches.
    /// Returns the final-norm hidden states, (Σ tokens, hidden), sequences in order. `int8`
    /// overrides `int8Activations` for this pass (scoring runs Float32 activations); `precision`
    /// is how Float32 activations meet the weights (`WeightMatrix.apply`).
    public func forward(_ inputs: [SequenceInput], int8: Bool? = nil, precision: ScoringPrecision = .float32) -> Tensor {
        let int8Activations = int8 ?? self.int8Activations
        let c = config
        let rows = inputs.reduce(0) { $0 + $1.tokens.count }
        let x = Tensor(shape: [rows, c.hidden])        // residual stream (T, hidden)
        guard rows > 0 else { return x }
        var positions = [Int32](repeating: 0, count: rows)
        var offsets: [Int] = []                           // first row of each sequence
        var row = 0
        for input in inputs {
            offsets.append(row)
            input.cache.reserve(input.cache.length + input.tokens.count)
            for (i, token) in input.tokens.enumerated() {
                precondition(token >= 0 && Int(token) < c.vocabSize, "token id \(token) outside the vocabulary")
                positions[row] = Int32(input.cache.length + i)
                let target = x.row(row)
                weights.embedding.row(Int(token), into: target)
                for j in 0..<c.hidden { target[j] *= c.embeddingScale }
                row += 1
            }
        }

        let qkvWidth = c.qDim + 2 * c.kvDim
        let h = Tensor(shape: [rows, c.hidden])           // normed input of a sublayer
        let qkv = Tensor(shape: [rows, qkvWidth])         // Q | K | V per row
        let attn = Tensor(shape: [rows, c.qDim])          // attention output per head
        let proj = Tensor(shape: [rows, c.hidden])        // sublayer output
        let gateUp = Tensor(shape: [rows, 2 * c.ffn])     // gate | up per row
        let act = Tensor(shape: [rows, c.ffn])
        let maxContext = inputs.map { $0.cache.length + $0.tokens.count }.max() ?? 0
        // Attention runs row by row in a fixed order (pq_attention_heads): a prompt's rows in
        // blocks of 16 with every query head of a KV head (each K/V tile read once per block),
        // decoding rows with their KV group's heads. The items are dealt to the cores in
        // lists of about equal cost when there is enough work (Σ new × context × headDim ≥ 2^16
        // multiply-adds over all heads); each list has its own scratch.
        let group = c.heads / c.kvHeads
        let attentionWork = inputs.reduce(0) { $0 + $1.tokens.count * ($1.cache.length + $1.tokens.count) } * c.heads * c.headDim
        let attentionParts = attentionWork >= 1 << 16 ? Parallel.cores : 1
        let scratchPerPart = 4 * group * max(maxContext, 1)  // ATT_ROWS × heads × context (attention.c)
        let scratch = Tensor(shape: [attentionParts * scratchPerPart], zeroed: false)  // written before read
        // The items depend only on the inputs and the window: one list for global layers, one for sliding.
        let globalItems = Transformer.attentionItems(inputs, heads: c.heads, group: group, parts: attentionParts)
        let slidingItems = c.slidingWindow.map { Transformer.attentionItems(inputs, heads: c.heads, group: group, window: $0, parts: attentionParts) }
        // Pointers into these buffers outlive any single use of the objects: keep them alive.
        defer { withExtendedLifetime((h, qkv, attn, proj, gateUp, act, scratch)) {} }

        for (l, w) in weights.layers.enumerated() {
            let sliding = c.slidingLayers[l] ? c.slidingWindow : nil
            // Attention sublayer.
            Transformer.rmsnormRows(h.data, x.data, w.attnNorm.data, rows: rows, dim: c.hidden, eps: c.normEps)
            w.qkv.apply(h.data, rows: rows, into: qkv.data, int8: int8Activations, precision: precision)
            if let bias = w.qkvBias {
                for r in 0..<rows { let q = qkv.row(r); for j in 0..<qkvWidth { q[j] += bias.data[j] } }
            }
            Transformer.normalizeAndRotate(qkv.data, rows: rows, positions: positions, layer: w, config: c, sliding: sliding != nil)
            for (s, input) in inputs.enumerated() {
                let cache = input.cache, n = input.tokens.count, start = cache.length
                let keys = cache.keys(l), values = cache.values(l)
                for i in 0..<n {
                    let src = qkv.row(offsets[s] + i)
                    (keys + (start + i) * c.kvDim).update(from: src + c.qDim, count: c.kvDim)
                    (values + (start + i) * c.kvDim).update(from: src + c.qDim + c.kvDim, count: c.kvDim)
                }
            }
            // Head h reads KV head h / group (GQA).
            let items = sliding != nil ? slidingItems ?? globalItems : globalItems
            Parallel.parts(items.count) { part, range in
                let buffer = scratch.data + part * scratchPerPart
                for item in range.flatMap({ items[$0] }) {
                    let input = inputs[item.sequence], n = input.tokens.count, start = input.cache.length
                    let head = item.heads.lowerBound, kv = head / group
                    pq_attention_heads(attn.row(offsets[item.sequence]) + head * c.headDim, Int64(c.qDim),
                                       qkv.row(offsets[item.sequence]) + head * c.headDim, Int64(qkvWidth),
                                       input.cache.keys(l) + kv * c.headDim, input.cache.values(l) + kv * c.headDim, Int64(c.kvDim),
                                       Int64(item.rows.lowerBound), Int64(item.rows.upperBound), Int64(n), Int64(start + n),
                                       Int64(item.heads.count), Int64(c.headDim), c.attentionScale, Int64(sliding ?? 0), buffer)
                }
            }
            w.output.apply(attn.data, rows: rows, into: proj.data, int8: int8Activations, precision: precision)
            if let post = w.postAttnNorm {
                Transformer.rmsnormRows(proj.data, proj.data, post.data, rows: rows, dim: c.hidden, eps: c.normEps)
            }
            addInPlace(x.data, proj.data, count: rows * c.hidden)

            // MLP sublayer: down(act(gate · h) ⊙ (up · h)).
            Transformer.rmsnormRows(h.data, x.data, w.ffnNorm.data, rows: rows, dim: c.hidden, eps: c.normEps)
            w.gateUp.apply(h.data, rows: rows, into: gateUp.data, int8: int8Activations, precision: precision)
            Parallel.chunks(rows, minimum: 16) { range in
                for r in range {
                    let g = gateUp.row(r)
                    gated_activation_forward(act.row(r), gate: g, up: g + c.ffn, count: c.ffn, activation: c.activation)
                }
            }
            w.down.apply(act.data, rows: rows, into: proj.data, int8: int8Activations, precision: precision)
            if let post = w.postFFNNorm {
                Transformer.rmsnormRows(proj.data, proj.data, post.data, rows: rows, dim: c.hidden, eps: c.normEps)
            }
            addInPlace(x.data, proj.data, count: rows * c.hidden)
        }
        for input in inputs { input.cache.advance(by: input.tokens.count) }
        Transformer.rmsnormRows(x.data, x.data, weights.outputNorm.data, rows: rows, dim: c.hidden, eps: c.normEps)
        return x
    }

    /// QK-norm (Gemma 3) and RoPE of the Q and K columns of stacked Q|K|V rows (rows, qDim + 2·kvDim),
    /// in place; row r sits at `positions[r]`. Shared by inference and training.
    public static func normalizeAndRotate(_ qkv: UnsafeMutablePointer<Float>, rows: Int, positions: [Int32], layer w: LayerWeights,
                                          config c: TransformerConfig, sliding: Bool) {
        let width = c.qDim + 2 * c.kvDim
        if let qNorm = w.qNorm, let kNorm = w.kNorm {
            for r in 0..<rows {
                let q = qkv + r * width
                rmsnorm_forward(q, q, qNorm.data, rows: c.heads, dim: c.headDim, eps: c.normEps)
                rmsnorm_forward(q + c.qDim, q + c.qDim, kNorm.data, rows: c.kvHeads, dim: c.headDim, eps: c.normEps)
            }
        }
        let rope = sliding ? c.localRoPE : c.globalRoPE
        positions.withUnsafeBufferPointer { p in
            rope_forward(qkv, rows: rows, heads: c.heads, headDim: c.headDim, rowStride: width, positions: p.baseAddress!, rope: rope)
            rope_forward(qkv + c.qDim, rows: rows, heads: c.kvHeads, headDim: c.headDim, rowStride: width,
                         positions: p.baseAddress!, rope: rope)
        }
    }

    /// One call of `pq_attention_heads`: rows `rows` of sequence `sequence`, query heads `heads`
    /// (all of one KV head's group).
    struct AttentionItem: Equatable {
        var sequence: Int
        var heads: Range<Int>
        var rows: Range<Int>
    }

    /// Attention items of one forward, dealt to `parts` lists of about equal cost: a sequence
    /// with at least 16 new rows in blocks of 16 rows × a KV head's group of query heads, fewer
    /// rows (decoding) all rows × the group; each group split into shares of its heads when there
    /// are fewer than two such items per core. Costs (rows × heads × keys seen) go largest first to the
    /// cheapest list.
    static func attentionItems(_ inputs: [SequenceInput], heads: Int, group: Int, window: Int = 0, parts: Int,
                               blockRows: Int = 16) -> [[AttentionItem]] {
        var items: [(item: AttentionItem, cost: Int)] = []
        // A KV group's heads together, unless there are too few (block, group) items to balance
        // (fewer than two per core, e.g. one KV head decoding, or 16 + 4 rows after a prefix).
        let groupItems = inputs.reduce(0) { $0 + ($1.tokens.count + blockRows - 1) / blockRows } * (heads / group)
        let pieces = groupItems >= 2 * parts ? 1 : min(group, parts)
        for (s, input) in inputs.enumerated() {
            let n = input.tokens.count, start = input.cache.length
            guard n > 0 else { continue }
            // Keys row i sees: its position + 1, at most the window.
            let cost = { (rows: Range<Int>) in rows.reduce(0) { $0 + (window > 0 ? min(window, start + $1 + 1) : start + $1 + 1) } }
            // Blocks of `blockRows` rows (fewer new rows than that, decoding: one block of all).
            for first in stride(from: 0, to: n, by: blockRows) {
                let rows = first..<min(first + blockRows, n)
                for heads in shares(heads: heads, group: group, pieces: pieces) {
                    items.append((AttentionItem(sequence: s, heads: heads, rows: rows), cost(rows) * heads.count))
                }
            }
        }
        var lists = [[AttentionItem]](repeating: [], count: max(parts, 1))
        var totals = [Int](repeating: 0, count: lists.count)
        for (item, cost) in items.enumerated().sorted(by: { ($0.element.cost, -$0.offset) > ($1.element.cost, -$1.offset) }).map(\.element) {
            let p = totals.indices.min { totals[$0] < totals[$1] }!
            lists[p].append(item)
            totals[p] += cost
        }
        return lists
    }

    /// Each KV group's query heads, in `pieces` contiguous shares.
    private static func shares(heads: Int, group: Int, pieces: Int) -> [Range<Int>] {
        stride(from: 0, to: heads, by: group).flatMap { g in
            (0..<pieces).map { g + group * $0 / pieces..<g + group * ($0 + 1) / pieces }.filter { !$0.isEmpty }
        }
    }

    /// `rmsnorm_forward` with the rows split across the cores (prefill-sized inputs).
    static func rmsnormRows(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                            rows: Int, dim: Int, eps: Float) {
        Parallel.chunks(rows, minimum: 64) { range in
            rmsnorm_forward(out + range.lowerBound * dim, x + range.lowerBound * dim, weight, rows: range.count, dim: dim, eps: eps)
        }
    }

    private func addInPlace(_ a: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { a[i] += b[i] }
    }
}
