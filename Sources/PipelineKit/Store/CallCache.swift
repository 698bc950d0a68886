import Foundation
import GRDB
import ModelKit

/// Memoised model calls, shared across runs: the key is a hash of (model fingerprint, exact
/// prompt, sampling parameters, seed), so a rerun — or another pipeline asking the same thing —
/// gets the stored answer instead of a model call (DESIGN.md § Reliability).
public final class CallCache: @unchecked Sendable {
    public let url: URL
    private let queue: DatabaseQueue

    /// Default location: `$PRECEPT_CACHE_DIR`, else `.precept-cache/` beside the run directory.
    public static func defaultDirectory(forRun run: URL) -> URL {
        if let env = ProcessInfo.processInfo.environment["PRECEPT_CACHE_DIR"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        return run.deletingLastPathComponent().appendingPathComponent(".precept-cache")
    }

    public init(directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        url = directory.appendingPathComponent("calls.sqlite")
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        queue = try DatabaseQueue(path: url.path, configuration: configuration)
        try queue.writeWithoutTransaction { db in
            try db.enableWAL()
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS calls (
                    key TEXT PRIMARY KEY, kind TEXT NOT NULL, value TEXT NOT NULL, created REAL NOT NULL)
                """)
        }
    }

    /// The key of a generation call.
    public static func key(fingerprint: String, call: GenerationCall) -> String {
        let p = call.parameters
        return SHA256.hex(fields: ["generate", fingerprint, call.prompt.canonical,
                                   "\(p.temperature)", "\(p.topK)", "\(p.topP)", "\(p.minP)", "\(p.maxTokens)",
                                   p.stop.joined(separator: "\u{1F}"), "\(p.seed)"])
    }

    /// The key of a scoring call.
    public static func key(fingerprint: String, call: ScoringCall) -> String {
        SHA256.hex(fields: ["score", fingerprint, call.prompt] + call.continuations)
    }

    public func generation(_ key: String) throws -> GenerationOutput? {
        try value(key).flatMap { try? JSONDecoder().decode(GenerationOutput.self, from: Data($0.utf8)) }
    }

    public func scores(_ key: String) throws -> [Double]? {
        try value(key).flatMap { try? JSONDecoder().decode([Double].self, from: Data($0.utf8)) }
    }

    public func store(_ key: String, generation: GenerationOutput) throws {
        try put(key, kind: "generate", value: String(decoding: try JSONEncoder().encode(generation), as: UTF8.self))
    }

    public func store(_ key: String, scores: [Double]) throws {
        try put(key, kind: "score", value: String(decoding: try JSONEncoder().encode(scores), as: UTF8.self))
    }

    private func value(_ key: String) throws -> String? {
        try queue.read { db in try String.fetchOne(db, sql: "SELECT value FROM calls WHERE key = ?", arguments: [key]) }
    }

    private func put(_ key: String, kind: String, value: String) throws {
        try queue.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO calls (key, kind, value, created) VALUES (?, ?, ?, ?)",
                           arguments: [key, kind, value, Date().timeIntervalSince1970])
        }
    }
}

/// Runs calls through a backend with the cache in front, counting executed and cached calls.
public final class CachedBackend: @unchecked Sendable {
    public let name: String
    public let backend: ModelBackend
    public let cache: CallCache
    public private(set) var executed = 0
    public private(set) var hits = 0
    public private(set) var generatedTokens = 0

    public init(name: String, backend: ModelBackend, cache: CallCache) {
        self.name = name
        self.backend = backend
        self.cache = cache
    }

    /// Outputs in call order, and for each whether it came from the cache.
    public func generate(_ calls: [GenerationCall]) throws -> [(GenerationOutput, cached: Bool)] {
        try cached(calls, key: { CallCache.key(fingerprint: backend.fingerprint, call: $0) },
                   lookup: cache.generation, store: { try self.cache.store($0, generation: $1) },
                   run: backend.generate) { generatedTokens += $0.completionTokens }
    }

    public func score(_ calls: [ScoringCall]) throws -> [(scores: [Double], cached: Bool)] {
        try cached(calls, key: { CallCache.key(fingerprint: backend.scoringFingerprint, call: $0) },
                   lookup: cache.scores, store: { try self.cache.store($0, scores: $1) },
                   run: backend.score) { _ in }
            .map { (scores: $0.0, cached: $0.cached) }
    }

    /// Looks every call up, runs the misses as one batch, stores their results.
    private func cached<Call, Output>(_ calls: [Call], key: (Call) -> String, lookup: (String) throws -> Output?,
                                      store: (String, Output) throws -> Void, run: ([Call]) throws -> [Output],
                                      onExecuted: (Output) -> Void) throws -> [(Output, cached: Bool)] {
        let keys = calls.map(key)
        var results = [(Output, cached: Bool)?](repeating: nil, count: calls.count)
        var missing: [Int] = []
        for (i, k) in keys.enumerated() {
            if let hit = try lookup(k) { results[i] = (hit, true) } else { missing.append(i) }
        }
        hits += calls.count - missing.count
        if !missing.isEmpty {
            let outputs: [Output]
            do { outputs = try run(missing.map { calls[$0] }) } catch {
                throw RunError.backend(model: name, message: (error as? LocalizedError)?.errorDescription ?? "\(error)")
            }
            executed += missing.count
            for (i, output) in zip(missing, outputs) {
                try store(keys[i], output)
                results[i] = (output, false)
                onExecuted(output)
            }
        }
        return results.map { $0! }
    }
}
