import Foundation
import Testing
@testable import TensorKit

/// The forward ops against straightforward Double-precision implementations.
@Suite struct OpsTests {
    func values(_ count: Int, seed: UInt64) -> [Float] { GEMMTests().values(count, seed: seed) }

    @Test(arguments: [(nNew: 1, nCtx: 1, heads: 2, kvHeads: 1, window: Int?.none),
                      (nNew: 3, nCtx: 5, heads: 14, kvHeads: 2, window: nil),
                      (nNew: 5, nCtx: 5, heads: 4, kvHeads: 4, window: 2),
                      (nNew: 1, nCtx: 9, heads: 6, kvHeads: 3, window: 4)])
    func attentionMatchesNaive(nNew: Int, nCtx: Int, heads: Int, kvHeads: Int, window: Int?) {
        let headDim = 8, qStride = heads * headDim + 5, kvStride = kvHeads * headDim + 3
        let q = values(nNew * qStride, seed: 11), k = values(nCtx * kvStride, seed: 12), v = values(nCtx * kvStride, seed: 13)
        var out = [Float](repeating: .nan, count: nNew * heads * headDim)
        var scratch = [Float](repeating: .nan, count: nNew * nCtx)
        let scale: Float = 0.3
        attention_forward(&out, outStride: heads * headDim, q: q, qStride: qStride, k: k, v: v, kvStride: kvStride,
                          nNew: nNew, nCtx: nCtx, heads: heads, kvHeads: kvHeads, headDim: headDim,
                          scale: scale, window: window, scratch: &scratch)
        let group = heads / kvHeads
        for i in 0..<nNew {
            let position = nCtx - nNew + i
            for h in 0..<heads {
                let g = h / group
                var weights: [Double] = []
                for j in 0..<nCtx {
                    let visible = j <= position && (window.map { position - j < $0 } ?? true)
                    var dot = 0.0
                    for d in 0..<headDim { dot += Double(q[i * qStride + h * headDim + d]) * Double(k[j * kvStride + g * headDim + d]) }
                    weights.append(visible ? dot * Double(scale) : -.infinity)
                }
                let m = weights.max()!
                let e = weights.map { exp($0 - m) }
                let total = e.reduce(0, +)
                for d in 0..<headDim {
                    var expected = 0.0
                    for j in 0..<nCtx { expected += e[j] / total * Double(v[j * kvStride + g * headDim + d]) }
                    let got = out[i * heads * headDim + h * headDim + d]
                    #expect(abs(Double(got) - expected) < 1e-5, "i \(i) h \(h) d \(d): \(got) vs \(expected)")
                }
            }
        }
    }

    @Test func rmsnormMatchesNaive() {
        let rows = 3, dim = 21
        let x = values(rows * dim, seed: 21), w = values(dim, seed: 22)
        var out = [Float](repeating: 0, count: rows * dim)
        rmsnorm_forward(&out, x, w, rows: rows, dim: dim, eps: 1e-6)
        for r in 0..<rows {
            let ms = (0..<dim).map { Double(x[r * dim + $0]) * Double(x[r * dim + $0]) }.reduce(0, +) / Double(dim)
            for j in 0..<dim {
                let expected = Double(x[r * dim + j]) / (ms + 1e-6).squareRoot() * Double(w[j])
                #expect(abs(Double(out[r * dim + j]) - expected) < 1e-5)
            }
        }
    }

    @Test(arguments: [RoPEStyle.neox, .interleaved])
    func ropeRotatesPairs(style: RoPEStyle) {
        let headDim = 8, heads = 2
        let rope = RoPE(style: style, dims: headDim, base: 10_000)
        var x = values(heads * headDim * 2, seed: 31)
        let original = x
        let positions: [Int32] = [0, 7]
        rope_forward(&x, rows: 2, heads: heads, headDim: headDim, rowStride: heads * headDim, positions: positions,
                     rope: rope)
        // Position 0 is the identity; position 7 rotates pair i by 7·base^(−2i/d).
        #expect(Array(x[0..<(heads * headDim)]) == Array(original[0..<(heads * headDim)]))
        for h in 0..<heads {
            for i in 0..<(headDim / 2) {
                let (a, b) = style == .neox ? (i, i + headDim / 2) : (2 * i, 2 * i + 1)
                let base = heads * headDim + h * headDim
                let angle = 7 * pow(10_000.0, -2.0 * Double(i) / Double(headDim))
                let x0 = Double(original[base + a]), x1 = Double(original[base + b])
                #expect(abs(Double(x[base + a]) - (x0 * cos(angle) - x1 * sin(angle))) < 1e-5)
                #expect(abs(Double(x[base + b]) - (x0 * sin(angle) + x1 * cos(angle))) < 1e-5)
            }
        }
    }

    /// The vectorised path (8 lanes and a tail) against Float64 over the range where gates live
    /// and beyond it, where the exponential saturates.
    @Test func gatedActivationsVectorised() {
        let count = 1003
        let gate = (0..<count).map { Float(-60 + 120 * Double($0) / Double(count - 1)) }
        let up = (0..<count).map { Float(1 + 0.001 * Double($0)) }
        var out = [Float](repeating: .nan, count: count)
        for activation in [GatedActivation.silu, .geluTanh] {
            gated_activation_forward(&out, gate: gate, up: up, count: count, activation: activation)
            for i in 0..<count {
                let x = Double(gate[i])
                let t = activation == .silu ? x : 2 * (2 / Double.pi).squareRoot() * x * (1 + 0.044715 * x * x)
                let expected = x / (1 + exp(-t)) * Double(up[i])
                // Relative: the exponential's 3e-7, plus Float32 rounding of its argument t (about
                // 6e-8·|t| relative in e^−t); 1e-37 absolute where Float32 underflows.
                let bound = (1e-6 + 2e-7 * abs(t)) * abs(expected) + 1e-37
                #expect(abs(Double(out[i]) - expected) <= bound, "\(activation) at \(x): \(out[i]) vs \(expected)")
            }
        }
    }

    @Test func gatedActivations() {
        let gate: [Float] = [-3, -0.5, 0, 0.7, 4], up: [Float] = [1, 2, -1, 0.5, 3]
        var out = [Float](repeating: 0, count: 5)
        gated_activation_forward(&out, gate: gate, up: up, count: 5, activation: .silu)
        for i in 0..<5 {
            let x = Double(gate[i])
            #expect(abs(Double(out[i]) - x / (1 + exp(-x)) * Double(up[i])) < 1e-6)
        }
        gated_activation_forward(&out, gate: gate, up: up, count: 5, activation: .geluTanh)
        for i in 0..<5 {
            let x = Double(gate[i])
            let gelu = 0.5 * x * (1 + tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
            #expect(abs(Double(out[i]) - gelu * Double(up[i])) < 1e-6)
        }
    }
}
