import Foundation
import TensorKit

/// Progress of a training run, reported after every optimiser step.
public struct TrainingProgress: Sendable {
    public var step: Int
    public var totalSteps: Int
    public var epoch: Double
    public var metrics: [String: Double]
    public var tokensPerSecond: Double
    public var elapsed: Double
}

/// Errors of a training run.
public enum TrainingError: LocalizedError, Equatable {
    case noExamples(what: String)
    case interrupted(step: Int)
    case cannotWrite(path: String, reason: String)
    case monitorStopped(step: Int, monitor: String, message: String)

    public var errorDescription: String? {
        switch self {
        case .noExamples(let what): "no training examples: \(what)"
        case .interrupted(let step): "training interrupted after step \(step); the last checkpoint is kept and a rerun resumes from it"
        case .cannotWrite(let path, let reason): "\(path): cannot write: \(reason)"
        case .monitorStopped(let step, let monitor, let message):
            "stopped by the \(monitor) monitor after step \(step): \(message) (checkpoint saved; loosen or remove it from `monitors.stop_on` to go on)"
        }
    }
}

/// The optimisation loop shared by every trainer: seeded shuffling per epoch, micro-batches with
/// gradient accumulation, global-norm clipping, AdamW with warmup and a schedule, evaluation on a
/// held-out split, `metrics.jsonl` (one object per step: `step`, `split`, metrics) and resumable
/// checkpoints (`checkpoint/state.safetensors` + `checkpoint/state.json`).
public final class TrainingLoop<Objective: TrainingObjective> {
    public let config: TrainingConfig
    public let objective: Objective
    public let directory: URL
    /// Identifies the run's inputs; a checkpoint made for another fingerprint is ignored.
    public let fingerprint: String
    public var onProgress: ((TrainingProgress) -> Void)?
    /// Polled after each step; returning true saves a checkpoint and throws `interrupted`.
    public var shouldStop: (() -> Bool)?
    private let optimisers: [AdamW]

    public init(config: TrainingConfig, objective: Objective, directory: URL, fingerprint: String) {
        self.config = config
        self.objective = objective
        self.directory = directory
        self.fingerprint = fingerprint
        let adam = AdamWConfig(learningRate: Float(config.learningRate), weightDecay: Float(config.weightDecay))
        optimisers = objective.parameters.map { _ in AdamW(config: adam) }
    }

    public var metricsURL: URL { directory.appendingPathComponent("metrics.jsonl") }
    var checkpointDirectory: URL { directory.appendingPathComponent("checkpoint") }

    /// Steps the run takes for `count` training examples.
    public func totalSteps(examples count: Int) -> Int {
        let perEpoch = (count + config.examplesPerStep - 1) / config.examplesPerStep
        let total = perEpoch * config.epochs
        return config.maxSteps.map { min($0, total) } ?? total
    }

    /// Trains on `train`, evaluating on `eval`; returns the final evaluation metrics (empty without
    /// an eval split) and the mean training metrics of the last step.
    public func run(train: [Objective.Example], eval: [Objective.Example]) throws -> (eval: [String: Double], train: [String: Double]) {
        guard !train.isEmpty else { throw TrainingError.noExamples(what: "the training split is empty") }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let total = totalSteps(examples: train.count)
        let perEpoch = (train.count + config.examplesPerStep - 1) / config.examplesPerStep
        let firstStep = try resume() + 1
        try truncateMetrics(after: firstStep - 1)
        let log = try MetricsLog(url: metricsURL)
        var lastTrain: [String: Double] = [:]
        let start = Date()
        var tokens = 0
        var order: [Int] = []
        var orderEpoch = -1
        if firstStep > total { return (evaluate(eval), lastTrain) }
        for step in firstStep...total {
            let epoch = (step - 1) / perEpoch
            if epoch != orderEpoch { order = shuffled(train.count, epoch: epoch); orderEpoch = epoch }
            let within = (step - 1) % perEpoch
            let indices = order[(within * config.examplesPerStep)..<min(order.count, (within + 1) * config.examplesPerStep)]
            let examples = indices.map { train[$0] }
            for p in objective.parameters { p.gradient.data.update(repeating: 0, count: p.gradient.count) }
            var means = MetricMeans()
            for batch in microBatches(examples) {
                let m = objective.accumulate(batch, weight: Float(batch.count) / Float(examples.count))
                means.add(m, examples: batch.count)
                tokens += batch.reduce(0) { $0 + objective.tokenCount($1) }
            }
            let norm = clipGradientNorm(objective.parameters, maxNorm: config.maxGradNorm)
            let lr = config.learningRate(step: step, total: total)
            for (p, adam) in zip(objective.parameters, optimisers) {
                adam.update(p.value.data, gradients: p.gradient.data, count: p.value.count, learningRate: Float(lr))
            }
            let elapsed = Date().timeIntervalSince(start)
            var metrics = means.means
            metrics["learning_rate"] = lr
            metrics["grad_norm"] = norm
            metrics["tokens_per_second"] = Double(tokens) / max(elapsed, 1e-9)
            metrics["epoch"] = Double(step) / Double(perEpoch)
            lastTrain = metrics
            try log.append(step: step, split: "train", metrics: metrics)
            if config.evalEvery > 0, step % config.evalEvery == 0, step < total, !eval.isEmpty {
                try log.append(step: step, split: "eval", metrics: evaluate(eval))
            }
            onProgress?(TrainingProgress(step: step, totalSteps: total, epoch: Double(step) / Double(perEpoch), metrics: metrics,
                                         tokensPerSecond: metrics["tokens_per_second"] ?? 0, elapsed: elapsed))
            let stopping = shouldStop?() ?? false
            if stopping || (config.checkpointEvery > 0 && step % config.checkpointEvery == 0 && step < total) {
                try saveCheckpoint(step: step)
            }
            if stopping { throw TrainingError.interrupted(step: step) }
        }
        let final = evaluate(eval)
        if !eval.isEmpty { try log.append(step: total, split: "eval", metrics: final) }
        try saveCheckpoint(step: total)
        return (final, lastTrain)
    }

    /// Mean metrics over `examples` without gradients (empty for no examples).
    public func evaluate(_ examples: [Objective.Example]) -> [String: Double] {
        var means = MetricMeans()
        for batch in microBatches(examples) { means.add(objective.evaluate(batch), examples: batch.count) }
        return means.count == 0 ? [:] : means.means
    }

    /// Splits a step's examples into micro-batches of `batchSize`, each cut further to stay
    /// within `microBatchTokens`.
    func microBatches(_ examples: [Objective.Example]) -> [[Objective.Example]] {
        var out: [[Objective.Example]] = []
        var current: [Objective.Example] = [], tokens = 0
        for e in examples {
            let t = objective.tokenCount(e)
            if !current.isEmpty && (current.count >= config.batchSize || tokens + t > config.microBatchTokens) {
                out.append(current)
                current = []
                tokens = 0
            }
            current.append(e)
            tokens += t
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// A seeded permutation of the training examples for one epoch.
    private func shuffled(_ n: Int, epoch: Int) -> [Int] {
        seededPermutation(n, seed: config.seed &+ UInt64(epoch + 1) &* 0x9E37_79B9_7F4A_7C15)
    }

    // MARK: Checkpoints

    private var checkpoints: CheckpointStore { CheckpointStore(directory: checkpointDirectory, fingerprint: fingerprint) }

    private func saveCheckpoint(step: Int) throws {
        try checkpoints.save(step: step, parameters: objective.parameters, optimisers: optimisers)
    }

    /// Restores the last checkpoint made for this fingerprint; returns its step (0 for none).
    private func resume() throws -> Int {
        try checkpoints.restore(parameters: objective.parameters, optimisers: optimisers).step
    }

    private func truncateMetrics(after step: Int) throws { try MetricsLog.truncate(metricsURL, after: step) }
}

/// Appends one JSON object per line to metrics.jsonl.
final class MetricsLog {
    let url: URL
    private let handle: FileHandle

    init(url: URL) throws {
        self.url = url
        if !FileManager.default.fileExists(atPath: url.path) { FileManager.default.createFile(atPath: url.path, contents: nil) }
        guard let h = try? FileHandle(forWritingTo: url) else {
            throw TrainingError.cannotWrite(path: url.path, reason: "cannot open for appending")
        }
        handle = h
        handle.seekToEndOfFile()
    }

    deinit { try? handle.close() }

    func append(step: Int, split: String, metrics: [String: Double]) throws {
        try append(["step": step, "split": split], metrics: metrics)
    }

    /// Appends `fields` plus the finite metrics as one line.
    func append(_ fields: [String: Any], metrics: [String: Double] = [:]) throws {
        var object = fields
        for (k, v) in metrics where v.isFinite { object[k] = v }
        var line = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        line.append(0x0A)
        handle.write(line)
    }
}

/// A Fisher-Yates permutation of 0..<n driven by a 64-bit LCG (Knuth's MMIX constants), the same
/// for the same seed on every machine: the epoch order of the training loop and PPO's prompt order.
func seededPermutation(_ n: Int, seed: UInt64) -> [Int] {
    var state = seed, order = Array(0..<n)
    for i in stride(from: n - 1, to: 0, by: -1) {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        order.swapAt(i, Int((state >> 33) % UInt64(i + 1)))
    }
    return order
}
