import CQuant
import Foundation

/// Splits work across the machine's cores: the calling thread and a persistent pool of workers
/// that poll for the next job for a short while before sleeping (`pq_pool_run`), so a forward's
/// many short products each start on every core at once. A second caller while the pool is busy
/// (another thread, or a part that splits its own work) runs on `DispatchQueue.concurrentPerform`.
public enum Parallel {
    public static let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Calls `body` on up to `cores` contiguous ranges covering 0..<count, each at least
    /// `minimum` long, concurrently; one range runs on the calling thread alone. With
    /// `piecesPerCore` > 1 the count is cut into up to that many ranges per core, which the
    /// threads claim as they finish, so a core that is held up (a VM's stolen time) does less.
    public static func chunks(_ count: Int, minimum: Int = 1, piecesPerCore: Int = 1, _ body: (Range<Int>) -> Void) {
        let pieces = max(1, min(cores * max(piecesPerCore, 1), count / max(minimum, 1)))
        if piecesPerCore > 1, pieces > cores {
            split(count, into: pieces) { _, range in body(range) }
        } else {
            parts(count, minimum: minimum) { _, range in body(range) }
        }
    }

    /// How many ranges `parts` splits `count` items into.
    public static func partCount(_ count: Int, minimum: Int = 1) -> Int {
        max(1, min(cores, count / max(minimum, 1)))
    }

    /// As `chunks`, also passing each range's index (0 ..< `partCount`), e.g. to pick its own
    /// scratch buffer.
    public static func parts(_ count: Int, minimum: Int = 1, _ body: (Int, Range<Int>) -> Void) {
        let parts = partCount(count, minimum: minimum)
        if parts == 1 { if count > 0 { body(0, 0..<count) }; return }
        split(count, into: parts, body)
    }

    /// `body(p, range p)` for the `pieces` contiguous ranges of 0..<count, concurrently.
    private static func split(_ count: Int, into pieces: Int, _ body: (Int, Range<Int>) -> Void) {
        let piece = { (p: Int) in
            let lower = count * p / pieces, upper = count * (p + 1) / pieces
            if upper > lower { body(p, lower..<upper) }
        }
        if !onPool(pieces, piece) { DispatchQueue.concurrentPerform(iterations: pieces, execute: piece) }
    }

    /// A job for `pq_pool_run`: the closure in a struct, so C hands back a pointer to it as stored
    /// (a bare closure behind a generic pointer is re-thunked at every access).
    private struct Job {
        let part: (Int) -> Void
    }

    /// One worker per core after the caller's (`cores` counts what the process may use).
    private static let sized: Void = pq_pool_set_workers(Int32(cores - 1))

    /// Runs `part(0 ..< parts)` on the pool; false, running nothing, when another job holds it.
    static func onPool(_ parts: Int, _ part: (Int) -> Void) -> Bool {
        _ = sized
        return withoutActuallyEscaping(part) { part in
            withUnsafePointer(to: Job(part: part)) { job in
                pq_pool_run(Int64(parts), { context, p in
                    context!.assumingMemoryBound(to: Job.self).pointee.part(Int(p))
                }, UnsafeMutableRawPointer(mutating: job)) == 1
            }
        }
    }
}
