import CQuant
import Foundation
import Testing
import ModelKit

/// CQuant's row-by-row attention (`pq_attention`, the inference path) against a Float64 softmax
/// attention, and its chunk invariance: rows computed in one call, in chunks and one at a time
/// are bit-identical.
@Suite struct AttentionKernelTests {
    /// q (nNew, qStride), k and v (nCtx, kvStride) with the head at column `offset`.
    static func reference(q: [Float], k: [Float], v: [Float], qStride: Int, kvStride: Int, offset: Int,
                          nNew: Int, nCtx: Int, headDim: Int, scale: Float, window: Int) -> [Double] {
        var out = [Double](repeating: 0, count: nNew * headDim)
        for i in 0..<nNew {
            let pos = nCtx - nNew + i
            let keys = (0...pos).filter { window <= 0 || pos - $0 < window }
            let scores = keys.map { j in
                Double(scale) * (0..<headDim).reduce(0.0) { $0 + Double(q[i * qStride + offset + $1]) * Double(k[j * kvStride + offset + $1]) }
            }
            let top = scores.max()!
            let weights = scores.map { Foundation.exp($0 - top) }
            let total = weights.reduce(0, +)
            for (w, j) in zip(weights, keys) {
                for c in 0..<headDim { out[i * headDim + c] += w / total * Double(v[j * kvStride + offset + c]) }
            }
        }
        return out
    }

    @Test(arguments: [(1, 9, 0), (7, 7, 0), (5, 40, 0), (12, 30, 6), (1, 50, 16)])
    func matchesFloat64AndIsChunkInvariant(nNew: Int, nCtx: Int, window: Int) {
        // Head dimensions with and without a 64-column tail; the head sits at a column offset.
        for headDim in [64, 72, 256] {
            var rng = SeededGenerator(seed: UInt64(nNew * 1000 + nCtx + headDim))
            let offset = 8, qStride = headDim + 16, kvStride = headDim + 24
            let q = (0..<nNew * qStride).map { _ in Float.random(in: -1...1, using: &rng) }
            let k = (0..<nCtx * kvStride).map { _ in Float.random(in: -1...1, using: &rng) }
            let v = (0..<nCtx * kvStride).map { _ in Float.random(in: -1...1, using: &rng) }
            let scale = 1 / Float(headDim).squareRoot() * 4
            var out = [Float](repeating: 0, count: nNew * headDim)
            var scratch = [Float](repeating: 0, count: nCtx)
            q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
                pq_attention(&out, Int64(headDim), qp.baseAddress! + offset, Int64(qStride), kp.baseAddress! + offset, vp.baseAddress! + offset,
                             Int64(kvStride), Int64(nNew), Int64(nCtx), Int64(headDim), scale, Int64(window), &scratch)
                // Row by row, each as the only new row of a shorter context.
                for i in 0..<nNew {
                    var one = [Float](repeating: 0, count: headDim)
                    pq_attention(&one, Int64(headDim), qp.baseAddress! + offset + i * qStride, Int64(qStride), kp.baseAddress! + offset,
                                 vp.baseAddress! + offset, Int64(kvStride), 1, Int64(nCtx - nNew + i + 1), Int64(headDim), scale, Int64(window), &scratch)
                    #expect(one == Array(out[i * headDim..<(i + 1) * headDim]), "row \(i) alone differs (headDim \(headDim))")
                }
            } } }
            let expected = Self.reference(q: q, k: k, v: v, qStride: qStride, kvStride: kvStride, offset: offset,
                                          nNew: nNew, nCtx: nCtx, headDim: headDim, scale: scale, window: window)
            let worst = zip(out, expected).map { abs(Double($0) - $1) }.max() ?? 0
            #expect(worst < 1e-5, "nNew \(nNew) nCtx \(nCtx) window \(window) headDim \(headDim): worst \(worst)")
        }
    }
}
