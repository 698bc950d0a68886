import Foundation
import Testing
import TensorKit
@testable import TrainKit

/// LoRA layer: zero-initialised B leaves the base unchanged; gradients match finite differences
/// of a float64 forward; merging reproduces the adapted layer.
@Suite struct LoRATests {
    let rows = 3, inFeatures = 5, outFeatures = 4, rank = 2

    func values(_ n: Int, _ seed: UInt64) -> [Float] {
        var s = seed
        return (0..<n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(s >> 40) / Float(1 << 24) * 2 - 1
        }
    }

    func layer() -> LoRALinear {
        LoRALinear(weight: Tensor(shape: [outFeatures, inFeatures], values: values(outFeatures * inFeatures, 1)),
                   rank: rank, alpha: 4, seed: 2)
    }

    @Test func stepZeroEqualsTheBaseLayer() {
        let l = layer()
        let x = values(rows * inFeatures, 3)
        var y = [Float](repeating: 0, count: rows * outFeatures), base = y
        var hidden = [Float](repeating: 0, count: rows * rank)
        l.forward(x, rows: rows, into: &y, hidden: &hidden)
        GEMM.matmulTransposedB(x, l.weight.data, &base, m: rows, n: outFeatures, k: inFeatures)
        #expect(y == base)
        #expect(l.b.array.allSatisfy { $0 == 0 } && l.a.array.contains { $0 != 0 })
        #expect(l.scale == 2)
    }

    @Test func gradientsMatchFiniteDifferences() {
        let l = layer()
        for (i, v) in values(outFeatures * rank, 4).enumerated() { l.b[i] = v }
        let x = values(rows * inFeatures, 5), r = values(rows * outFeatures, 6)
        let w = l.weight.array
        func loss(_ xs: [Double], _ a: [Double], _ b: [Double]) -> Double {
            var total = 0.0
            for row in 0..<rows {
                let h = (0..<rank).map { k in (0..<inFeatures).reduce(0.0) { $0 + xs[row * inFeatures + $1] * a[k * inFeatures + $1] } }
                for o in 0..<outFeatures {
                    var y = (0..<inFeatures).reduce(0.0) { $0 + xs[row * inFeatures + $1] * Double(w[o * inFeatures + $1]) }
                    y += Double(l.scale) * (0..<rank).reduce(0.0) { $0 + h[$1] * b[o * rank + $1] }
                    total += y * Double(r[row * outFeatures + o])
                }
            }
            return total
        }
        func numerical(_ v: [Float], _ f: ([Double]) -> Double) -> [Double] {
            let base = v.map(Double.init)
            return (0..<v.count).map { i in
                var p = base, m = base
                p[i] += 1e-5
                m[i] -= 1e-5
                return (f(p) - f(m)) / 2e-5
            }
        }
        var y = [Float](repeating: 0, count: rows * outFeatures), hidden = [Float](repeating: 0, count: rows * rank)
        l.forward(x, rows: rows, into: &y, hidden: &hidden)
        var dx = [Float](repeating: 0, count: rows * inFeatures)
        l.backward(r, x: x, hidden: hidden, rows: rows, dx: &dx)
        let (xd, ad, bd) = (x.map(Double.init), l.a.array.map(Double.init), l.b.array.map(Double.init))
        for (got, want) in zip(dx, numerical(x) { loss($0, ad, bd) }) { #expect(abs(Double(got) - want) < 1e-3) }
        for (got, want) in zip(l.gradA.array, numerical(l.a.array) { loss(xd, $0, bd) }) { #expect(abs(Double(got) - want) < 1e-3) }
        for (got, want) in zip(l.gradB.array, numerical(l.b.array) { loss(xd, ad, $0) }) { #expect(abs(Double(got) - want) < 1e-3) }
    }

    @Test func mergedWeightReproducesTheAdaptedLayer() {
        let l = layer()
        for (i, v) in values(outFeatures * rank, 7).enumerated() { l.b[i] = v }
        let x = values(rows * inFeatures, 8)
        var y = [Float](repeating: 0, count: rows * outFeatures), hidden = [Float](repeating: 0, count: rows * rank)
        l.forward(x, rows: rows, into: &y, hidden: &hidden)
        let merged = l.merged()
        var y2 = [Float](repeating: 0, count: rows * outFeatures)
        GEMM.matmulTransposedB(x, merged.data, &y2, m: rows, n: outFeatures, k: inFeatures)
        for (a, b) in zip(y, y2) { #expect(abs(a - b) < 1e-5) }
    }
}
