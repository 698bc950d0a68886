import Foundation
import Testing
@testable import ModelKit
import TestSupport

/// Fetching, verification and refetching, offline: the "wheels" are zip files built here with
/// python's zipfile, served by an injected downloader in place of pip.
@Suite struct ModelStoreTests {
    /// A fake two-part model: the parts' bytes, their wheels, and a catalog entry for them.
    struct Fixture {
        let home: URL
        let wheels: URL
        let entry: CatalogEntry
        let content: Data
    }

    func makeFixture(corruptSecondPart: Bool = false) throws -> Fixture {
        let root = scratchURL("precept-store-\(UUID().uuidString)")
        let wheels = root.appendingPathComponent("wheels")
        try FileManager.default.createDirectory(at: wheels, withIntermediateDirectories: true)
        let parts = [Data((0..<3000).map { UInt8($0 % 251) }), Data((0..<1234).map { UInt8($0 % 13) })]
        let content = parts[0] + parts[1]
        for (i, part) in parts.enumerated() {
            let payload = root.appendingPathComponent("part\(i)")
            var bytes = part
            if corruptSecondPart && i == 1 { bytes[7] ^= 0xFF }
            try bytes.write(to: payload)
            try ModelStore.run("python3", ["-c", """
                import sys, zipfile
                with zipfile.ZipFile(sys.argv[1], 'w') as z: z.write(sys.argv[2], sys.argv[3])
                """, wheels.appendingPathComponent("tiny_model_part\(i + 1)-1.0-py3-none-any.whl").path, payload.path,
                "tiny_model_part\(i + 1)/data/part\(i).bin"])
        }
        let digest = try ModelStore.sha256(of: {
            let url = root.appendingPathComponent("whole")
            try content.write(to: url)
            return url
        }())
        let entry = CatalogEntry(name: "tiny", role: .policy, instructionTuned: false,
                                 packages: ["tiny-model-part1", "tiny-model-part2"],
                                 wheelFiles: ["tiny_model_part1/data/part0.bin", "tiny_model_part2/data/part1.bin"],
                                 fileName: "tiny.gguf", size: Int64(content.count), sha256: digest)
        return Fixture(home: root.appendingPathComponent("home"), wheels: wheels, entry: entry, content: content)
    }

    func store(_ f: Fixture, downloads: Counter) -> ModelStore {
        let wheels = f.wheels
        return ModelStore(home: f.home) { packages, directory in
            downloads.increment()
            for item in try FileManager.default.contentsOfDirectory(at: wheels, includingPropertiesForKeys: nil) {
                try FileManager.default.copyItem(at: item, to: directory.appendingPathComponent(item.lastPathComponent))
            }
        }
    }

    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        func increment() { lock.lock(); value += 1; lock.unlock() }
        var count: Int { lock.lock(); defer { lock.unlock() }; return value }
    }

    @Test func fetchAssemblesVerifiesAndCaches() throws {
        let f = try makeFixture()
        let downloads = Counter()
        let s = store(f, downloads: downloads)
        #expect(!s.isCached(f.entry))
        let url = try s.resolve("tiny", catalog: [f.entry])
        #expect(try Data(contentsOf: url) == f.content)
        #expect(s.isCached(f.entry))
        _ = try s.resolve("tiny", catalog: [f.entry])
        #expect(downloads.count == 1, "a verified copy is not fetched again")
    }

    @Test func corruptOrPartialCacheIsRefetched() throws {
        let f = try makeFixture()
        let downloads = Counter()
        let s = store(f, downloads: downloads)
        let url = try s.resolve("tiny", catalog: [f.entry])
        // Same size, one byte changed: the marker no longer matches (mtime), the hash fails.
        var bytes = try Data(contentsOf: url)
        bytes[100] ^= 1
        try bytes.write(to: url)
        #expect(!s.isCached(f.entry))
        _ = try s.resolve("tiny", catalog: [f.entry])
        #expect(try Data(contentsOf: url) == f.content)
        // Truncated.
        try f.content.prefix(10).write(to: url)
        _ = try s.resolve("tiny", catalog: [f.entry])
        #expect(try Data(contentsOf: url) == f.content)
        #expect(downloads.count == 3)
    }

    @Test func hashMismatchIsAnErrorAndLeavesNothing() throws {
        let f = try makeFixture(corruptSecondPart: true)
        let s = store(f, downloads: Counter())
        #expect { try s.resolve("tiny", catalog: [f.entry]) } throws: { error in
            guard case .hashMismatch(let name, _, _)? = error as? ModelStoreError else { return false }
            return name == "tiny"
        }
        #expect(!FileManager.default.fileExists(atPath: s.path(for: f.entry).path))
    }

    @Test func unknownNamesAndMissingFiles() throws {
        let s = ModelStore(home: scratchRoot)
        #expect(throws: ModelStoreError.self) { try s.resolve("gemma-4-1t") }
        #expect(throws: ModelStoreError.self) { try s.resolve("/nonexistent/model.gguf") }
    }
}
