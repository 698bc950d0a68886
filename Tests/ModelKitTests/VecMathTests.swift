import CQuant
import Foundation
import Testing
@testable import ModelKit
import TensorKit

/// CQuant's vectorised exponential and the LM head's reductions against Float64 references.
@Suite struct VecMathTests {
    /// exp over its whole Float32 range: relative error below 3e-7 where the result is a normal
    /// float, 0 below the normal range, +∞ above 88.73.
    @Test func exponentialMatchesFloat64() {
        let xs = (0..<200_003).map { -100 + 190 * Float($0) / 200_003 } + [0, -0, 1, -1, 88.7, 88.8, -87.3, -87.4, -.infinity]
        var out = [Float](repeating: .nan, count: xs.count)
        pq_exp(xs, Int64(xs.count), &out)
        var worst = 0.0
        for (x, y) in zip(xs, out) {
            let reference = Foundation.exp(Double(x))
            if reference < Double(Float.leastNormalMagnitude) {
                #expect(y == 0 || abs(Double(y) - reference) < 1e-38, "exp(\(x)) = \(y)")
            } else if reference > Double(Float.greatestFiniteMagnitude) {
                #expect(y == .infinity, "exp(\(x)) = \(y)")
            } else {
                worst = max(worst, abs(Double(y) - reference) / reference)
            }
        }
        #expect(worst < 3e-7, "worst relative error \(worst)")
    }

    /// pq_max and pq_sum_exp at every length 0…70 (every tail case of the 8- and 16-lane loops)
    /// and at vocabulary sizes, on random logits.
    @Test func reductionsMatchFloat64() {
        var rng = SeededGenerator(seed: 7)
        let x = (0..<262_147).map { _ in Float(rng.nextUnit() * 40 - 20) }
        for n in Array(0...70) + [255, 256, 257, 4_096, 16_384, 151_936, 262_144, 262_147] {
            let slice = Array(x[0..<n])
            let m = pq_max(slice, Int64(n))
            #expect(m == (slice.max() ?? -.infinity), "max at n = \(n)")
            guard n > 0 else { #expect(pq_sum_exp(slice, 0, 0) == 0); continue }
            let reference = slice.reduce(0.0) { $0 + Foundation.exp(Double($1) - Double(m)) }
            let sum = pq_sum_exp(slice, Int64(n), m)
            #expect(abs(sum - reference) / reference < 1e-6, "Σ exp at n = \(n): \(sum) vs \(reference)")
        }
    }

    /// A sampler's weights exp((x − max) / T) and their sum, at every tail length and at a
    /// vocabulary size, against Float64: relative 1e-6 per weight and on the sum, which is within
    /// 1e-9 of the written weights' own sum.
    @Test func temperatureWeightsMatchFloat64() {
        var rng = SeededGenerator(seed: 11)
        let x = (0..<262_147).map { _ in Float(rng.nextUnit() * 30 - 15) }
        for n in Array(1...20) + [262_144, 262_147] {
            for temperature: Float in [0.3, 0.7, 1.5] {
                let slice = Array(x[0..<n]), m = slice.max()!
                var out = [Float](repeating: .nan, count: n)
                let sum = pq_temperature_weights(slice, Int64(n), m, temperature, &out)
                var reference = 0.0, worst = 0.0
                for (v, y) in zip(slice, out) {
                    let e = Foundation.exp(Double((v - m) / temperature))
                    reference += e
                    if e > Double(Float.leastNormalMagnitude) { worst = max(worst, abs(Double(y) - e) / e) }
                }
                #expect(worst < 1e-6, "n \(n) T \(temperature): worst weight error \(worst)")
                #expect(abs(sum - reference) / reference < 1e-6, "n \(n) T \(temperature): sum \(sum) vs \(reference)")
                #expect(abs(sum - out.reduce(0.0) { $0 + Double($1) }) / sum < 1e-9, "the sum is of the weights written")
            }
        }
    }

    /// The softmax-gradient row: x ← scale·exp(x − shift), tails included.
    @Test func scaledExponential() {
        var rng = SeededGenerator(seed: 11)
        for n in [1, 7, 8, 9, 33, 1_000] {
            let x = (0..<n).map { _ in Float(rng.nextUnit() * 20 - 15) }
            var y = x
            pq_scaled_exp(&y, Int64(n), 2.5, -0.75)
            for (a, b) in zip(x, y) {
                let reference = -0.75 * Foundation.exp(Double(a - 2.5))
                #expect(abs(Double(b) - reference) <= 3e-7 * abs(reference) + 1e-30, "n = \(n): \(b) vs \(reference)")
            }
        }
    }

    /// LogitHead.score (rows split across cores, vocabulary streamed in chunks) against a
    /// Float64 log-sum-exp over the full logits of the same head.
    @Test func scoreMatchesFullLogits() {
        var rng = SeededGenerator(seed: 3)
        let vocab = 5_000, hidden = 64, rows = 7
        let weights = Tensor(shape: [vocab, hidden])
        for i in 0..<weights.count { weights[i] = Float(rng.nextUnit() * 2 - 1) }
        let h = Tensor(shape: [rows, hidden])
        for i in 0..<h.count { h[i] = Float(rng.nextUnit() * 2 - 1) }
        var head = LogitHead(head: WeightMatrix(dense: weights))
        head.chunk = 1_536      // several chunks, the last one short
        let targets: [Int32?] = [0, 4_999, 1_536, nil, 17, 3_071, 2_500]
        let scores = head.score(h.data, rows: rows, targets: targets, topK: 3)
        let full = head.logits(h.data, rows: rows)
        for r in 0..<rows {
            let z = (0..<vocab).map { Double(full.data[r * vocab + $0]) }
            let m = z.max()!
            let lse = m + Foundation.log(z.reduce(0) { $0 + Foundation.exp($1 - m) })
            #expect(abs(Double(scores[r].logSumExp) - lse) < 1e-5, "row \(r)")
            #expect(scores[r].targetLogit == targets[r].map { full.data[r * vocab + Int($0)] })
            let top = z.indices.sorted { z[$0] > z[$1] || (z[$0] == z[$1] && $0 < $1) }.prefix(3)
            #expect(scores[r].top.map(\.id) == top.map(Int32.init), "top-3 of row \(r)")
        }
    }
}
