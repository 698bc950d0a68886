import Foundation
import Synchronization
import Testing
@testable import ModelKit

/// The worker pool behind `Parallel.parts` (CQuant/pool.c): every part runs exactly once per job,
/// over many jobs in a row, with concurrent and nested callers falling back to libdispatch.
@Suite struct ParallelTests {
    /// 20 000 back-to-back jobs (what decoding does: a job every few µs, workers polling between
    /// them), then jobs after idle gaps long enough for the workers to sleep: each part once.
    /// Counts go through a lock, so a part run twice at once cannot hide as one increment.
    @Test func everyPartRunsOncePerJob() throws {
        let parts = 7
        let counts = Mutex([Int](repeating: 0, count: parts))
        let ones = [Int](repeating: 1, count: parts)
        var wrong: [String] = []
        let deadline = Date().addingTimeInterval(300)
        for round in 0..<20_000 {
            // Tests run concurrently: another suite's job may hold the pool; wait for it.
            while !Parallel.onPool(parts, { p in counts.withLock { $0[p] += 1 } }) {
                try #require(Date() < deadline, "the pool was busy for 300 s (job \(round))")
                sched_yield()
            }
            let seen = counts.withLock { c in defer { c = [Int](repeating: 0, count: parts) }; return c }
            if seen != ones { wrong.append("job \(round): \(seen)") }
            if round % 5_000 == 4_999 { usleep(5_000) }  // past the 200 µs poll: workers sleep
        }
        #expect(wrong.isEmpty, "\(wrong.prefix(5))")
    }

    /// Two parts that each sleep 50 ms run on two threads (the caller and a woken worker), not
    /// one after the other on the caller. Other suites' model runs hold the pool most of the time
    /// while the tests run concurrently: the job is retried until the pool takes it, up to five
    /// times, with workers both polling and asleep.
    @Test func aWorkerTakesAPart() throws {
        guard Parallel.cores > 1 else { return }
        var threads = Set<UInt>(), taken = 0
        let deadline = Date().addingTimeInterval(120)
        while taken < 5 && threads.count < 2 && Date() < deadline {
            let seen = Mutex(Set<UInt>())
            if Parallel.onPool(2, { _ in usleep(50_000); seen.withLock { _ = $0.insert(UInt(bitPattern: Int(bitPattern: pthread_self()))) } }) {
                threads = seen.withLock { $0 }
                taken += 1
                usleep(taken % 2 == 1 ? 0 : 5_000)  // alternately with the workers polling and asleep
            } else {
                sched_yield()
            }
        }
        try #require(taken > 0, "the pool was busy for 120 s")
        #expect(threads.count == 2)
    }

    /// Ranges cover 0..<count once, with the part indices `partCount` promises.
    @Test func rangesCoverTheCountOnce() {
        for count in [1, 2, 3, 17, 1_000, 65_537] {
            let seen = Mutex([Int](repeating: 0, count: count))
            let indices = Mutex(Set<Int>())
            Parallel.parts(count) { part, range in
                indices.withLock { _ = $0.insert(part) }
                seen.withLock { for i in range { $0[i] += 1 } }
            }
            #expect(seen.withLock { $0 } == [Int](repeating: 1, count: count), "count \(count)")
            #expect(indices.withLock { $0 } == Set(0..<Parallel.partCount(count)), "count \(count)")
            // Pieces claimed as the cores finish (decoding's split), with and without a minimum.
            for minimum in [1, 7] {
                let pieces = Mutex([Int](repeating: 0, count: count))
                Parallel.chunks(count, minimum: minimum, piecesPerCore: 4) { range in
                    pieces.withLock { for i in range { $0[i] += 1 } }
                }
                #expect(pieces.withLock { $0 } == [Int](repeating: 1, count: count), "count \(count), minimum \(minimum)")
            }
        }
    }

    /// Four threads splitting work at once, each part also splitting its own: the pool takes one
    /// job at a time and the rest run on libdispatch; every sum comes out right.
    @Test func concurrentAndNestedCallersGetEveryPart() {
        let results = Mutex([Int](repeating: 0, count: 4))
        DispatchQueue.concurrentPerform(iterations: 4) { caller in
            for _ in 0..<200 {
                let total = Mutex(0)
                Parallel.chunks(1_000) { outer in
                    Parallel.chunks(outer.count) { inner in
                        let s = inner.reduce(0) { $0 + outer.lowerBound + $1 + 1 }
                        total.withLock { $0 += s }
                    }
                }
                results.withLock { $0[caller] += total.withLock { $0 } }
            }
        }
        #expect(results.withLock { $0 } == [Int](repeating: 200 * 500_500, count: 4))
    }
}
