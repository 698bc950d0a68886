import Foundation
import TensorKit

/// Progress of an RL run, reported after every step.
public struct PPOProgress: Sendable {
    public var step: Int
    public var totalSteps: Int
    public var metrics: [String: Double]
    public var warnings: [MonitorWarning]
    public var elapsed: Double
}

extension PPOTrainer {
    /// Runs `config.steps` steps over `prompts` (token ids; `ids` name them in samples.jsonl),
    /// writing into `directory`: `metrics.jsonl` (one line per step), `samples.jsonl` (every
    /// rollout: step, prompt id, response, score), `monitors.jsonl` (warnings) and resumable
    /// checkpoints. A rerun with the same `fingerprint` resumes after the last checkpoint and
    /// drops log lines written after it. Returns the last step's metrics.
    public func train(prompts: [[Int32]], ids: [String], directory: URL, fingerprint: String,
                      onStep: ((PPOProgress) -> Void)? = nil, shouldStop: (() -> Bool)? = nil) throws -> [String: Double] {
        precondition(prompts.count == ids.count && !prompts.isEmpty)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let store = CheckpointStore(directory: directory.appendingPathComponent("checkpoint"), fingerprint: fingerprint)
        let (done, scalars) = try store.restore(parameters: parameters, optimisers: optimisers)
        if done > 0 {
            klController.value = scalars["kl_coef"] ?? klController.value
            if let mean = scalars["monitor_reward_mean"], let std = scalars["monitor_reward_std"], let kl = scalars["monitor_kl"],
               let length = scalars["monitor_length"], let d2 = scalars["monitor_distinct_2"] {
                monitors.start = MonitorSample(rewardMean: mean, rewardStd: std, kl: kl, length: length, distinct2: d2)
            }
            rollout.refresh()
        }
        let urls = ["metrics.jsonl", "samples.jsonl", "monitors.jsonl"].map { directory.appendingPathComponent($0) }
        for url in urls { try MetricsLog.truncate(url, after: done) }
        let metricsLog = try MetricsLog(url: urls[0]), samplesLog = try MetricsLog(url: urls[1]), monitorLog = try MetricsLog(url: urls[2])
        guard done < config.steps else { return Self.lastMetrics(urls[0]) }
        let started = Date()
        var last: [String: Double] = [:]
        for s in (done + 1)...config.steps {
            let (metrics, rollouts) = try step(prompts, indices: promptIndices(step: s, count: prompts.count), step: s)
            last = metrics
            try metricsLog.append(step: s, split: "train", metrics: metrics)
            for r in rollouts {
                try samplesLog.append(["step": s, "prompt_id": ids[r.prompt], "response": r.text, "score": r.score,
                                       "finish": r.finish.rawValue, "tokens": r.response.count])
            }
            let sample = MonitorSample(rewardMean: metrics["objective/scores"] ?? 0, rewardStd: metrics["reward_std"] ?? 0,
                                       kl: metrics["objective/kl"] ?? 0, length: metrics["response_length"] ?? 0,
                                       distinct2: metrics["distinct_2"] ?? 1, truncationRate: metrics["truncation_rate"] ?? 0)
            let warnings = monitors.check(sample, step: s)
            for w in warnings {
                try monitorLog.append(["step": s, "monitor": w.kind.rawValue, "value": w.value, "threshold": w.threshold,
                                       "message": w.message, "stops": w.stops])
            }
            onStep?(PPOProgress(step: s, totalSteps: config.steps, metrics: metrics, warnings: warnings,
                                elapsed: Date().timeIntervalSince(started)))
            let stopping = shouldStop?() ?? false
            let monitorStop = warnings.first { $0.stops }
            if stopping || monitorStop != nil || s == config.steps || (config.checkpointEvery > 0 && s % config.checkpointEvery == 0) {
                var scalars = ["kl_coef": klController.value]
                if let m = monitors.start {
                    scalars["monitor_reward_mean"] = m.rewardMean
                    scalars["monitor_reward_std"] = m.rewardStd
                    scalars["monitor_kl"] = m.kl
                    scalars["monitor_length"] = m.length
                    scalars["monitor_distinct_2"] = m.distinct2
                }
                try store.save(step: s, parameters: parameters, optimisers: optimisers, scalars: scalars)
            }
            if let w = monitorStop { throw TrainingError.monitorStopped(step: s, monitor: w.kind.rawValue, message: w.message) }
            if stopping { throw TrainingError.interrupted(step: s) }
        }
        return last
    }

    /// The metrics of the last train line of a metrics.jsonl.
    static func lastMetrics(_ url: URL) -> [String: Double] {
        guard let text = try? String(contentsOf: url, encoding: .utf8),
              let line = text.split(separator: "\n").last,
              let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return [:] }
        return object.compactMapValues { ($0 as? NSNumber)?.doubleValue }.filter { $0.key != "step" }
    }
}
