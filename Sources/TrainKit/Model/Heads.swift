import CQuant
import Foundation
import ModelKit
import TensorKit

/// Log-probabilities of target tokens under the (frozen) LM head, streamed over vocabulary
/// chunks so the (rows × vocab) logits never exist at once — for gemma-3-270m one row of logits
/// is 1 MiB. Every selected row shares each chunk's product, so each pass reads the head once.
///
/// Forward: z = h·Wᵀ (R, V), log p(t) = z_t − logsumexp(z) (a running log-sum-exp per row).
/// Backward, given g = dL/d log p(t) per row: dz = g · (onehot(t) − softmax(z)), dh = dz·W.
/// The head is frozen (tied to the embedding on Gemma), so it has no weight gradient here. A
/// quantized head stays quantized: each vocabulary chunk is dequantized into a tile that serves
/// the chunk's forward and backward products.
public struct TokenLogProbHead {
    public let head: WeightMatrix    // (vocab, hidden)
    /// Logits held at once (rows × vocabulary chunk), in floats: 4 Mi floats = 16 MiB.
    public var chunkFloats = 1 << 22

    public init(head: WeightMatrix) { self.head = head }

    var vocab: Int { head.rows }
    var width: Int { head.columns }

    /// log p(targets[i]) at `rows[i]` of `hidden` (T, hidden).
    public func logProbs(_ hidden: Tensor, rows: [Int], targets: [Int32]) -> [Float] {
        forward(hidden, rows: rows, targets: targets).logProbs
    }

    /// log p(targets[i]) and logsumexp(z) at each selected row (the latter saves the backward a pass).
    public func forward(_ hidden: Tensor, rows: [Int], targets: [Int32]) -> (logProbs: [Float], logSumExp: [Float]) {
        precondition(rows.count == targets.count)
        guard !rows.isEmpty else { return ([], []) }
        var state = [(max: Float, sum: Double, target: Float)](repeating: (-.infinity, 0, 0), count: rows.count)
        state.withUnsafeMutableBufferPointer { state in
            forEachChunk(gather(hidden, rows: rows)) { start, n, _, logits in
                Parallel.chunks(rows.count) { range in
                    for i in range {
                        let z = logits + i * n
                        pq_logsumexp_update(z, Int64(n), &state[i].max, &state[i].sum)
                        let t = Int(targets[i]) - start
                        if t >= 0 && t < n { state[i].target = z[t] }
                    }
                }
            }
        }
        let lses = state.map { $0.max + Float(log($0.sum)) }
        return (zip(state, lses).map { $0.target - $1 }, lses)
    }

    /// Adds dL/d(hidden) into `dHidden` (T, hidden) for the given per-row weights g = dL/d log p;
    /// `logSumExp` from `forward` skips recomputing it.
    public func backward(_ hidden: Tensor, rows: [Int], targets: [Int32], weights: [Float], logSumExp known: [Float]? = nil,
                         into dHidden: Tensor) {
        guard !rows.isEmpty else { return }
        let lses = known ?? forward(hidden, rows: rows, targets: targets).logSumExp
        let dRows = Tensor(shape: [rows.count, width])     // Σ over chunks of dz·W_chunk
        forEachChunk(gather(hidden, rows: rows)) { start, n, tile, logits in
            Parallel.chunks(rows.count) { range in
                for i in range {
                    let z = logits + i * n, g = weights[i]
                    pq_scaled_exp(z, Int64(n), lses[i], -g)        // dz = −g·softmax(z) …
                    let t = Int(targets[i]) - start
                    if t >= 0 && t < n { z[t] += g }               // … + g·onehot(t)
                }
            }
            // dRows (R, hidden) += dz (R, n) · W[start..<start+n] (n, hidden)
            GEMM.matmul(logits, tile, dRows.data, m: rows.count, n: width, k: n, beta: 1)
        }
        for (i, r) in rows.enumerated() {
            let dst = dHidden.row(r), src = dRows.row(i)
            for j in 0..<width { dst[j] += src[j] }
        }
    }

    /// The selected rows of `hidden`, stacked (R, hidden).
    private func gather(_ hidden: Tensor, rows: [Int]) -> Tensor {
        let gathered = Tensor(shape: [rows.count, width], zeroed: false)
        for (i, r) in rows.enumerated() { gathered.row(i).update(from: hidden.row(r), count: width) }
        return gathered
    }

    /// Calls `body(firstVocabRow, n, W rows (n, hidden), logits (R, n))` for each chunk of n
    /// vocabulary rows.
    private func forEachChunk(_ gathered: Tensor,
                              _ body: (Int, Int, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
        let r = gathered.rows
        let chunk = min(vocab, max(1_024, chunkFloats / r))
        let logits = Tensor(shape: [r, chunk], zeroed: false)
        let tile = head.isQuantized ? Tensor(shape: [chunk, width], zeroed: false) : nil
        var start = 0
        while start < vocab {
            let n = min(chunk, vocab - start)
            let w = head.dequantizedRows(start..<start + n, scratch: tile)
            GEMM.matmulTransposedB(gathered.data, w, logits.data, m: r, n: n, k: width)
            body(start, n, w, logits.data)
            start += n
        }
        withExtendedLifetime((gathered, logits, tile)) {}
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
