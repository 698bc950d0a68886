import Foundation
import ModelKit

/// Tiny random-weight models written as GGUF files, and a float64 forward pass written from the
/// architecture descriptions (not from the engine's code) to check the engine against. Used by
/// the tests only (a library target so both test targets share it).
public struct TinyModel {
    public enum Family: Sendable { case llama3, gemma3 }

    public let family: Family
    public let vocab: Int, hidden: Int, layers: Int
    public let heads = 4, kvHeads = 2
    public var headDim: Int { hidden / heads }
    public var ffn: Int { hidden * 3 / 2 }
    public let window = 3
    let ropeBase = 500.0
    /// Llama 3 rope_freqs: one divisor per rotated pair (headDim / 2 of them).
    var freqFactors: [Float] { (0..<(headDim / 2)).map { 1 + 1.5 * Float($0) } }
    var tensors: [String: (dims: [Int], values: [Float])] = [:]

    public init(family: Family, seed: UInt64, vocab: Int = 40, hidden: Int = 16, layers: Int = 3) {
        self.family = family
        self.vocab = vocab
        self.hidden = hidden
        self.layers = layers
        var rng = SeededGenerator(seed: seed)
        func random(_ n: Int, scale: Float) -> [Float] { (0..<n).map { _ in Float(rng.nextUnit() * 2 - 1) * scale } }
        func norm(_ n: Int) -> [Float] { (0..<n).map { _ in Float(0.8 + 0.4 * rng.nextUnit()) } }
        let q = heads * headDim, kv = kvHeads * headDim
        tensors["token_embd.weight"] = ([hidden, vocab], random(vocab * hidden, scale: 0.5))
        tensors["output_norm.weight"] = ([hidden], norm(hidden))
        if family == .llama3 {
            tensors["output.weight"] = ([hidden, vocab], random(vocab * hidden, scale: 0.3))
            tensors["rope_freqs.weight"] = ([headDim / 2], freqFactors)
        }
        for l in 0..<layers {
            let p = "blk.\(l)."
            tensors[p + "attn_norm.weight"] = ([hidden], norm(hidden))
            tensors[p + "attn_q.weight"] = ([hidden, q], random(q * hidden, scale: 0.4))
            tensors[p + "attn_k.weight"] = ([hidden, kv], random(kv * hidden, scale: 0.4))
            tensors[p + "attn_v.weight"] = ([hidden, kv], random(kv * hidden, scale: 0.4))
            tensors[p + "attn_output.weight"] = ([q, hidden], random(hidden * q, scale: 0.3))
            tensors[p + "ffn_norm.weight"] = ([hidden], norm(hidden))
            tensors[p + "ffn_gate.weight"] = ([hidden, ffn], random(ffn * hidden, scale: 0.4))
            tensors[p + "ffn_up.weight"] = ([hidden, ffn], random(ffn * hidden, scale: 0.4))
            tensors[p + "ffn_down.weight"] = ([ffn, hidden], random(hidden * ffn, scale: 0.3))
            switch family {
            case .llama3:
                tensors[p + "attn_q.bias"] = ([q], random(q, scale: 0.1))
                tensors[p + "attn_k.bias"] = ([kv], random(kv, scale: 0.1))
                tensors[p + "attn_v.bias"] = ([kv], random(kv, scale: 0.1))
            case .gemma3:
                tensors[p + "attn_q_norm.weight"] = ([headDim], norm(headDim))
                tensors[p + "attn_k_norm.weight"] = ([headDim], norm(headDim))
                tensors[p + "post_attention_norm.weight"] = ([hidden], norm(hidden))
                tensors[p + "post_ffw_norm.weight"] = ([hidden], norm(hidden))
            }
        }
    }

    /// Writes the model with a SentencePiece-style vocabulary of single letters.
    public func write(to url: URL, name: String? = nil) throws {
        var w = GGUFWriter()
        let arch = family == .llama3 ? "llama" : "gemma3"
        w.set("general.architecture", .string(arch))
        if let name { w.set("general.name", .string(name)) }
        w.set("\(arch).embedding_length", .uint(UInt64(hidden), .uint32))
        w.set("\(arch).block_count", .uint(UInt64(layers), .uint32))
        w.set("\(arch).feed_forward_length", .uint(UInt64(ffn), .uint32))
        w.set("\(arch).attention.head_count", .uint(UInt64(heads), .uint32))
        w.set("\(arch).attention.head_count_kv", .uint(UInt64(kvHeads), .uint32))
        w.set("\(arch).attention.layer_norm_rms_epsilon", .float(1e-5, .float32))
        w.set("\(arch).rope.freq_base", .float(ropeBase, .float32))
        w.set("\(arch).context_length", .uint(64, .uint32))
        if family == .gemma3 {
            w.set("gemma3.attention.key_length", .uint(UInt64(headDim), .uint32))
            w.set("gemma3.attention.sliding_window", .uint(UInt64(window), .uint32))
        }
        var tokens = ["<pad>", "<eos>", "<bos>"]
        for i in 0..<(vocab - 3) {
            let letter = String(UnicodeScalar(UInt8(97 + i % 26)))
            tokens.append("▁" + letter + String(repeating: "x", count: i / 26))
        }
        let tokenValues: [GGUFValue] = tokens.map { .string($0) }
        let scoreValues: [GGUFValue] = tokens.indices.map { .float(-Double($0), .float32) }
        let typeValues: [GGUFValue] = tokens.indices.map { .int($0 < 3 ? 3 : 1, .int32) }
        w.set("tokenizer.ggml.model", .string("llama"))
        w.set("tokenizer.ggml.tokens", .array(.string, tokenValues))
        w.set("tokenizer.ggml.scores", .array(.float32, scoreValues))
        w.set("tokenizer.ggml.token_type", .array(.int32, typeValues))
        w.set("tokenizer.ggml.bos_token_id", .uint(2, .uint32))
        w.set("tokenizer.ggml.eos_token_id", .uint(1, .uint32))
        for name in tensors.keys.sorted() {
            let t = tensors[name]!
            w.tensors.append(.f32(name, dims: t.dims, t.values))
        }
        try w.encoded().write(to: url)
    }

    // MARK: float64 reference

    func matrix(_ name: String) -> (rows: Int, cols: Int, values: [Double]) {
        let t = tensors[name]!
        return (t.dims.count > 1 ? t.dims[1] : 1, t.dims[0], t.values.map(Double.init))
    }

    func linear(_ x: [Double], _ name: String, bias: String? = nil) -> [Double] {
        let w = matrix(name)
        var y = (0..<w.rows).map { r in (0..<w.cols).reduce(0.0) { $0 + w.values[r * w.cols + $1] * x[$1] } }
        if let bias, let b = tensors[bias] { for i in y.indices { y[i] += Double(b.values[i]) } }
        return y
    }

    func rms(_ x: [Double], _ weight: [Float], eps: Double = 1e-5) -> [Double] {
        let scale = 1 / ((x.map { $0 * $0 }.reduce(0, +) / Double(x.count)) + eps).squareRoot()
        return x.indices.map { x[$0] * scale * Double(weight[$0]) }
    }

    /// Rotates one head: Llama pairs (2i, 2i+1) with θ_i / factor_i; Gemma pairs (i, i + d/2).
    func rotate(_ v: [Double], position: Int, base: Double) -> [Double] {
        var out = v
        for i in 0..<(headDim / 2) {
            var theta = pow(base, -2.0 * Double(i) / Double(headDim))
            if family == .llama3 { theta /= Double(freqFactors[i]) }
            let angle = Double(position) * theta
            let (a, b) = family == .llama3 ? (2 * i, 2 * i + 1) : (i, i + headDim / 2)
            out[a] = v[a] * cos(angle) - v[b] * sin(angle)
            out[b] = v[a] * sin(angle) + v[b] * cos(angle)
        }
        return out
    }

    /// Logits (positions × vocab) for a token sequence.
    public func referenceLogits(_ ids: [Int32]) -> [[Double]] {
        let n = ids.count
        let embed = matrix("token_embd.weight")
        let scale = family == .gemma3 ? Double(Float(hidden).squareRoot()) : 1
        var x = ids.map { id in (0..<hidden).map { embed.values[Int(id) * hidden + $0] * scale } }
        for l in 0..<layers {
            let p = "blk.\(l)."
            // Gemma 3: every sixth layer is global; with 3 layers all slide.
            let sliding = family == .gemma3 && (l + 1) % 6 != 0
            let base = family == .gemma3 ? (sliding ? 10_000 : ropeBase) : ropeBase
            var qs: [[[Double]]] = [], ks: [[[Double]]] = [], vs: [[[Double]]] = []
            for t in 0..<n {
                let h = rms(x[t], tensors[p + "attn_norm.weight"]!.values)
                let q = linear(h, p + "attn_q.weight", bias: p + "attn_q.bias")
                let k = linear(h, p + "attn_k.weight", bias: p + "attn_k.bias")
                let v = linear(h, p + "attn_v.weight", bias: p + "attn_v.bias")
                func heads(_ a: [Double], _ count: Int, norm: String?) -> [[Double]] {
                    (0..<count).map { hh in
                        var head = Array(a[(hh * headDim)..<((hh + 1) * headDim)])
                        if let norm, let w = tensors[norm] { head = rms(head, w.values, eps: 1e-5) }
                        return head
                    }
                }
                qs.append(heads(q, self.heads, norm: p + "attn_q_norm.weight").map { rotate($0, position: t, base: base) })
                ks.append(heads(k, kvHeads, norm: p + "attn_k_norm.weight").map { rotate($0, position: t, base: base) })
                vs.append(heads(v, kvHeads, norm: nil))
            }
            for t in 0..<n {
                var attn: [Double] = []
                for hh in 0..<heads {
                    let g = hh / (heads / kvHeads)
                    let visible = (0...t).filter { !sliding || t - $0 < window }
                    let scores = visible.map { j in zip(qs[t][hh], ks[j][g]).reduce(0.0) { $0 + $1.0 * $1.1 } / Double(headDim).squareRoot() }
                    let m = scores.max()!
                    let e = scores.map { exp($0 - m) }
                    let total = e.reduce(0, +)
                    attn += (0..<headDim).map { d in zip(visible, e).reduce(0.0) { $0 + $1.1 / total * vs[$1.0][g][d] } }
                }
                var o = linear(attn, p + "attn_output.weight")
                if family == .gemma3 { o = rms(o, tensors[p + "post_attention_norm.weight"]!.values) }
                x[t] = zip(x[t], o).map(+)
                let h = rms(x[t], tensors[p + "ffn_norm.weight"]!.values)
                let gate = linear(h, p + "ffn_gate.weight"), up = linear(h, p + "ffn_up.weight")
                let act = zip(gate, up).map { g, u -> Double in
                    let a = family == .gemma3
                        ? 0.5 * g * (1 + tanh((2 / Double.pi).squareRoot() * (g + 0.044715 * g * g * g)))
                        : g / (1 + exp(-g))
                    return a * u
                }
                var f = linear(act, p + "ffn_down.weight")
                if family == .gemma3 { f = rms(f, tensors[p + "post_ffw_norm.weight"]!.values) }
                x[t] = zip(x[t], f).map(+)
            }
        }
        let head = family == .llama3 ? "output.weight" : "token_embd.weight"
        return x.map { linear(rms($0, tensors["output_norm.weight"]!.values), head) }
    }
}
