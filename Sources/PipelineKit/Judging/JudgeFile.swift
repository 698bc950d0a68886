import Foundation

/// `precept judge`: labels a pairs file with a judge stage's settings, writes one output row per
/// input row, and measures agreement when rows carry gold labels.
public enum JudgeFile {
    public struct Result {
        /// The JSON summary (`--json`): pairs, seconds, calls, calibration and the gold metrics.
        public var summary: [String: Any]
        /// The same for the terminal.
        public var lines: [String]
        public var metrics: GoldMetrics?
    }

    /// Labels `rows` in batches and writes `output` (via `<output>.partial`, renamed when every
    /// row is labelled, so a failed run never leaves a file that looks complete).
    /// With `harmBackend` (the stage's `harm_check` model), the harm question is asked of both
    /// responses of every row (`harm_a`, `harm_b`), so its threshold can be chosen on gold pairs.
    public static func label(rows: [PairRow], spec: JudgeSpec, constitution: Constitution, backends: [CachedBackend],
                             harmBackend: CachedBackend? = nil,
                             seed: UInt64, stage: String, batchSize: Int, output: URL, inputPath: String,
                             progress: ((ProgressState) -> Void)? = nil) throws -> Result {
        let started = Date()
        let judge = PairJudge(spec: spec, constitution: constitution, backends: backends, seed: seed, stage: stage)
        let pairsPerBatch = max(1, batchSize / max(1, spec.callsPerPair))
        var notes: [String] = []
        if let file = spec.calibration {
            judge.calibration = try judge.fitCalibration(path: file, batchSize: pairsPerBatch)
            if URL(fileURLWithPath: file).standardizedFileURL.path == URL(fileURLWithPath: inputPath).standardizedFileURL.path {
                notes.append("note: calibration was fitted on this same file, so the calibrated figures are in-sample")
            }
        }
        try FileManager.default.createDirectory(at: output.deletingLastPathComponent(), withIntermediateDirectories: true)
        let partial = output.appendingPathExtension("partial")
        guard FileManager.default.createFile(atPath: partial.path, contents: nil) else {
            throw RunError.cannotWrite(path: partial.path)
        }
        let handle = try FileHandle(forWritingTo: partial)
        defer { try? handle.close() }
        var state = ProgressState(stage: stage, done: 0, total: rows.count, executed: 0, cached: 0, generatedTokens: 0, elapsed: 0)
        progress?(state)
        var items: [GoldMetrics.Item] = []
        let harmCheck = spec.harmCheck.flatMap { check in harmBackend.map { HarmCheck(spec: check, constitution: constitution, backend: $0) } }
        let counted = backends + (harmBackend.map { h in backends.contains { $0 === h } ? [] : [h] } ?? [])
        var harmAnswers: [(better: Double, worse: Double)] = []
        var done = 0
        try judge.label(rows, batchSize: pairsPerBatch) { batch, judgements in
            let harm = try harmCheck?.probabilities(batch.flatMap { [($0.prompt, $0.responseA), ($0.prompt, $0.responseB)] })
            for (n, (row, judgement)) in zip(batch, judgements).enumerated() {
                let label = judgement.label
                var object = row.object
                object["p_a"] = label.probability
                object["p_a_raw"] = label.rawProbability ?? label.probability
                object["principles"] = label.principles
                object["probabilities"] = label.probabilities
                object["method"] = spec.method.rawValue
                object["models"] = spec.models
                if let scores = label.scores { object["scores"] = scores }
                if let rationales = label.rationales { object["rationales"] = rationales }
                if let harm {
                    let (a, b) = (harm[2 * n].probability, harm[2 * n + 1].probability)
                    (object["harm_a"], object["harm_b"]) = (a, b)
                    if let better = row.better { harmAnswers.append(better == "a" ? (a, b) : (b, a)) }
                }
                var data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
                data.append(0x0A)
                try handle.write(contentsOf: data)
                if let better = row.better {
                    func words(_ s: String) -> Int { s.split(whereSeparator: \.isWhitespace).count }
                    let (good, bad) = better == "a" ? (row.responseA, row.responseB) : (row.responseB, row.responseA)
                    items.append(GoldMetrics.Item(probability: label.probability, betterIsA: better == "a", category: row.category,
                                                  betterWords: words(good), worseWords: words(bad), orders: label.probabilities,
                                                  positional: label.isPositional))
                }
            }
            done += batch.count
            state.done = done
            state.executed = counted.reduce(0) { $0 + $1.executed }
            state.cached = counted.reduce(0) { $0 + $1.hits }
            state.elapsed = Date().timeIntervalSince(started)
            progress?(state)
        }
        try handle.close()
        if FileManager.default.fileExists(atPath: output.path) { try FileManager.default.removeItem(at: output) }
        try FileManager.default.moveItem(at: partial, to: output)

        let seconds = Date().timeIntervalSince(started)
        let executed = counted.reduce(0) { $0 + $1.executed }, cached = counted.reduce(0) { $0 + $1.hits }
        var summary: [String: Any] = [
            "pairs": rows.count, "output": output.path, "stage": stage, "method": spec.method.rawValue, "models": spec.models,
            "principles": spec.principles, "seconds": seconds, "seconds_per_pair": seconds / Double(max(rows.count, 1)),
            "calls_executed": executed, "calls_cached": cached,
        ]
        var lines = ["labelled \(rows.count) pairs with stage `\(stage)` (\(spec.method.rawValue), \(spec.models.joined(separator: " + "))) → \(output.path)",
                     String(format: "%.1f s (%.2f s per pair; %d calls run, %d cached)", seconds, seconds / Double(max(rows.count, 1)), executed, cached)]
        if let c = judge.calibration {
            summary["calibration"] = try JSONSerialization.jsonObject(with: Data(try c.json().utf8))
            lines.append(String(format: "calibration (%@, fitted on %d pairs of %@): a = %.3f, b = %.3f; log-loss %.3f → %.3f",
                                c.fit.rawValue, c.pairs, c.file, c.a, c.b, c.logLossBefore, c.logLossAfter))
        }
        lines += notes
        if let check = harmCheck, !harmAnswers.isEmpty {
            // How often the check would flag the gold-better and the gold-worse response of a pair.
            let t = check.spec.threshold
            let better = harmAnswers.filter { $0.better >= t }.count, worse = harmAnswers.filter { $0.worse >= t }.count
            summary["harm_check"] = ["threshold": t, "flagged_better": better, "flagged_worse": worse, "pairs": harmAnswers.count]
            lines.append("harm check (threshold \(t)): flags \(better) of \(harmAnswers.count) better responses and \(worse) of \(harmAnswers.count) worse ones")
        }
        var metrics: GoldMetrics?
        if !items.isEmpty {
            let m = GoldMetrics(items: items)
            metrics = m
            let data = try JSONEncoder().encode(m)
            for (k, v) in try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:] { summary[k] = v }
            summary["gold_pairs"] = items.count
            lines.append("agreement with gold (\(items.count) rows with `better`):")
            lines += m.text.map { "  " + $0 }
        } else {
            summary["pairs"] = rows.count
        }
        return Result(summary: summary, lines: lines, metrics: metrics)
    }
}
