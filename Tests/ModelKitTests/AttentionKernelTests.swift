import CQuant
import Foundation
import Testing
@testable import ModelKit

/// CQuant's row-by-row attention (`pq_attention`, the inference path) against a Float64 softmax
/// attention, and its chunk invariance: rows computed in one call, in chunks and one at a time
/// are bit-identical; and its grouped form (`pq_attention_heads`, several query heads and a range of
/// rows per call) gives each head and row those same bits.
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
        for headDim in [64, 68, 72, 256] {
            var rng = SeededGenerator(seed: UInt64(nNew * 1000 + nCtx + headDim))
            let offset = 8, qStride = headDim + 16, kvStride = headDim + 24
            let q = (0..<nNew * qStride).map { _ in Float.random(in: -1...1, using: &rng) }
            let k = (0..<nCtx * kvStride).map { _ in Float.random(in: -1...1, using: &rng) }
            let v = (0..<nCtx * kvStride).map { _ in Float.random(in: -1...1, using: &rng) }
            let scale = 1 / Float(headDim).squareRoot() * 4
            var out = [Float](repeating: 0, count: nNew * headDim)
            var scratch = [Float](repeating: 0, count: 4 * nCtx)
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

    /// Two, three, five and seven query heads sharing one KV head (every split into the kernel's
    /// groups of up to four heads × up to eight keys), head sizes with and without a tail past the
    /// last 8 columns, rows in ranges that do and do not align with
    /// its 4-row blocks: every head and row equals `pq_attention` of that head alone.
    @Test(arguments: [(19, 19, 0), (13, 40, 0), (9, 60, 16)], [2, 3, 5, 7])
    func groupedHeadsAndRowRangesEqualOneHeadAtATime(shape: (nNew: Int, nCtx: Int, window: Int), heads: Int) {
        let (nNew, nCtx, window) = shape
        for headDim in [68, 72] {  // with and without columns past the last 8-lane chunk
        let qStride = heads * headDim + 8, kvStride = headDim + 24
        var rng = SeededGenerator(seed: UInt64(nNew * 31 + nCtx))
        let q = (0..<nNew * qStride).map { _ in Float.random(in: -1...1, using: &rng) }
        let k = (0..<nCtx * kvStride).map { _ in Float.random(in: -1...1, using: &rng) }
        let v = (0..<nCtx * kvStride).map { _ in Float.random(in: -1...1, using: &rng) }
        let scale: Float = 0.3
        var grouped = [Float](repeating: .nan, count: nNew * qStride)
        var alone = [Float](repeating: .nan, count: nNew * qStride)
        var scratch = [Float](repeating: 0, count: 4 * heads * nCtx)
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
            // Rows in three uneven ranges, all heads per call.
            for rows in [0..<3, 3..<min(10, nNew), min(10, nNew)..<nNew] where !rows.isEmpty {
                pq_attention_heads(&grouped, Int64(qStride), qp.baseAddress!, Int64(qStride), kp.baseAddress!, vp.baseAddress!,
                                   Int64(kvStride), Int64(rows.lowerBound), Int64(rows.upperBound), Int64(nNew), Int64(nCtx),
                                   Int64(heads), Int64(headDim), scale, Int64(window), &scratch)
            }
            for h in 0..<heads {
                alone.withUnsafeMutableBufferPointer { o in
                    pq_attention(o.baseAddress! + h * headDim, Int64(qStride), qp.baseAddress! + h * headDim, Int64(qStride),
                                 kp.baseAddress!, vp.baseAddress!, Int64(kvStride), Int64(nNew), Int64(nCtx), Int64(headDim),
                                 scale, Int64(window), &scratch)
                }
            }
        } } }
        for i in 0..<nNew {
            for h in 0..<heads {
                let range = (i * qStride + h * headDim)..<(i * qStride + (h + 1) * headDim)
                #expect(Array(grouped[range]) == Array(alone[range]), "row \(i) head \(h) of \(heads), headDim \(headDim)")
            }
        }
        }
    }

    /// The forward's attention items cover every (sequence, row, query head) exactly once, a KV
    /// group's heads together (split only when there are fewer groups than cores), and are dealt
    /// to two cores at costs within one item's of each other.
    @Test func attentionItemsCoverEveryRowAndHeadOnce() {
        let inputs = [100, 3, 16, 0, 37].map { SequenceInput(cache: KVCache(layers: 1, kvDim: 8), tokens: [Int32](repeating: 1, count: $0)) }
        let heads = 6, group = 3
        for window in [0, 20] {
            let lists = Transformer.attentionItems(inputs, heads: heads, group: group, window: window, parts: 2)
            #expect(lists.count == 2)
            var seen: [String: Int] = [:]
            for item in lists.joined() {
                #expect(item.heads.count == group, "two KV groups per sequence: a whole group per item")
                #expect(item.heads.lowerBound / group == (item.heads.upperBound - 1) / group, "heads of one KV group")
                for r in item.rows { for h in item.heads { seen["\(item.sequence) \(r) \(h)", default: 0] += 1 } }
            }
            #expect(seen.count == (100 + 3 + 16 + 37) * heads && seen.values.allSatisfy { $0 == 1 })
            // Cost of an item: Σ over its rows and heads of the keys the row sees (no cached prefix here).
            let cost = { (item: Transformer.AttentionItem) in
                item.rows.reduce(0) { $0 + (window > 0 ? min(window, $1 + 1) : $1 + 1) } * item.heads.count
            }
            let totals = lists.map { $0.reduce(0) { $0 + cost($1) } }
            let largest = lists.joined().map(cost).max()!
            #expect(abs(totals[0] - totals[1]) <= largest, "window \(window): parts cost \(totals)")
        }
        // One KV group and a single 16-row block plus 4 rows (a suffix after a cached prefix): the
        // heads are split so that both cores get half of every block.
        let suffix = SequenceInput(cache: KVCache(layers: 1, kvDim: 8), tokens: [Int32](repeating: 1, count: 20))
        let few = Transformer.attentionItems([suffix], heads: 4, group: 4, parts: 2)
        #expect(few.map { $0.reduce(0) { $0 + $1.rows.count * $1.heads.count } } == [40, 40])
        // One sequence decoding with one KV group: the group's heads split between the two cores.
        let decode = Transformer.attentionItems([inputs[1]], heads: 4, group: 4, parts: 2)
        #expect(decode.map { $0.map(\.heads) } == [[0..<2], [2..<4]] || decode.map { $0.map(\.heads) } == [[2..<4], [0..<2]])
    }
}
