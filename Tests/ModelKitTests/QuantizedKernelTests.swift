import Foundation
import Testing
@testable import ModelKit
import TensorKit

/// The quantized kernels against a scalar reference: weights decoded by `Dequantize` (itself
/// checked against llama.cpp's gguf package in DequantizeTests), activations rounded to 8 bits
/// per block as ggml's quantize_row_q8_0 / quantize_row_q8_K define, products summed in Double.
@Suite struct QuantizedKernelTests {
    static let types: [GGMLType] = [.q8_0, .q5_0, .q4_0, .q4_K, .q5_K, .q6_K, .f16, .bf16, .f32]

    /// Random but valid blocks: random bytes with every f16 scale replaced by a small finite one.
    static func randomRows(_ type: GGMLType, rows: Int, columns: Int, seed: UInt64) -> [UInt8] {
        var rng = SeededGenerator(seed: seed)
        let blocks = rows * columns / type.blockSize
        var bytes = (0..<blocks * type.blockBytes).map { _ in UInt8.random(in: 0...255, using: &rng) }
        func setHalf(_ offset: Int, _ value: Float) {
            let bits = Float16(value).bitPattern
            bytes[offset] = UInt8(bits & 0xFF)
            bytes[offset + 1] = UInt8(bits >> 8)
        }
        for b in 0..<blocks {
            let o = b * type.blockBytes
            switch type {
            case .q8_0, .q4_0, .q5_0: setHalf(o, Float.random(in: 0.001...0.05, using: &rng))
            case .q4_K, .q5_K:
                setHalf(o, Float.random(in: 0.001...0.01, using: &rng))
                setHalf(o + 2, Float.random(in: 0.001...0.01, using: &rng))
            case .q6_K: setHalf(o + 208, Float.random(in: 0.0005...0.005, using: &rng))
            case .f16: setHalf(o, Float.random(in: -1...1, using: &rng))
            case .bf16:
                let bits = Float.random(in: -1...1, using: &rng).bitPattern >> 16
                bytes[o] = UInt8(bits & 0xFF)
                bytes[o + 1] = UInt8(bits >> 8)
            case .f32:
                withUnsafeBytes(of: Float.random(in: -1...1, using: &rng)) { for k in 0..<4 { bytes[o + k] = $0[k] } }
            default: break
            }
        }
        return bytes
    }

    /// x rounded to 8 bits per block the way the kernels quantize activations.
    static func roundedActivations(_ x: [Float], for type: GGMLType, int8: Bool) -> [Double] {
        guard int8 else { return x.map(Double.init) }
        switch type {
        case .f16, .bf16, .f32: return x.map(Double.init)
        case .q4_K, .q5_K, .q6_K:
            return stride(from: 0, to: x.count, by: 256).flatMap { start -> [Double] in
                let block = x[start..<start + 256]
                let max = block.max { abs($0) < abs($1) }!
                guard max != 0 else { return [Double](repeating: 0, count: 256) }
                let iscale = -127 / max
                return block.map { Double(Swift.min(127, ($0 * iscale).rounded(.toNearestOrEven))) * Double(1 / iscale) }
            }
        default:
            return stride(from: 0, to: x.count, by: 32).flatMap { start -> [Double] in
                let block = x[start..<start + 32]
                let amax = block.map(abs).max()!
                let id: Float = amax != 0 ? 127 / amax : 0
                let d = Double(Float(Float16(amax / 127)))
                return block.map { Double(($0 * id).rounded(.toNearestOrEven)) * d }
            }
        }
    }

    @Test(arguments: types, [false, true])
    func matrixVectorMatchesScalarReference(type: GGMLType, int8: Bool) throws {
        let rows = 37, columns = 512, m = 3
        var bytes = Self.randomRows(type, rows: rows, columns: columns, seed: UInt64(type.rawValue) + 1)
        var rng = SeededGenerator(seed: 99)
        let x = (0..<m * columns).map { _ in Float.random(in: -2...2, using: &rng) }
        let rowBytes = columns / type.blockSize * type.blockBytes
        bytes.withUnsafeMutableBytes { raw in
            let w = raw.baseAddress!
            let matrix = WeightMatrix(columns: columns,
                                      segments: [.init(type: type, base: UnsafeRawPointer(w), firstRow: 0, rows: rows, rowBytes: rowBytes)],
                                      owner: NSObject())
            var decoded = [Float](repeating: 0, count: rows * columns)
            Dequantize.run(type, UnsafeRawPointer(w), &decoded, count: rows * columns)
            #expect(matrix.isQuantized)
            var y = [Float](repeating: 0, count: m * rows)
            x.withUnsafeBufferPointer { matrix.apply($0.baseAddress!, rows: m, into: &y, int8: int8) }
            // Largest |y − Σ w·x̂| relative to Σ|w·x̂| over every output, x̂ the activations the kernels see.
            func worstError(_ y: [Float], _ x: [Float], rowsOfX: Int) -> Double {
                var worst = 0.0
                for r in 0..<rowsOfX {
                    let xr = Self.roundedActivations(Array(x[r * columns..<(r + 1) * columns]), for: type, int8: int8)
                    for i in 0..<rows {
                        var expected = 0.0, scale = 0.0
                        for j in 0..<columns {
                            expected += Double(decoded[i * columns + j]) * xr[j]
                            scale += abs(Double(decoded[i * columns + j]) * xr[j])
                        }
                        worst = max(worst, abs(Double(y[r * rows + i]) - expected) / max(scale, 1e-6))
                    }
                }
                return worst
            }
            let worst = worstError(y, x, rowsOfX: m)
            // Float32 summation: relative to Σ|w·x|, ~1e-7 per add.
            #expect(worst < 1e-5, "\(type): worst relative error \(worst)")
            // One row (the decode kernels) and 8 + 3 rows (a full and a partial group of the
            // multi-row kernels, or the tile path if the threshold is lower).
            for count in [1, 11] {
                let xc = Array(x.prefix(min(count, m) * columns)) + (0..<max(0, count - m) * columns).map { _ in Float.random(in: -2...2, using: &rng) }
                var yc = [Float](repeating: 0, count: count * rows)
                xc.withUnsafeBufferPointer { matrix.apply($0.baseAddress!, rows: count, into: &yc, int8: int8) }
                let worstCount = worstError(yc, xc, rowsOfX: count)
                #expect(worstCount < 1e-5, "\(type), \(count) rows: worst relative error \(worstCount)")
            }

            // The tile path (many rows) multiplies dequantized rows with the same activations.
            let big = WeightMatrix.gemmThreshold + 1
            let xs = (0..<big * columns).map { _ in Float.random(in: -2...2, using: &rng) }
            var yt = [Float](repeating: 0, count: big * rows)
            xs.withUnsafeBufferPointer { matrix.apply($0.baseAddress!, rows: big, into: &yt, int8: int8) }
            let worstTile = worstError(yt, xs, rowsOfX: big)
            #expect(worstTile < 1e-5, "\(type) tile path: worst relative error \(worstTile)")

            // After an 8-bit product has repacked a 32-element-block matrix (X8), Float32
            // activations run on the repacked copy: one row, a few, and the tile path.
            if int8 {
                for count in [1, 11, big] {
                    let xc = Array(xs.prefix(count * columns))
                    var yc = [Float](repeating: 0, count: count * rows)
                    xc.withUnsafeBufferPointer { matrix.apply($0.baseAddress!, rows: count, into: &yc, int8: false) }
                    var worstF32 = 0.0
                    for r in 0..<count {
                        for i in 0..<rows {
                            var expected = 0.0, scale = 0.0
                            for j in 0..<columns {
                                expected += Double(decoded[i * columns + j]) * Double(xc[r * columns + j])
                                scale += abs(Double(decoded[i * columns + j]) * Double(xc[r * columns + j]))
                            }
                            worstF32 = max(worstF32, abs(Double(yc[r * rows + i]) - expected) / max(scale, 1e-6))
                        }
                    }
                    #expect(worstF32 < 1e-5, "\(type), Float32 activations after a repack, \(count) rows: worst relative error \(worstF32)")
                }
            }

            // Rows for an embedding lookup, and a sub-range of outputs written with a stride.
            var row = [Float](repeating: 0, count: columns)
            matrix.row(5, into: &row)
            #expect(row == Array(decoded[5 * columns..<6 * columns]))
            var part = [Float](repeating: -1, count: m * 8)
            x.withUnsafeBufferPointer { matrix.apply($0.baseAddress!, rows: m, into: &part, ldy: 8, outputs: 10..<14, int8: int8) }
            for r in 0..<m {
                #expect(Array(part[r * 8..<r * 8 + 4]) == Array(y[r * rows + 10..<r * rows + 14]))
                #expect(part[r * 8 + 4] == -1)
            }
            #expect(matrix.dense.array == decoded)
        }
    }

    /// Q|K|V stacked from tensors of different types: each segment lands in its own columns.
    @Test func mixedSegmentsStack() {
        let columns = 256
        var a = Self.randomRows(.q4_K, rows: 4, columns: columns, seed: 1)
        var b = Self.randomRows(.q6_K, rows: 3, columns: columns, seed: 2)
        a.withUnsafeMutableBytes { ra in
            b.withUnsafeMutableBytes { rb in
                let one = WeightMatrix(columns: columns, segments: [.init(type: .q4_K, base: UnsafeRawPointer(ra.baseAddress!), firstRow: 0, rows: 4, rowBytes: 144)], owner: NSObject())
                let two = WeightMatrix(columns: columns, segments: [.init(type: .q6_K, base: UnsafeRawPointer(rb.baseAddress!), firstRow: 0, rows: 3, rowBytes: 210)], owner: NSObject())
                let both = WeightMatrix(columns: columns, segments: [
                    .init(type: .q4_K, base: UnsafeRawPointer(ra.baseAddress!), firstRow: 0, rows: 4, rowBytes: 144),
                    .init(type: .q6_K, base: UnsafeRawPointer(rb.baseAddress!), firstRow: 4, rows: 3, rowBytes: 210),
                ], owner: NSObject())
                let x = (0..<columns).map { Float(sin(Double($0))) }
                var y1 = [Float](repeating: 0, count: 4), y2 = [Float](repeating: 0, count: 3), y = [Float](repeating: 0, count: 7)
                x.withUnsafeBufferPointer {
                    one.apply($0.baseAddress!, rows: 1, into: &y1)
                    two.apply($0.baseAddress!, rows: 1, into: &y2)
                    both.apply($0.baseAddress!, rows: 1, into: &y)
                }
                #expect(y == y1 + y2)
                #expect(both.types == [.q4_K, .q6_K])
            }
        }
    }
}


/// On the default models' own matrices, one activation row, the same row among a few and among
/// many give the same numbers, so results do not depend on batch composition: bit for bit with
/// 8-bit activations (one integer kernel for every batch size), within Float32 summation order
/// with Float32 activations (register-unpacked kernels below the threshold, tiles above).
@Suite struct QuantizedPathAgreementTests {
    @Test(.enabled(if: TestModels.available(TestModels.gemmaName), "gemma-3-270m is not in the model cache (`precept model pull gemma-3-270m`; scripts/test.sh runs it)"))
    func pathsAgreeOnGemmaMatrices() throws {
        let model = try LoadedModels.model(TestModels.gemmaName, int8: true)
        let w = model.transformer.weights
        var matrices: [(String, WeightMatrix)] = [("head", w.head)]
        for (l, layer) in w.layers.enumerated() {
            matrices += [("blk.\(l).qkv", layer.qkv), ("blk.\(l).output", layer.output), ("blk.\(l).gateUp", layer.gateUp), ("blk.\(l).down", layer.down)]
        }
        var rng = SeededGenerator(seed: 7)
        for (name, matrix) in matrices {
            let x = (0..<matrix.columns).map { _ in Float.random(in: -3...3, using: &rng) }
            let rows = matrix.rows
            var one = [Float](repeating: 0, count: rows)
            // 2–11 rows: full and partial groups of the multi-row kernels; threshold + 2: the tile path
            // of Float32 activations.
            for m in [2, 3, 5, 11, WeightMatrix.gemmThreshold + 2] {
                let xs = (0..<m).flatMap { _ in x }
                var many = [Float](repeating: 0, count: m * rows)
                for int8 in [false, true] {
                    x.withUnsafeBufferPointer { matrix.apply($0.baseAddress!, rows: 1, into: &one, outputs: 0..<rows, int8: int8) }
                    xs.withUnsafeBufferPointer { matrix.apply($0.baseAddress!, rows: m, into: &many, outputs: 0..<rows, int8: int8) }
                    var worst: Float = 0, scale: Float = 0
                    for i in 0..<rows { worst = max(worst, abs(one[i] - many[(m - 1) * rows + i])); scale = max(scale, abs(one[i])) }
                    if int8 {
                        #expect(worst == 0, "\(name) \(matrix.types) int8: one row vs \(m) rows differ by \(worst)")
                    } else {
                        #expect(worst <= 1e-5 * max(scale, 1), "\(name) \(matrix.types): one row vs \(m) rows differ by \(worst) (largest output \(scale))")
                    }
                }
            }
        }
    }
}

extension QuantizedPathAgreementTests {
    @Test(.enabled(if: TestModels.available(TestModels.gemmaName), "gemma-3-270m is not in the model cache"))
    func pathsAgreeOnRealActivations() throws {
        let model = try LoadedModels.model(TestModels.gemmaName, int8: true)
        let ids = model.tokenizer.encode("Human: Is it safe to mix bleach and ammonia?\nAssistant: No. It releases toxic gas.")
        // 8-bit activations: each hidden row's logits are bit-identical alone and among all rows.
        let hidden = model.transformer.forward([SequenceInput(cache: model.transformer.makeCache(), tokens: ids)])
        let matrix = model.transformer.weights.head
        let m = ids.count, rows = 8192
        var many = [Float](repeating: 0, count: m * rows)
        matrix.apply(hidden.data, rows: m, into: &many, outputs: 0..<rows, int8: true)
        var worst: Float = 0
        for r in 0..<m {
            var one = [Float](repeating: 0, count: rows)
            matrix.apply(hidden.data + r * matrix.columns, rows: 1, into: &one, outputs: 0..<rows, int8: true)
            for i in 0..<rows { worst = max(worst, abs(one[i] - many[r * rows + i])) }
        }
        #expect(worst == 0, "head on real hidden states: \(worst)")
    }
}

