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
        if create {
            queue = try DatabaseQueue(path: url.path, configuration: configuration)
            try createSchema()
            return
        }
        do {
            // GRDB reads the schema on opening, which is where a read-only folder fails.
            let opened = try DatabaseQueue(path: url.path, configuration: configuration)
            _ = try opened.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM meta") }
            queue = opened
        } catch let error as DatabaseError
                    where [.SQLITE_READONLY, .SQLITE_CANTOPEN].contains(error.resultCode.primaryResultCode) {
            // A read-only folder (an archived run): SQLite cannot create the WAL index (-shm)
            // there. A run that was closed cleanly has everything in run.sqlite, so it is opened
            // immutable; unmerged WAL content cannot be read without writing and is an error.
            let wal = directory.appendingPathComponent("run.sqlite-wal").path
            if let size = (try? FileManager.default.attributesOfItem(atPath: wal))?[.size] as? Int, size > 0 {
                throw RunError.readOnlyWithJournal(path: directory.path)
            }
            var components = URLComponents()
            components.scheme = "file"
            components.path = url.path
            components.queryItems = [URLQueryItem(name: "immutable", value: "1")]
            do { queue = try DatabaseQueue(path: components.string ?? url.path, configuration: configuration) } catch let error as DatabaseError {
                throw RunError.unreadableStore(path: url.path, message: error.message ?? "\(error)")
            }
        } catch let error as DatabaseError {
            throw RunError.unreadableStore(path: url.path, message: error.message ?? "\(error)")
        }
    }

    /// A read transaction whose SQLite errors (a damaged file) name the store.
    private func read<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try queue.read(body) } catch let error as DatabaseError {
            throw RunError.unreadableStore(path: Self.databaseURL(in: directory).path, message: error.message ?? "\(error)")
        }
    }

    /// Idempotent schema creation in one immediate transaction, so two processes opening the
    /// same new run directory cannot both try to create it.
    private func createSchema() throws {
        try queue.writeWithoutTransaction { db in
            try db.enableWAL()
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
        try read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [key]) }
    }

    // MARK: Records

    /// Makes `records` the run's records in one transaction: others are deleted with their
    /// outputs in `stages` (the stages keyed by prompt record; evaluation rows are keyed by
    /// held-out prompts and stay). Returns how many records were deleted.
    @discardableResult
    public func replaceRecords(_ records: [RecordRow], stages: [String]) throws -> Int {
        try queue.write { db in
            let keep = Set(records.map(\.id))
            let stale = try String.fetchAll(db, sql: "SELECT id FROM records").filter { !keep.contains($0) }
            for id in stale {
                for stage in stages {
                    try db.execute(sql: "DELETE FROM outputs WHERE stage = ? AND record = ?", arguments: [stage, id])
                }
                try db.execute(sql: "DELETE FROM records WHERE id = ?", arguments: [id])
            }
            for record in records { try StoredText.mapped(record, StoredText.encode).save(db) }
            return stale.count
        }
    }

    public func records() throws -> [RecordRow] {
        try read { db in try RecordRow.order(Column("position")).fetchAll(db).map { StoredText.mapped($0, StoredText.decode) } }
    }

    // MARK: Outputs

    /// Writes a batch of outputs in one transaction (all or nothing).
    public func save(_ rows: [OutputRow]) throws {
        try queue.write { db in
            for row in rows { try StoredText.mapped(row, StoredText.encode).save(db) }
        }
    }

    public func outputs(stage: String) throws -> [OutputRow] {
        try read { db in
            try OutputRow.filter(Column("stage") == stage)
                .order(Column("record"), Column("sample"), Column("round")).fetchAll(db).map { StoredText.mapped($0, StoredText.decode) }
        }
    }

    /// Input hashes of a stage's stored rows, keyed by (record, sample, round).
    public func inputHashes(stage: String) throws -> [OutputKey: String] {
        try read { db in
            var out: [OutputKey: String] = [:]
            let rows = try Row.fetchAll(db, sql: "SELECT record, sample, round, inputHash FROM outputs WHERE stage = ?", arguments: [stage])
            for row in rows {
                out[OutputKey(record: row["record"], sample: row["sample"], round: row["round"])] = row["inputHash"]
            }
            return out
        }
    }

    public func allOutputs() throws -> [OutputRow] {
        try read { db in
            try OutputRow.order(Column("stage"), Column("record"), Column("sample"), Column("round")).fetchAll(db).map { StoredText.mapped($0, StoredText.decode) }
        }
    }
}

/// Text that keeps every character through SQLite: GRDB binds and reads TEXT as C strings, so
/// a NUL (which models and servers can emit) would cut the stored text short. Such text, and
/// text that happens to start with the marker, is stored as the marker + base64 of its UTF-8.
enum StoredText {
    static let marker = "\u{E000}precept-b64:"

    static func encode(_ text: String) -> String {
        guard text.utf8.contains(0) || text.hasPrefix(marker) else { return text }
        return marker + Data(text.utf8).base64EncodedString()
    }

    static func decode(_ text: String) -> String {
        guard text.hasPrefix(marker), let data = Data(base64Encoded: String(text.dropFirst(marker.count))) else { return text }
        return String(decoding: data, as: UTF8.self)
    }

    /// The row with each text column passed through `f` (`encode` or `decode`).
    static func mapped(_ row: OutputRow, _ f: (String) -> String) -> OutputRow {
        var r = row
        r.input = f(r.input); r.output = f(r.output); r.raw = f(r.raw); r.extra = r.extra.map(f)
        return r
    }

    static func mapped(_ record: RecordRow, _ f: (String) -> String) -> RecordRow {
        var r = record
        r.prompt = f(r.prompt); r.fields = f(r.fields)
        return r
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
    case unsupportedProvider(model: String, provider: String)
    case missingInput(stage: String, input: String)
    case interrupted(completedBatches: Int)
    case backend(model: String, message: String)
    case training(stage: String, message: String)
    /// A stored row that this version cannot use (written by another version, or corrupted).
    case badStoredRow(stage: String, record: String, sample: Int, message: String)
    case cannotWrite(path: String)
    /// `output:` names a place a run must never be written.
    case unsafeOutput(path: String, reason: String)
    /// The output folder holds other files and no run.
    case notEmpty(path: String, entries: [String], count: Int)
    /// The output folder holds the run of another pipeline.
    case otherPipeline(path: String, owner: String, ownerFile: String?)
    /// Another process is running into the same folder.
    case locked(path: String, holder: String)
    /// A read-only run folder whose write-ahead log holds data not yet in run.sqlite.
    case readOnlyWithJournal(path: String)
    /// SQLite cannot read the store (a damaged or foreign file).
    case unreadableStore(path: String, message: String)

    public var errorDescription: String? {
        switch self {
        case .notARunDirectory(let path): return "\(path): not a run directory (no run.sqlite); run a pipeline first"
        case .unknownStage(let id, let suggestion):
            return "no stage `\(id)` in this pipeline" + (suggestion.map { "; did you mean `\($0)`?" } ?? "")
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
        case .unsafeOutput(let path, let reason):
            return "\(path): refusing to write here: \(reason)"
        case .notEmpty(let path, let entries, let count):
            let shown = entries.joined(separator: ", ") + (count > entries.count ? ", … (\(count) entries)" : "")
            return "\(path): the folder holds other files (\(shown)) and no run; choose an empty folder, or pass --force to write the run among them"
        case .otherPipeline(let path, let owner, let ownerFile):
            return "\(path): holds the run of pipeline `\(owner)`" + (ownerFile.map { " (\($0))" } ?? "")
                + "; a run directory belongs to one pipeline. Choose another output, or pass --force to move that run into previous-\(owner)-<time>/ and start a new one"
        case .unreadableStore(let path, let message):
            return "\(path): cannot read the run store: \(message) (damaged, or not a run store)"
        case .readOnlyWithJournal(let path):
            return "\(path): the folder is read-only and run.sqlite-wal holds results not yet merged into run.sqlite; copy the run to a writable folder to read it"
        case .locked(let path, let holder):
            return "\(path): another run is writing this folder: \(holder); wait for it to finish (or stop it)"
        }
    }
}

extension Database {
    /// Sets WAL journaling unless it is set. Switching needs an exclusive lock, and SQLite can
    /// answer SQLITE_BUSY at once, without the busy handler, while another connection opens the
    /// same new file (seen under load in RunStoreTests): retried for up to 5 s.
    func enableWAL() throws {
        for attempt in 1... {
            do {
                if try String.fetchOne(self, sql: "PRAGMA journal_mode")?.lowercased() != "wal" {
                    try execute(sql: "PRAGMA journal_mode = WAL")
                }
                return
            } catch let error as DatabaseError where error.resultCode.primaryResultCode == .SQLITE_BUSY && attempt < 100 {
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
    }
}
