import Foundation
import Testing
@testable import TensorKit

/// Every backward pass against central finite differences of a float64 forward written here,
/// with loss = Σ y ⊙ R for a fixed random R (so dy = R).
@Suite struct BackwardTests {
    func values(_ count: Int, seed: UInt64) -> [Float] { GEMMTests().values(count, seed: seed) }

    /// ∂f/∂x_i by central differences in float64.
    func numerical(_ x: [Float], _ f: ([Double]) -> Double) -> [Double] {
        let base = x.map(Double.init)
        let h = 1e-5
        return (0..<x.count).map { i in
            var plus = base, minus = base
            plus[i] += h
            minus[i] -= h
            return (f(plus) - f(minus)) / (2 * h)
        }
    }

    func expectClose(_ analytic: [Float], _ numeric: [Double], _ what: String) {
        for (i, (a, n)) in zip(analytic, numeric).enumerated() {
            #expect(abs(Double(a) - n) <= 2e-3 + 2e-3 * abs(n), "\(what)[\(i)]: analytic \(a), numerical \(n)")
        }
    }

    @Test func rmsnorm() {
        let rows = 3, dim = 7, eps: Float = 1e-5
        let x = values(rows * dim, seed: 1), w = values(dim, seed: 2), r = values(rows * dim, seed: 3)
        func forward(_ xs: [Double], _ ws: [Double]) -> Double {
            var loss = 0.0
            for row in 0..<rows {
                let xr = Array(xs[(row * dim)..<((row + 1) * dim)])
                let scale = 1 / (xr.map { $0 * $0 }.reduce(0, +) / Double(dim) + Double(eps)).squareRoot()
                for j in 0..<dim { loss += xr[j] * scale * ws[j] * Double(r[row * dim + j]) }
            }
            return loss
        }
        var dx = [Float](repeating: 0, count: rows * dim), dw = [Float](repeating: 0, count: dim)
        rmsnorm_backward(&dx, &dw, r, x, w, rows: rows, dim: dim, eps: eps)
        expectClose(dx, numerical(x) { forward($0, w.map(Double.init)) }, "dx")
        expectClose(dw, numerical(w) { forward(x.map(Double.init), $0) }, "dw")
    }

    @Test(arguments: [RoPEStyle.neox, .interleaved])
    func rope(style: RoPEStyle) {
        let rows = 3, heads = 2, headDim = 6, stride = heads * headDim + 2
        let rope = RoPE(style: style, dims: headDim, base: 100, frequencyFactors: [1, 2, 4])
        let positions: [Int32] = [0, 5, 17]
        let x = values(rows * stride, seed: 4), r = values(rows * stride, seed: 5)
        func forward(_ xs: [Double]) -> Double {
            var loss = 0.0
            for row in 0..<rows {
                for j in 0..<stride where j >= heads * headDim { loss += xs[row * stride + j] * Double(r[row * stride + j]) }
                for h in 0..<heads {
                    let base = row * stride + h * headDim
                    for i in 0..<(headDim / 2) {
                        let (a, b) = style == .neox ? (i, i + headDim / 2) : (2 * i, 2 * i + 1)
                        let angle = Double(positions[row]) * pow(100, -2 * Double(i) / Double(headDim)) / Double(rope.frequencyFactors![i])
                        let x0 = xs[base + a], x1 = xs[base + b]
                        loss += (x0 * cos(angle) - x1 * sin(angle)) * Double(r[base + a])
                        loss += (x0 * sin(angle) + x1 * cos(angle)) * Double(r[base + b])
                    }
                }
            }
            return loss
        }
        var dx = r
        rope_backward(&dx, rows: rows, heads: heads, headDim: headDim, rowStride: stride, positions: positions, rope: rope)
        expectClose(dx, numerical(x, forward), "dx")
    }

    @Test(arguments: [GatedActivation.silu, .geluTanh])
    func gatedActivation(activation: GatedActivation) {
        let n = 12
        let gate = values(n, seed: 6).map { $0 * 3 }, up = values(n, seed: 7), r = values(n, seed: 8)
        func act(_ g: Double) -> Double {
            switch activation {
            case .silu: return g / (1 + exp(-g))
            case .geluTanh: return 0.5 * g * (1 + tanh((2 / Double.pi).squareRoot() * (g + 0.044715 * g * g * g)))
            }
        }
        var dg = [Float](repeating: 0, count: n), du = [Float](repeating: 0, count: n)
        gated_activation_backward(dgate: &dg, dup: &du, dout: r, gate: gate, up: up, count: n, activation: activation)
        expectClose(dg, numerical(gate) { g in (0..<n).reduce(0) { $0 + act(g[$1]) * Double(up[$1]) * Double(r[$1]) } }, "dgate")
        expectClose(du, numerical(up) { u in (0..<n).reduce(0) { $0 + act(Double(gate[$1])) * u[$1] * Double(r[$1]) } }, "dup")
    }

    @Test(arguments: [(nNew: 3, nCtx: 3, window: Int?.none), (nNew: 2, nCtx: 5, window: nil), (nNew: 4, nCtx: 6, window: 3)])
    func attention(nNew: Int, nCtx: Int, window: Int?) {
        let heads = 4, kvHeads = 2, headDim = 3, qStride = heads * headDim, kvStride = kvHeads * headDim
        let scale: Float = 0.7
        let q = values(nNew * qStride, seed: 10), k = values(nCtx * kvStride, seed: 11), v = values(nCtx * kvStride, seed: 12)
        let r = values(nNew * qStride, seed: 13)
        func forward(_ qs: [Double], _ ks: [Double], _ vs: [Double]) -> Double {
            var loss = 0.0
            for i in 0..<nNew {
                let position = nCtx - nNew + i
                for h in 0..<heads {
                    let g = h / (heads / kvHeads)
                    let visible = (0..<nCtx).filter { j in j <= position && (window.map { w in position - j < w } ?? true) }
                    let s = visible.map { j in (0..<headDim).reduce(0.0) { $0 + qs[i * qStride + h * headDim + $1] * ks[j * kvStride + g * headDim + $1] } * Double(scale) }
                    let m = s.max()!
                    let e = s.map { exp($0 - m) }
                    let total = e.reduce(0, +)
                    for d in 0..<headDim {
                        let out = zip(visible, e).reduce(0.0) { $0 + $1.1 / total * vs[$1.0 * kvStride + g * headDim + d] }
                        loss += out * Double(r[i * qStride + h * headDim + d])
                    }
                }
            }
            return loss
        }
        var dq = [Float](repeating: 0, count: nNew * qStride)
        var dk = [Float](repeating: 0, count: nCtx * kvStride), dv = [Float](repeating: 0, count: nCtx * kvStride)
        var scratch = [Float](repeating: 0, count: 2 * nNew * nCtx)
        attention_backward(dq: &dq, dk: &dk, dv: &dv, dout: r, outStride: qStride, q: q, qStride: qStride, k: k, v: v,
                           kvStride: kvStride, nNew: nNew, nCtx: nCtx, heads: heads, kvHeads: kvHeads, headDim: headDim,
                           scale: scale, window: window, scratch: &scratch)
        let (qd, kd, vd) = (q.map(Double.init), k.map(Double.init), v.map(Double.init))
        expectClose(dq, numerical(q) { forward($0, kd, vd) }, "dq")
        expectClose(dk, numerical(k) { forward(qd, $0, vd) }, "dk")
        expectClose(dv, numerical(v) { forward(qd, kd, $0) }, "dv")
    }
}
