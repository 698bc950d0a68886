import CQuant
import Foundation
import Testing
@testable import ModelKit
import TensorKit

/// Scoring's `bfloat16` precision: activations and weights rounded to bfloat16 (round to nearest
/// even), products summed in Float32 by AVX512-BF16. The reference sums the same rounded values
/// in Double, so only Float32 summation error remains.
@Suite(.enabled(if: ScoringPrecision.bfloat16Supported, "this CPU has no AVX512-BF16, so scoring runs Float32 products"))
struct BFloat16KernelTests {
    static func bf16(_ v: Float) -> Double {
        let u = v.bitPattern
        return Double(Float(bitPattern: (u &+ 0x7FFF &+ ((u >> 16) & 1)) & 0xFFFF_0000))
    }

    /// Largest |y − Σ w·x| / Σ|w·x| over y(m, n), w (n, k) and x (m, k) rounded to bfloat16.
    static func worstError(_ y: [Float], w: [Float], x: [Float], m: Int, n: Int, k: Int) -> Double {
        var worst = 0.0
        for r in 0..<m {
            for i in 0..<n {
                var expected = 0.0, scale = 0.0
                for j in 0..<k {
                    let p = bf16(w[i * k + j]) * bf16(x[r * k + j])
                    expected += p
                    scale += abs(p)
                }
                worst = max(worst, abs(Double(y[r * n + i]) - expected) / max(scale, 1e-30))
            }
        }
        return worst
    }

    /// The C kernel alone, with an odd k (a padded pair), rows that fill no whole 8-row block and
    /// columns that fill no whole 48-column group, and k past one 1024-element chunk.
    @Test(arguments: [(11, 53, 37), (13, 53, 64), (19, 100, 2100)])
    func kernelMatchesRoundedReference(m: Int, n: Int, k: Int) {
        var rng = SeededGenerator(seed: 5)
        let x = (0..<m * k).map { _ in Float.random(in: -3...3, using: &rng) }
        let w = (0..<n * k).map { _ in Float.random(in: -1...1, using: &rng) }
        let kp = (k + 1) & ~1
        var a = [UInt16](repeating: 0, count: m * kp)
        var panels = [UInt16](repeating: 0xFFFF, count: Int(pq_bf16_panel_bytes(Int64(n), Int64(k))) / 2)
        var y = [Float](repeating: .nan, count: m * n)
        pq_bf16_pack_rows(x, Int64(k), Int64(m), Int64(k), &a)
        pq_bf16_pack_panels(w, Int64(k), Int64(n), Int64(k), &panels)
        pq_bf16_gemm(Int64(m), Int64(n), Int64(k), a, panels, &y, Int64(n))
        let worst = Self.worstError(y, w: w, x: x, m: m, n: n, k: k)
        #expect(worst < 1e-5, "worst relative error \(worst)")
    }

    /// A quantized matrix: bfloat16 products of the decoded weights (split across the cores'
    /// tiles), not the Float32 products' numbers, and the same numbers for a row whether 3 or 50
    /// rows share the call. Q8_0 and Q5_0 are also taken after an 8-bit product, from their
    /// repacked copies.
    @Test(arguments: [GGMLType.q4_K, .q6_K, .q8_0, .q5_0])
    func weightMatrixTakesBFloat16Products(type: GGMLType) {
        let rows = 200, columns = 512, m = max(50, WeightMatrix.gemmThreshold)
        var bytes = QuantizedKernelTests.randomRows(type, rows: rows, columns: columns, seed: 7)
        var rng = SeededGenerator(seed: 11)
        let x = (0..<m * columns).map { _ in Float.random(in: -2...2, using: &rng) }
        let rowBytes = columns / type.blockSize * type.blockBytes
        bytes.withUnsafeMutableBytes { raw in
            let base = UnsafeRawPointer(raw.baseAddress!)
            let matrix = WeightMatrix(columns: columns, segments: [.init(type: type, base: base, firstRow: 0, rows: rows, rowBytes: rowBytes)],
                                      owner: NSObject())
            var decoded = [Float](repeating: 0, count: rows * columns)
            Dequantize.run(type, base, &decoded, count: rows * columns)
            var yb = [Float](repeating: 0, count: m * rows), yf = yb, y3 = [Float](repeating: 0, count: 3 * rows), y8 = yb
            x.withUnsafeBufferPointer {
                matrix.apply($0.baseAddress!, rows: m, into: &yb, int8: false, precision: .bfloat16)
                matrix.apply($0.baseAddress!, rows: m, into: &yf, int8: false, precision: .float32)
                matrix.apply($0.baseAddress!, rows: 3, into: &y3, int8: false, precision: .bfloat16)
                matrix.apply($0.baseAddress!, rows: m, into: &y8, int8: true)
            }
            let worst = Self.worstError(yb, w: decoded, x: x, m: m, n: rows, k: columns)
            #expect(worst < 1e-5, "\(type): worst relative error \(worst)")
            #expect(yb != yf, "\(type): the bfloat16 products gave the Float32 products' numbers")
            #expect(Array(yb.prefix(3 * rows)) == y3, "\(type): 3 rows gave other numbers than the same rows among \(m)")
            // After the 8-bit product (which repacks Q8_0), the same bfloat16 numbers.
            var again = [Float](repeating: 0, count: m * rows)
            x.withUnsafeBufferPointer { matrix.apply($0.baseAddress!, rows: m, into: &again, int8: false, precision: .bfloat16) }
            #expect(again == yb, "\(type): bfloat16 products changed after an 8-bit product")
        }
    }

    /// The real models in one batch of every reference prompt (enough rows for the GEMM path):
    /// bfloat16 products stay near llama.cpp's Float32 logits, the top token unchanged. Measured
    /// worst differences are printed.
    @Test(.enabled(if: ForwardReferenceTests.bothAvailable, "gemma-3-270m or qwen2.5-coder-0.5b-instruct is not in the model cache"),
          arguments: [TestModels.gemmaName, TestModels.qwenName])
    func logitsNearReference(model name: String) throws {
        let model = try LoadedModels.model(name, int8: false)
        let cases = try TestModels.reference(name, "logits_f32.json", as: [LogitsReference].self)
        let inputs = cases.map { SequenceInput(cache: model.transformer.makeCache(), tokens: $0.ids) }
        #expect(cases.reduce(0) { $0 + $1.ids.count } >= WeightMatrix.gemmThreshold)
        let hidden = model.transformer.forward(inputs, int8: false, precision: .bfloat16)
        let rows = cases.reduce(0) { $0 + $1.ids.count }
        let logits = model.head.logits(hidden.data, rows: rows, int8: false)
        var worst: Float = 0, row = 0
        for c in cases {
            for (p, position) in c.positions.enumerated() {
                let base = (row + p) * model.head.vocabSize
                for entry in position.top {
                    worst = max(worst, abs(logits[base + Int(entry[0])] - Float(entry[1])))
                }
                let top = Int(position.top[0][0])
                let best = (0..<model.head.vocabSize).max { logits[base + $0] < logits[base + $1] }!
                #expect(best == top || abs(Float(position.top[0][1]) - Float(position.top[1][1])) < 0.1,
                        "\(name) \(c.text.debugDescription) position \(p): top token \(best), llama.cpp's \(top)")
            }
            row += c.ids.count
        }
        print("\(name), bfloat16 products: worst top-20 logit difference \(worst) over \(cases.count) prompts")
        // Measured 0.22 (gemma, whose activations are large) and 0.08 (qwen), 2026-12-05.
        let tolerance: Float = name == TestModels.gemmaName ? 0.5 : 0.25
        #expect(worst < tolerance, "\(name): worst top-20 logit difference \(worst)")
    }
}
