import Foundation
import ModelKit
import TensorKit

/// A transformer with frozen Float32 base weights and an optional LoRA adapter, run over whole
/// sequences with the activations kept for a backward pass (llm.c's layout: one forward and one
/// backward per op, activations saved per layer).
///
/// Sequences are stacked into one (T, hidden) matrix so every projection is one GEMM; attention
/// runs per sequence, so no padding is needed and sequences never attend to each other.
public final class TrainableTransformer {
    public let base: Transformer
    public let adapter: LoRAAdapter?
    /// Dropout in the LoRA branches is on while training, off for evaluation.
    public var training = true

    public init(base: Transformer, adapter: LoRAAdapter?) {
        self.base = base
        self.adapter = adapter
    }

    public var config: TransformerConfig { base.config }

    /// One layer's saved activations, (T, ·) each.
    final class LayerActivations {
        var xIn: Tensor!           // residual stream entering the layer (T, hidden)
        var qkvRaw: Tensor?        // Q|K|V before QK-norm (T, qDim + 2·kvDim), Gemma 3 only
        var qkv: Tensor!           // Q|K|V after QK-norm and RoPE
        var attn: Tensor!          // attention output per head (T, qDim)
        var attnProj: Tensor?      // o-projection before the post-attention norm (T, hidden)
        var xMid: Tensor!          // residual stream after attention (T, hidden)
        var gateUp: Tensor!        // gate | up (T, 2·ffn)
        var mlpProj: Tensor?       // down-projection before the post-MLP norm (T, hidden)
        var lora: [LoRATargetModule: LoRAModule.Saved] = [:]
    }

    /// Everything a backward pass needs from a forward pass, and its output.
    public final class Activations {
        public let sequences: [[Int32]]
        /// First row of each sequence in the stacked matrices.
        public let offsets: [Int]
        public var rows: Int { hidden.rows }
        /// Final-norm hidden states (T, hidden): what the LM head and a reward head read.
        public internal(set) var hidden: Tensor
        var layers: [LayerActivations] = []
        var xLast: Tensor?
        let positions: [Int32]

        init(sequences: [[Int32]], offsets: [Int], hidden: Tensor, positions: [Int32]) {
            self.sequences = sequences
            self.offsets = offsets
            self.hidden = hidden
            self.positions = positions
        }
    }

    /// Runs whole sequences (each from position 0). With `keep`, the activations for `backward`
    /// are saved (≈ 11 k floats per token per layer for gemma-3-270m); without, only the output.
    public func forward(_ sequences: [[Int32]], keep: Bool = true) -> Activations {
        let c = config, w = base.weights
        let rows = sequences.reduce(0) { $0 + $1.count }
        var offsets: [Int] = [], positions: [Int32] = []
        let x = Tensor(shape: [rows, c.hidden])
        var r = 0
        for s in sequences {
            offsets.append(r)
            for (i, token) in s.enumerated() {
                precondition(token >= 0 && Int(token) < c.vocabSize, "token id \(token) outside the vocabulary")
                positions.append(Int32(i))
                let dst = x.row(r)
                w.embedding.row(Int(token), into: dst)    // dequantized row by row: no Float32 copy of the table
                for j in 0..<c.hidden { dst[j] *= c.embeddingScale }
                r += 1
            }
        }
        let acts = Activations(sequences: sequences, offsets: offsets, hidden: x, positions: positions)
        guard rows > 0 else { return acts }
        let qkvWidth = c.qDim + 2 * c.kvDim
        let maxLength = sequences.map(\.count).max() ?? 0
        let scratch = Tensor(shape: [maxLength * maxLength], zeroed: false)
        let h = Tensor(shape: [rows, c.hidden], zeroed: false)

        for l in 0..<c.layers {
            let lw = w.layers[l], la = LayerActivations()
            let lora = adapter?.modules[l] ?? [:]
            let sliding = c.slidingLayers[l] ? c.slidingWindow : nil
            if keep { la.xIn = copy(x) }
            // Attention sublayer: h = norm(x); Q|K|V = h·Wᵀ (+ bias) (+ LoRA).
            rmsnorm_forward(h.data, x.data, lw.attnNorm.data, rows: rows, dim: c.hidden, eps: c.normEps)
            let qkv = Tensor(shape: [rows, qkvWidth], zeroed: false)
            GEMM.matmulTransposedB(h.data, lw.qkv.dense.data, qkv.data, m: rows, n: qkvWidth, k: c.hidden)
            if let bias = lw.qkvBias {
                for i in 0..<rows { let q = qkv.row(i); for j in 0..<qkvWidth { q[j] += bias.data[j] } }
            }
            for t in [LoRATargetModule.q, .k, .v] {
                if let m = lora[t] {
                    la.lora[t] = m.forward(h.data, rows: rows, into: qkv.data + t.fusedOffset(c), ldy: qkvWidth, training: training)
                }
            }
            if keep && lw.qNorm != nil { la.qkvRaw = copy(qkv) }
            Transformer.normalizeAndRotate(qkv.data, rows: rows, positions: positions, layer: lw, config: c, sliding: sliding != nil)
            let attn = Tensor(shape: [rows, c.qDim], zeroed: false)
            for (s, seq) in sequences.enumerated() where !seq.isEmpty {
                let q = qkv.row(offsets[s])
                attention_forward(attn.row(offsets[s]), outStride: c.qDim, q: q, qStride: qkvWidth,
                                  k: q + c.qDim, v: q + c.qDim + c.kvDim, kvStride: qkvWidth,
                                  nNew: seq.count, nCtx: seq.count, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim,
                                  scale: c.attentionScale, window: sliding, scratch: scratch.data)
            }
            la.attnProj = sublayerOutput(attn, lw.output.dense, lora: lora[.o], post: lw.postAttnNorm, into: x, saved: &la.lora[.o], keep: keep)
            if keep { la.xMid = copy(x) }

            // MLP sublayer: down(act(gate·h) ⊙ (up·h)).
            rmsnorm_forward(h.data, x.data, lw.ffnNorm.data, rows: rows, dim: c.hidden, eps: c.normEps)
            let gateUp = Tensor(shape: [rows, 2 * c.ffn], zeroed: false)
            GEMM.matmulTransposedB(h.data, lw.gateUp.dense.data, gateUp.data, m: rows, n: 2 * c.ffn, k: c.hidden)
            for t in [LoRATargetModule.gate, .up] {
                if let m = lora[t] {
                    la.lora[t] = m.forward(h.data, rows: rows, into: gateUp.data + t.fusedOffset(c), ldy: 2 * c.ffn, training: training)
                }
            }
            la.mlpProj = sublayerOutput(activation(gateUp, rows: rows), lw.down.dense, lora: lora[.down], post: lw.postFFNNorm, into: x,
                                        saved: &la.lora[.down], keep: keep)
            if keep {
                la.qkv = qkv
                la.attn = attn
                la.gateUp = gateUp
                acts.layers.append(la)
            }
        }
        if keep { acts.xLast = copy(x) }
        rmsnorm_forward(x.data, x.data, w.outputNorm.data, rows: rows, dim: c.hidden, eps: c.normEps)
        acts.hidden = x
        withExtendedLifetime((scratch, h)) {}
        return acts
    }

    /// Backpropagates dL/d(hidden) (T, hidden) through the model, accumulating the adapter's
    /// gradients. Returns dL/d(input embeddings) (T, hidden), before the embedding scale.
    @discardableResult
    public func backward(_ acts: Activations, dHidden: Tensor) -> Tensor {
        let c = config, w = base.weights, rows = acts.rows
        precondition(acts.layers.count == c.layers, "forward ran without keep: true")
        let qkvWidth = c.qDim + 2 * c.kvDim
        let dx = Tensor(shape: [rows, c.hidden], zeroed: false)
        rmsnorm_backward(dx.data, nil, dHidden.data, acts.xLast!.data, w.outputNorm.data, rows: rows, dim: c.hidden, eps: c.normEps)
        guard rows > 0 else { return dx }
        let maxLength = acts.sequences.map(\.count).max() ?? 0
        let scratch = Tensor(shape: [2 * maxLength * maxLength], zeroed: false)
        let dSub = Tensor(shape: [rows, c.hidden], zeroed: false)   // gradient at a sublayer output
        let dh = Tensor(shape: [rows, c.hidden], zeroed: false)     // gradient at a normed sublayer input
        let h = Tensor(shape: [rows, c.hidden], zeroed: false)      // recomputed normed input
        let dGateUp = Tensor(shape: [rows, 2 * c.ffn], zeroed: false)
        let dAct = Tensor(shape: [rows, c.ffn], zeroed: false)
        let dAttn = Tensor(shape: [rows, c.qDim], zeroed: false)
        let dqkv = Tensor(shape: [rows, qkvWidth], zeroed: false)

        for l in stride(from: c.layers - 1, through: 0, by: -1) {
            let lw = w.layers[l], la = acts.layers[l]
            let lora = adapter?.modules[l] ?? [:]
            let sliding = c.slidingLayers[l] ? c.slidingWindow : nil

            // MLP sublayer, in reverse. dx holds dL/d(residual after the layer).
            var dMLP = UnsafePointer(dx.data)
            if let post = lw.postFFNNorm, let saved = la.mlpProj {
                rmsnorm_backward(dSub.data, nil, dx.data, saved.data, post.data, rows: rows, dim: c.hidden, eps: c.normEps)
                dMLP = UnsafePointer(dSub.data)
            }
            let act = activation(la.gateUp, rows: rows)
            GEMM.matmul(dMLP, lw.down.dense.data, dAct.data, m: rows, n: c.ffn, k: c.hidden)           // (T, ffn)
            if let m = lora[.down], let s = la.lora[.down] { m.backward(dMLP, ldy: c.hidden, x: act.data, saved: s, rows: rows, dx: dAct.data) }
            for i in 0..<rows {
                let g = la.gateUp.row(i), dg = dGateUp.row(i)
                gated_activation_backward(dgate: dg, dup: dg + c.ffn, dout: dAct.row(i), gate: g, up: g + c.ffn,
                                          count: c.ffn, activation: c.activation)
            }
            rmsnorm_forward(h.data, la.xMid.data, lw.ffnNorm.data, rows: rows, dim: c.hidden, eps: c.normEps)
            GEMM.matmul(dGateUp.data, lw.gateUp.dense.data, dh.data, m: rows, n: c.hidden, k: 2 * c.ffn)   // (T, hidden)
            for t in [LoRATargetModule.gate, .up] {
                if let m = lora[t], let s = la.lora[t] {
                    m.backward(dGateUp.data + t.fusedOffset(c), ldy: 2 * c.ffn, x: h.data, saved: s, rows: rows, dx: dh.data)
                }
            }
            rmsnorm_backward(dSub.data, nil, dh.data, la.xMid.data, lw.ffnNorm.data, rows: rows, dim: c.hidden, eps: c.normEps)
            add(dx.data, dSub.data, rows * c.hidden)                                                // dL/d(xMid)

            // Attention sublayer, in reverse.
            var dOut = UnsafePointer(dx.data)
            if let post = lw.postAttnNorm, let saved = la.attnProj {
                rmsnorm_backward(dSub.data, nil, dx.data, saved.data, post.data, rows: rows, dim: c.hidden, eps: c.normEps)
                dOut = UnsafePointer(dSub.data)
            }
            GEMM.matmul(dOut, lw.output.dense.data, dAttn.data, m: rows, n: c.qDim, k: c.hidden)         // (T, qDim)
            if let m = lora[.o], let s = la.lora[.o] { m.backward(dOut, ldy: c.hidden, x: la.attn.data, saved: s, rows: rows, dx: dAttn.data) }
            dqkv.data.update(repeating: 0, count: dqkv.count)
            for (s, seq) in acts.sequences.enumerated() where !seq.isEmpty {
                let o = acts.offsets[s]
                let q = la.qkv.row(o), dq = dqkv.row(o)
                attention_backward(dq: dq, dk: dq + c.qDim, dv: dq + c.qDim + c.kvDim, dout: dAttn.row(o), outStride: c.qDim,
                                   q: q, qStride: qkvWidth, k: q + c.qDim, v: q + c.qDim + c.kvDim, kvStride: qkvWidth,
                                   nNew: seq.count, nCtx: seq.count, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim,
                                   scale: c.attentionScale, window: sliding, scratch: scratch.data)
            }
            let rope = sliding == nil ? c.globalRoPE : c.localRoPE
            acts.positions.withUnsafeBufferPointer { p in
                rope_backward(dqkv.data, rows: rows, heads: c.heads, headDim: c.headDim, rowStride: qkvWidth,
                              positions: p.baseAddress!, rope: rope)
                rope_backward(dqkv.data + c.qDim, rows: rows, heads: c.kvHeads, headDim: c.headDim, rowStride: qkvWidth,
                              positions: p.baseAddress!, rope: rope)
            }
            if let qNorm = lw.qNorm, let kNorm = lw.kNorm, let raw = la.qkvRaw {
                for i in 0..<rows {
                    let d = dqkv.row(i), x = raw.row(i)
                    rmsnorm_backward(d, nil, d, x, qNorm.data, rows: c.heads, dim: c.headDim, eps: c.normEps)
                    rmsnorm_backward(d + c.qDim, nil, d + c.qDim, x + c.qDim, kNorm.data, rows: c.kvHeads, dim: c.headDim, eps: c.normEps)
                }
            }
            rmsnorm_forward(h.data, la.xIn.data, lw.attnNorm.data, rows: rows, dim: c.hidden, eps: c.normEps)
            GEMM.matmul(dqkv.data, lw.qkv.dense.data, dh.data, m: rows, n: c.hidden, k: qkvWidth)         // (T, hidden)
            for t in [LoRATargetModule.q, .k, .v] {
                if let m = lora[t], let s = la.lora[t] {
                    m.backward(dqkv.data + t.fusedOffset(c), ldy: qkvWidth, x: h.data, saved: s, rows: rows, dx: dh.data)
                }
            }
            rmsnorm_backward(dSub.data, nil, dh.data, la.xIn.data, lw.attnNorm.data, rows: rows, dim: c.hidden, eps: c.normEps)
            add(dx.data, dSub.data, rows * c.hidden)                                                // dL/d(xIn)
        }
        withExtendedLifetime((scratch, dSub, dh, h, dGateUp, dAct, dAttn, dqkv)) {}
        return dx
    }

    /// A sublayer's output projection y = input·Wᵀ (+ LoRA), its post-norm (Gemma), and the residual
    /// add x += y. Returns y before the post-norm when `keep` and there is a post-norm (its backward needs it).
    private func sublayerOutput(_ input: Tensor, _ weight: Tensor, lora: LoRAModule?, post: Tensor?, into x: Tensor,
                                saved: inout LoRAModule.Saved?, keep: Bool) -> Tensor? {
        let c = config, rows = input.rows
        let proj = Tensor(shape: [rows, c.hidden], zeroed: false)
        GEMM.matmulTransposedB(input.data, weight.data, proj.data, m: rows, n: c.hidden, k: input.columns)
        if let lora { saved = lora.forward(input.data, rows: rows, into: proj.data, ldy: c.hidden, training: training) }
        var beforeNorm: Tensor?
        if let post {
            if keep { beforeNorm = copy(proj) }
            rmsnorm_forward(proj.data, proj.data, post.data, rows: rows, dim: c.hidden, eps: c.normEps)
        }
        add(x.data, proj.data, rows * c.hidden)
        return beforeNorm
    }

    private func activation(_ gateUp: Tensor, rows: Int) -> Tensor {
        let c = config
        let act = Tensor(shape: [rows, c.ffn], zeroed: false)
        for i in 0..<rows {
            let g = gateUp.row(i)
            gated_activation_forward(act.row(i), gate: g, up: g + c.ffn, count: c.ffn, activation: c.activation)
        }
        return act
    }

    private func copy(_ t: Tensor) -> Tensor {
        let out = Tensor(shape: t.shape, zeroed: false)
        out.data.update(from: t.data, count: t.count)
        return out
    }

    private func add(_ a: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) {
        for i in 0..<count { a[i] += b[i] }
    }
}
