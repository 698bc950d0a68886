import CQuant
import Foundation
import TensorKit

/// What scoring reports for one position: the log-probability of the given next token, the
/// log-sum-exp over the vocabulary, and the k most likely tokens with their logits.
public struct PositionScore: Sendable, Equatable {
    public var target: Int32?
    public var targetLogit: Float?
    public var logSumExp: Float
    public var top: [(id: Int32, logit: Float)]

    /// log p(target) = logit − logsumexp.
    public var logProbability: Float? { targetLogit.map { $0 - logSumExp } }

    public static func == (a: PositionScore, b: PositionScore) -> Bool {
        a.target == b.target && a.targetLogit == b.targetLogit && a.logSumExp == b.logSumExp
            && a.top.map(\.id) == b.top.map(\.id) && a.top.map(\.logit) == b.top.map(\.logit)
    }
}

/// The LM head: hidden states (after the final norm) times the output matrix (vocab, hidden),
/// computed only for the rows asked for (DESIGN.md § Performance: only the logits you need).
public struct LogitHead: Sendable {
    public let head: WeightMatrix
    /// Vocabulary rows per product when scoring, so (rows × vocab) is never materialised.
    public var chunk = 16_384
    /// Activations rounded to 8 bits for quantized heads (`WeightMatrix.apply`).
    public var int8Activations: Bool

    public init(head: WeightMatrix, int8Activations: Bool = WeightMatrix.int8Activations) {
        self.head = head
        self.int8Activations = int8Activations
    }

    public var vocabSize: Int { head.rows }
    public var hidden: Int { head.columns }

    /// Full logits (rows, vocab) for a few rows (sampling).
    public func logits(_ hidden: UnsafePointer<Float>, rows: Int, int8: Bool? = nil) -> Tensor {
        let out = Tensor(shape: [rows, vocabSize], zeroed: false)  // every element is written
        head.apply(hidden, rows: rows, into: out.data, int8: int8 ?? int8Activations)
        return out
    }

    /// Logits of specific tokens only (rows, ids.count): a dot product per id (the judge's A/B).
    public func logits(_ hidden: UnsafePointer<Float>, rows: Int, ids: [Int32], int8: Bool? = nil) -> [[Float]] {
        var out = [[Float]](repeating: [Float](repeating: 0, count: ids.count), count: rows)
        var column = [Float](repeating: 0, count: rows)
        for (k, id) in ids.enumerated() {
            column.withUnsafeMutableBufferPointer { head.apply(hidden, rows: rows, into: $0.baseAddress!, ldy: 1, outputs: Int(id)..<Int(id) + 1, int8: int8 ?? int8Activations) }
            for r in 0..<rows { out[r][k] = column[r] }
        }
        return out
    }

    /// Log-sum-exp, target logit and top-k per row, streaming over vocabulary chunks; the rows'
    /// reductions (vectorised exponential, CQuant's `pq_sum_exp`) run on all cores.
    /// `int8` overrides `int8Activations` for this call.
    public func score(_ hidden: UnsafePointer<Float>, rows: Int, targets: [Int32?], topK: Int, int8: Bool? = nil) -> [PositionScore] {
        precondition(targets.count == rows)
        // Per row: the running maximum, Σ exp(logit − maximum) so far, the target's logit, the top-k.
        var state = [(max: Float, sum: Double, target: Float?, top: [(id: Int32, logit: Float)])](
            repeating: (-.infinity, 0, nil, []), count: rows)
        let buffer = Tensor(shape: [rows, min(chunk, vocabSize)])
        var start = 0
        while start < vocabSize {
            let n = min(chunk, vocabSize - start)
            head.apply(hidden, rows: rows, into: buffer.data, outputs: start..<start + n, int8: int8 ?? int8Activations)
            state.withUnsafeMutableBufferPointer { state in
                Parallel.chunks(rows) { range in
                    for r in range {
                        let logits = buffer.data + r * n
                        pq_logsumexp_update(logits, Int64(n), &state[r].max, &state[r].sum)
                        if let t = targets[r], Int(t) >= start, Int(t) < start + n { state[r].target = logits[Int(t) - start] }
                        if topK > 0 { insertTop(&state[r].top, logits, count: n, offset: start, k: topK) }
                    }
                }
            }
            start += n
        }
        return withExtendedLifetime(buffer) {
            zip(targets, state).map { t, s in PositionScore(target: t, targetLogit: s.target, logSumExp: s.max + Float(log(s.sum)), top: s.top) }
        }
    }

    /// Keeps the k largest (descending; ties: lower id first).
    private func insertTop(_ top: inout [(id: Int32, logit: Float)], _ logits: UnsafePointer<Float>, count: Int, offset: Int, k: Int) {
        var threshold = top.count == k ? top[k - 1].logit : -Float.infinity
        for j in 0..<count where logits[j] > threshold {
            let entry = (id: Int32(offset + j), logit: logits[j])
            let index = top.firstIndex { $0.logit < entry.logit } ?? top.count
            top.insert(entry, at: index)
            if top.count > k { top.removeLast() }
            threshold = top.count == k ? top[k - 1].logit : -Float.infinity
        }
    }
}
