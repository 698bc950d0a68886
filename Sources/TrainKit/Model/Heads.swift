import Foundation
import TensorKit

/// Log-probabilities of target tokens under the (frozen) LM head, computed in row chunks so the
/// (rows × vocab) logits never exist at once — for gemma-3-270m one row of logits is 1 MiB.
///
/// Forward: z = h·Wᵀ (R, V), log p(t) = z_t − logsumexp(z).
/// Backward, given g = dL/d log p(t) per row: dz = g · (onehot(t) − softmax(z)), dh = dz·W.
/// The head is frozen (tied to the embedding on Gemma), so it has no weight gradient here.
public struct TokenLogProbHead {
    public let head: Tensor          // (vocab, hidden)
    public var chunkRows = 32

    public init(head: Tensor) { self.head = head }

    var vocab: Int { head.rows }
    var width: Int { head.columns }

    /// log p(targets[i]) at `rows[i]` of `hidden` (T, hidden).
    public func logProbs(_ hidden: Tensor, rows: [Int], targets: [Int32]) -> [Float] {
        forward(hidden, rows: rows, targets: targets).logProbs
    }

    /// log p(targets[i]) and logsumexp(z) at each selected row (the latter saves the backward a pass).
    public func forward(_ hidden: Tensor, rows: [Int], targets: [Int32]) -> (logProbs: [Float], logSumExp: [Float]) {
        precondition(rows.count == targets.count)
        var out = [Float](repeating: 0, count: rows.count), lses = out
        forEachChunk(hidden, rows: rows) { start, count, logits in
            for i in 0..<count {
                let z = logits + i * vocab
                lses[start + i] = logSumExp(z)
                out[start + i] = z[Int(targets[start + i])] - lses[start + i]
            }
        }
        return (out, lses)
    }

    /// Adds dL/d(hidden) into `dHidden` (T, hidden) for the given per-row weights g = dL/d log p;
    /// `logSumExp` from `forward` skips recomputing it.
    public func backward(_ hidden: Tensor, rows: [Int], targets: [Int32], weights: [Float], logSumExp known: [Float]? = nil,
                         into dHidden: Tensor) {
        let dRows = Tensor(shape: [chunkRows, width], zeroed: false)
        forEachChunk(hidden, rows: rows) { start, count, logits in
            for i in 0..<count {
                let z = logits + i * vocab, g = weights[start + i]
                let lse = known?[start + i] ?? logSumExp(z)
                for j in 0..<vocab { z[j] = -g * expf(z[j] - lse) }
                z[Int(targets[start + i])] += g
            }
            GEMM.matmul(logits, head.data, dRows.data, m: count, n: width, k: vocab)   // (R, hidden)
            for i in 0..<count {
                let dst = dHidden.row(rows[start + i]), src = dRows.row(i)
                for j in 0..<width { dst[j] += src[j] }
            }
        }
    }

    /// Calls `body(firstIndex, count, logits (count, vocab))` for each chunk of the selected rows.
    private func forEachChunk(_ hidden: Tensor, rows: [Int], _ body: (Int, Int, UnsafeMutablePointer<Float>) -> Void) {
        let gathered = Tensor(shape: [chunkRows, width], zeroed: false)
        let logits = Tensor(shape: [chunkRows, vocab], zeroed: false)
        var start = 0
        while start < rows.count {
            let count = min(chunkRows, rows.count - start)
            for i in 0..<count { gathered.row(i).update(from: hidden.row(rows[start + i]), count: width) }
            GEMM.matmulTransposedB(gathered.data, head.data, logits.data, m: count, n: vocab, k: width)
            body(start, count, logits.data)
            start += count
        }
        withExtendedLifetime((gathered, logits)) {}
    }

    private func logSumExp(_ z: UnsafePointer<Float>) -> Float {
        var m = -Float.infinity
        for j in 0..<vocab where z[j] > m { m = z[j] }
        var sum: Double = 0
        for j in 0..<vocab { sum += Double(expf(z[j] - m)) }
        return m + Float(log(sum))
    }
}

/// A scalar reward head on the backbone (Hugging Face's `score` layer of a sequence-classification
/// model: Linear(hidden, 1, bias = False)), read at each sequence's last token.
public final class RewardHead {
    public let weight: Tensor        // (1, hidden)
    public let gradient: Tensor      // (1, hidden)

    /// Initialised from N(0, 0.02²) as Hugging Face initialises it, seeded.
    public init(hidden: Int, seed: UInt64) {
        weight = Tensor(shape: [1, hidden])
        gradient = Tensor(shape: [1, hidden])
        var state = seed
        func uniform() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (Double(state >> 11) + 0.5) / Double(1 << 53)
        }
        for i in 0..<hidden { weight[i] = Float(0.02 * (-2 * log(uniform())).squareRoot() * cos(2 * .pi * uniform())) }
    }

    /// r = w · h[row].
    public func score(_ hidden: Tensor, row: Int) -> Float {
        var s: Float = 0
        let h = hidden.row(row)
        for j in 0..<weight.count { s += weight.data[j] * h[j] }
        return s
    }

    /// Given dL/dr: grad w += dr·h[row]; dHidden[row] += dr·w.
    public func backward(_ hidden: Tensor, row: Int, dScore: Float, into dHidden: Tensor) {
        let h = hidden.row(row), d = dHidden.row(row)
        for j in 0..<weight.count {
            gradient.data[j] += dScore * h[j]
            d[j] += dScore * weight.data[j]
        }
    }
}
