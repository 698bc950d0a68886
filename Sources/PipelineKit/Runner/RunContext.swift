import Foundation
import ModelKit

/// Options of `precept run`.
public struct RunOptions: Sendable {
    /// The run directory (default: the pipeline's `output`).
    public var output: URL?
    /// The call cache directory (default: `PRECEPT_CACHE_DIR`, else beside the run directory).
    public var cacheDirectory: URL?
    /// Use only the first N prompts.
    public var limit: Int?
    /// Run only this stage (its inputs must already be in the store).
    public var only: String?
    /// Start at this stage (earlier ones must already be in the store).
    public var from: String?
    /// Model calls per batch (one transaction each).
    public var batchSize = 8
    /// Write into a folder of other files, or move another pipeline's run aside and start anew.
    public var force = false

    public init(output: URL? = nil, cacheDirectory: URL? = nil, limit: Int? = nil, only: String? = nil,
                from: String? = nil, batchSize: Int = 8, force: Bool = false) {
        self.force = force
        self.output = output
        self.cacheDirectory = cacheDirectory
        self.limit = limit
        self.only = only
        self.from = from
        self.batchSize = batchSize
    }
}

/// Live numbers for the progress display.
public struct ProgressState: Sendable {
    public var stage: String
    public var done: Int
    public var total: Int
    public var executed: Int
    public var cached: Int
    public var generatedTokens: Int
    public var elapsed: Double

    public var tokensPerSecond: Double { elapsed > 0 ? Double(generatedTokens) / elapsed : 0 }
    /// Seconds left at the current rate, if anything was executed.
    public var eta: Double? { done > 0 && done < total ? elapsed / Double(done) * Double(total - done) : nil }
}

/// Receives progress updates and messages from a run.
public protocol RunReporter: AnyObject {
    func progress(_ state: ProgressState)
    func message(_ text: String)
}

/// Set from a signal handler; checked between batches so a stop never splits a transaction.
public final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    public init() {}
    public func request() { lock.lock(); value = true; lock.unlock() }
    public var isRequested: Bool { lock.lock(); defer { lock.unlock() }; return value }
}

/// Everything a stage executor needs: the pipeline, constitution, records, store, models.
public final class RunContext {
    public let pipeline: Pipeline
    public let constitution: Constitution
    public let records: [RecordRow]
    /// Record id → the principle tags of its prompt set (`prompts[].tags`), for records whose set has them.
    public let principleTags: [String: [String]]
    public let store: RunStore
    public let options: RunOptions
    public let reporter: RunReporter?
    public let stop: StopFlag
    private let backendFactory: (ModelSpec) throws -> ModelBackend
    private let cache: CallCache
    private var backends: [String: CachedBackend] = [:]
    public private(set) var batchesDone = 0

    public init(pipeline: Pipeline, constitution: Constitution, records: [RecordRow], store: RunStore, cache: CallCache,
                options: RunOptions, reporter: RunReporter?, stop: StopFlag, principleTags: [String: [String]] = [:],
                backendFactory: @escaping (ModelSpec) throws -> ModelBackend) {
        self.pipeline = pipeline
        self.principleTags = principleTags
        self.constitution = constitution
        self.records = records
        self.store = store
        self.cache = cache
        self.options = options
        self.reporter = reporter
        self.stop = stop
        self.backendFactory = backendFactory
    }

    /// The cached backend of a model, created on first use.
    public func backend(_ name: String) throws -> CachedBackend {
        if let b = backends[name] { return b }
        guard let spec = pipeline.model(named: name) else { throw RunError.backend(model: name, message: "not in the pipeline") }
        let b = CachedBackend(name: name, backend: try backendFactory(spec), cache: cache)
        backends[name] = b
        return b
    }

    /// The cached backend of a model that is not in `models:` (e.g. a trained stage's merged
    /// GGUF), keyed by its name.
    public func backend(spec: ModelSpec) throws -> CachedBackend {
        if let b = backends[spec.name] { return b }
        let b = CachedBackend(name: spec.name, backend: try backendFactory(spec), cache: cache)
        backends[spec.name] = b
        return b
    }

    /// Counts of backends already released (`releaseBackends`).
    private var releasedCounts = (executed: 0, cached: 0, tokens: 0)

    /// Drops the loaded models (a training stage needs the memory); their call counts are kept.
    public func releaseBackends() {
        for b in backends.values {
            releasedCounts.executed += b.executed
            releasedCounts.cached += b.hits
            releasedCounts.tokens += b.generatedTokens
        }
        backends = [:]
    }

    public var callCounts: (executed: Int, cached: Int) {
        backends.values.reduce((releasedCounts.executed, releasedCounts.cached)) { ($0.0 + $1.executed, $0.1 + $1.hits) }
    }

    public var generatedTokens: Int { backends.values.reduce(releasedCounts.tokens) { $0 + $1.generatedTokens } }

    /// Runs `todo` in batches of `size`: `rows` makes each batch's rows, which are saved in one
    /// transaction, then progress is reported (`total` also counts the items stored before) and a
    /// stop request honoured.
    func storeInBatches<T>(_ todo: [T], total: Int, size: Int, stage: String, _ rows: ([T]) throws -> [OutputRow]) throws {
        var progress = ProgressState(stage: stage, done: total - todo.count, total: total, executed: 0, cached: 0,
                                     generatedTokens: 0, elapsed: 0)
        reporter?.progress(progress)
        let started = Date()
        for start in stride(from: 0, to: todo.count, by: size) {
            let batch = Array(todo[start..<min(start + size, todo.count)])
            try store.save(try rows(batch))
            progress.done += batch.count
            (progress.executed, progress.cached) = callCounts
            progress.generatedTokens = generatedTokens
            progress.elapsed = Date().timeIntervalSince(started)
            reporter?.progress(progress)
            try batchCommitted()
        }
    }

    /// Called after each committed batch: counts it and honours a stop request.
    func batchCommitted() throws {
        batchesDone += 1
        if stop.isRequested { throw RunError.interrupted(completedBatches: batchesDone) }
    }

    /// Records by id.
    public lazy var recordsByID: [String: RecordRow] = Dictionary(uniqueKeysWithValues: records.map { ($0.id, $0) })
}
