import Foundation
import GRDB

/// One stored result: a record's output for a stage, sample and round.
public struct OutputRow: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "outputs"

    public var stage: String
    public var record: String
    public var sample: Int
    public var round: Int
    /// response, critique, revision or label.
    public var kind: String
    public var principle: String?
    /// The exact prompt sent to the model, and its hash (a changed prompt means a stale row).
    public var input: String
    public var inputHash: String
    /// The output after trimming (what later stages use).
    public var output: String
    /// The model's raw text, kept even when it is flagged.
    public var raw: String
    /// Comma-separated quality flags: empty, truncated, unchanged.
    public var flags: String
    public var finish: String
    public var promptTokens: Int
    public var completionTokens: Int
    public var seconds: Double
    /// Whether the call came from the call cache.
    public var cached: Bool
    /// Stage-specific JSON (e.g. the judge's per-order probabilities).
    public var extra: String?

    public var flagList: [String] { flags.split(separator: ",").map(String.init) }
}

/// A prompt record of the run.
public struct RecordRow: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "records"
    public var id: String
    public var position: Int
    public var prompt: String
    /// The source line's fields as JSON.
    public var fields: String

    /// A string field of the source line (e.g. `category`), nil when absent.
    public func field(_ key: String) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(fields.utf8)) as? [String: Any] else { return nil }
        return object[key] as? String
    }
}

/// The durable state of one run directory: `run.sqlite` (WAL), written one transaction per batch,
/// so a crash loses at most the batch in flight and a rerun continues from there.
public final class RunStore: @unchecked Sendable {
    public let directory: URL
    let queue: DatabaseQueue

    public static func databaseURL(in directory: URL) -> URL { directory.appendingPathComponent("run.sqlite") }

    /// Opens the store in `directory`: `create: true` for the run that writes it (the file and
    /// schema are created if needed), `create: false` to read an existing run (read-only, so a
    /// reader never races a starting run over the schema).
    public init(directory: URL, create: Bool = true) throws {
        self.directory = directory
        if create { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) }
        let url = Self.databaseURL(in: directory)
        guard create || FileManager.default.fileExists(atPath: url.path) else {
            throw RunError.notARunDirectory(directory.path)
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.readonly = !create
        queue = try DatabaseQueue(path: url.path, configuration: configuration)
        if create { try createSchema() }
    }

    /// Idempotent schema creation in one immediate transaction, so two processes opening the
    /// same new run directory cannot both try to create it.
    private func createSchema() throws {
        try queue.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            try db.inTransaction(.immediate) {
                try db.execute(sql: """
                    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                    CREATE TABLE IF NOT EXISTS records (
                        id TEXT PRIMARY KEY NOT NULL, position INTEGER NOT NULL, prompt TEXT NOT NULL, fields TEXT NOT NULL);
                    CREATE TABLE IF NOT EXISTS outputs (
                        stage TEXT NOT NULL, record TEXT NOT NULL, sample INTEGER NOT NULL, round INTEGER NOT NULL,
                        kind TEXT NOT NULL, principle TEXT, input TEXT NOT NULL, inputHash TEXT NOT NULL,
                        output TEXT NOT NULL, raw TEXT NOT NULL, flags TEXT NOT NULL, finish TEXT NOT NULL,
                        promptTokens INTEGER NOT NULL, completionTokens INTEGER NOT NULL, seconds DOUBLE NOT NULL,
                        cached BOOLEAN NOT NULL, extra TEXT,
                        PRIMARY KEY (stage, record, sample, round));
                    PRAGMA user_version = 1;
                    """)
                return .commit
            }
        }
    }

    // MARK: Meta

    public func setMeta(_ values: [String: String]) throws {
        try queue.write { db in
            for (key, value) in values {
                try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", arguments: [key, value])
            }
        }
    }

    public func meta(_ key: String) throws -> String? {
        try queue.read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [key]) }
    }

    // MARK: Records

    public func saveRecords(_ records: [RecordRow]) throws {
        try queue.write { db in
            for record in records { try record.save(db) }
        }
    }

    public func records() throws -> [RecordRow] {
        try queue.read { db in try RecordRow.order(Column("position")).fetchAll(db) }
    }

    // MARK: Outputs

    /// Writes a batch of outputs in one transaction (all or nothing).
    public func save(_ rows: [OutputRow]) throws {
        try queue.write { db in
            for row in rows { try row.save(db) }
        }
    }

    public func outputs(stage: String) throws -> [OutputRow] {
        try queue.read { db in
            try OutputRow.filter(Column("stage") == stage)
                .order(Column("record"), Column("sample"), Column("round")).fetchAll(db)
        }
    }

    /// Input hashes of a stage's stored rows, keyed by (record, sample, round).
    public func inputHashes(stage: String) throws -> [OutputKey: String] {
        try queue.read { db in
            var out: [OutputKey: String] = [:]
            let rows = try Row.fetchAll(db, sql: "SELECT record, sample, round, inputHash FROM outputs WHERE stage = ?", arguments: [stage])
            for row in rows {
                out[OutputKey(record: row["record"], sample: row["sample"], round: row["round"])] = row["inputHash"]
            }
            return out
        }
    }

    public func allOutputs() throws -> [OutputRow] {
        try queue.read { db in try OutputRow.order(Column("stage"), Column("record"), Column("sample"), Column("round")).fetchAll(db) }
    }
}

/// Identifies one output of a stage.
public struct OutputKey: Hashable, Sendable {
    public var record: String
    public var sample: Int
    public var round: Int

    public init(record: String, sample: Int, round: Int) {
        self.record = record
        self.sample = sample
        self.round = round
    }
}

/// Errors of running a pipeline or reading a run.
public enum RunError: LocalizedError, Sendable, Equatable {
    case notARunDirectory(String)
    case unknownStage(String, suggestion: String?)
    case unsupportedStage(id: String, kind: String)
    case unsupportedProvider(model: String, provider: String)
    case missingInput(stage: String, input: String)
    case interrupted(completedBatches: Int)
    case backend(model: String, message: String)
    case training(stage: String, message: String)
    /// A stored row that this version cannot use (written by another version, or corrupted).
    case badStoredRow(stage: String, record: String, sample: Int, message: String)
    case cannotWrite(path: String)

    public var errorDescription: String? {
        switch self {
        case .notARunDirectory(let path): return "\(path): not a run directory (no run.sqlite); run a pipeline first"
        case .unknownStage(let id, let suggestion):
            return "no stage `\(id)` in this pipeline" + (suggestion.map { "; did you mean `\($0)`?" } ?? "")
        case .unsupportedStage(let id, let kind):
            return "stage `\(id)`: `\(kind)` stages cannot run in this version yet (earlier stages are complete and saved)"
        case .unsupportedProvider(let model, let provider):
            return "model `\(model)`: provider `\(provider)` serves generation and judging; training stages need a local model (`source:`) as their base"
        case .missingInput(let stage, let input):
            return "stage `\(stage)` needs the outputs of `\(input)`, which has not run; run without --only/--from first"
        case .interrupted(let batches):
            return "interrupted after \(batches) batches; everything finished is saved, rerun the same command to continue"
        case .backend(let model, let message): return "model `\(model)`: \(message)"
        case .training(let stage, let message): return "stage `\(stage)`: \(message)"
        case .badStoredRow(let stage, let record, let sample, let message):
            return "run.sqlite: stage `\(stage)`, record `\(record)`, sample \(sample): \(message) (written by another version, or corrupted)"
        case .cannotWrite(let path): return "\(path): cannot create this file (does its folder exist, and is it writable?)"
        }
    }
}
