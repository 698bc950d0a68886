import Foundation
import Testing
import PipelineTestSupport
@testable import PipelineKit
import TestSupport

/// The run store under concurrent opening: schema creation is idempotent and readers never write.
@Suite struct RunStoreTests {
    @Test func concurrentOpeningOfANewRunDirectory() throws {
        let dir = scratchURL("precept-store-race-\(UUID().uuidString)")
        let errors = NSLock()
        var failures: [String] = []
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            do {
                let store = try RunStore(directory: dir)
                try store.setMeta(["k": "v"])
            } catch {
                errors.lock(); failures.append("\(error)"); errors.unlock()
            }
        }
        #expect(failures.isEmpty, "\(failures)")
        #expect(try RunStore(directory: dir, create: false).meta("k") == "v")
    }

    @Test func readersAreReadOnly() throws {
        let dir = scratchURL("precept-store-ro-\(UUID().uuidString)")
        _ = try RunStore(directory: dir)
        let reader = try RunStore(directory: dir, create: false)
        #expect(throws: (any Error).self) { try reader.setMeta(["k": "v"]) }
        #expect(throws: RunError.notARunDirectory(dir.appendingPathComponent("missing").path)) {
            _ = try RunStore(directory: dir.appendingPathComponent("missing"), create: false)
        }
    }
}
