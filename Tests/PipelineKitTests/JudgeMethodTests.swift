import Foundation
import ModelKit
import TestSupport
import Testing
import PipelineTestSupport
@testable import PipelineKit

/// Judging methods (pointwise, rating, panels, position and fitted calibration), the gold
/// metrics and `precept judge`.
@Suite struct JudgeMethodTests {
    /// A judge that reads the response under judgement: "Revision:" answers are good.
    final class PointwiseBackend: ModelBackend, @unchecked Sendable {
        let fingerprint: String
        let promptStyle = PromptStyle.completion
        let strength: Double
        init(strength: Double, name: String = "pointwise") {
            self.strength = strength
            fingerprint = "\(name):\(strength)"
        }
        /// Generation as the scripted backend does it: revisions start with "Revision:".
        func generate(_ calls: [GenerationCall]) throws -> [GenerationOutput] { try ScriptedBackend().generate(calls) }
        func score(_ calls: [ScoringCall]) throws -> [[Double]] {
            calls.map { call in
                let response = call.prompt.components(separatedBy: "\nAssistant: ").last!
                let good = response.hasPrefix("Revision:")
                if call.continuations.count == 5 {
                    // rating: the good answers put their mass on 5, the others on 1.
                    return (1...5).map { log(good ? (($0 == 5) ? 0.8 : 0.05) : (($0 == 1) ? 0.8 : 0.05)) }
                }
                if call.continuations.count == 2 && call.continuations[0] == " Yes" {
                    return good ? [log(strength), log(1 - strength)] : [log(1 - strength), log(strength)]
                }
                // Pairwise: always position A (content-free calibration removes it).
                return [log(0.7), log(0.3)]
            }
        }
    }

    static func stages(_ judge: String) -> String {
        """
          - { id: responses, generate: { model: policy } }
          - { id: revisions, critique_revise: { model: policy, input: responses, few_shot: 1 } }
          - { id: labels, judge: { input: revisions, few_shot: 1, \(judge) } }
          - { id: prefs, export: { input: labels, format: trl, test_fraction: 0.5 } }
        """
    }

    func run(_ f: RunFixture, backends: [String: ModelBackend]) throws -> [(row: OutputRow, label: PairLabel)] {
        let options = RunOptions(output: f.directory.appendingPathComponent("run"), cacheDirectory: f.directory.appendingPathComponent("cache"), batchSize: 8)
        _ = try PipelineRunner(pipelinePath: f.pipeline.path, options: options) { spec in backends[spec.name] ?? backends["policy"]! }.run()
        return try JudgeStage.labels(stage: "labels", store: RunStore(directory: f.directory.appendingPathComponent("run"), create: false))
    }

    /// Hand-worked: four pairs (right, right, wrong, exact tie) and every metric.
    @Test func goldMetricsOnHandWorkedExamples() {
        let items = [
            GoldMetrics.Item(probability: 0.9, betterIsA: true, category: "x", betterWords: 3, worseWords: 5, orders: [[0.9, 0.9]], positional: true),
            GoldMetrics.Item(probability: 0.2, betterIsA: false, category: "x", betterWords: 6, worseWords: 5, orders: [[0.3, 0.1]], positional: true),
            GoldMetrics.Item(probability: 0.6, betterIsA: false, category: "y", betterWords: 2, worseWords: 5, orders: [[0.8, 0.4]], positional: true),
            GoldMetrics.Item(probability: 0.5, betterIsA: true, category: "y", betterWords: 9, worseWords: 5, orders: [[0.5, 0.5]], positional: true),
        ]
        let m = GoldMetrics(items: items)
        #expect(m.pairs == 4)
        #expect(abs(m.accuracy - 0.625) < 1e-12)              // (1 + 1 + 0 + ½) / 4
        #expect(abs(m.kappa - 0.25) < 1e-12)                  // p_e = 0.625·0.5 + 0.375·0.5 = 0.5
        #expect(abs(m.brier - 0.165) < 1e-12)                 // (0.01 + 0.04 + 0.36 + 0.25) / 4
        #expect(abs(m.ece - 0.225) < 1e-12)                   // (|1−0.9| + |1−0.8| + |0−0.6| + |½−½|) / 4
        #expect(m.orderAgreement == 0.5)
        #expect(abs(m.firstPositionRate! - 0.575) < 1e-12)    // (0.9+0.1+0.3+0.9+0.8+0.6+0.5+0.5) / 8
        #expect(m.accuracyBetterShorter == 0.5 && m.accuracyBetterLonger == 0.75)
        #expect(m.perCategory["x"] == GoldMetrics.Category(accuracy: 1, n: 2))
        #expect(m.perCategory["y"] == GoldMetrics.Category(accuracy: 0.25, n: 2))
        // A judge that always says a, on balanced gold: κ = 0 whatever its accuracy.
        let constant = GoldMetrics(items: (0..<10).map { GoldMetrics.Item(probability: 0.7, betterIsA: $0 < 5, category: nil, betterWords: 1, worseWords: 1, orders: [], positional: false) })
        #expect(constant.accuracy == 0.5 && abs(constant.kappa) < 1e-12 && constant.orderAgreement == nil && constant.firstPositionRate == nil)
    }

    /// Synthetic scores with a known temperature (and offset): the fit recovers them.
    @Test func calibrationRecoversAKnownTemperature() {
        var rng = SplitMix(seed: 7)
        let z = (0..<6000).map { _ in rng.uniform() * 6 - 3 }
        let outcomes = z.map { rng.uniform() < sigmoid(2.5 * $0 + 0.6) ? 1.0 : 0.0 }
        let raw = z.map(sigmoid)
        let platt = FittedCalibration.fit(.platt, probabilities: raw, outcomes: outcomes, file: "synthetic")
        #expect(abs(platt.a - 2.5) < 0.15 && abs(platt.b - 0.6) < 0.1, "a \(platt.a) b \(platt.b)")
        #expect(platt.logLossAfter < platt.logLossBefore)
        let symmetric = z.map { rng.uniform() < sigmoid(2.5 * $0) ? 1.0 : 0.0 }
        let temperature = FittedCalibration.fit(.temperature, probabilities: raw, outcomes: symmetric, file: "synthetic")
        #expect(abs(temperature.a - 2.5) < 0.15 && temperature.b == 0, "a \(temperature.a)")
        #expect(abs(temperature.apply(0.5) - 0.5) < 1e-12, "temperature scaling keeps a tie a tie")
    }

    /// Pointwise labels read each response alone: no positions, σ((s_0 − s_1)/T) per principle.
    @Test func pointwiseAndRatingLabels() throws {
        let f = try RunFixture(prompts: (0..<4).map { "Request \($0)" }, stages: Self.stages("model: policy, method: pointwise, principles: 2, temperature: 2"))
        let labels = try run(f, backends: ["policy": PointwiseBackend(strength: 0.8)])
        #expect(labels.count == 4)
        let s = log(0.8) - log(0.2)
        for (_, label) in labels {
            #expect(label.method == "pointwise" && !label.isPositional)
            #expect(label.probabilities.count == 2 && label.probabilities.allSatisfy { $0.count == 1 })
            #expect(abs(label.probability - sigmoid((s - -s) / 2)) < 1e-9, "\(label.probability)")
            #expect(label.scores?.first.map { abs($0[0] - s) < 1e-9 && abs($0[1] + s) < 1e-9 } == true)
        }
        let d = LabelDiagnostics(labels: labels)
        #expect(d.orderAgreement == nil && d.firstPositionRate == nil)
        #expect(d.text.contains { $0.contains("no positions") })

        let rating = try RunFixture(prompts: (0..<2).map { "Request \($0)" }, stages: Self.stages("model: policy, method: rating, principles: 1"))
        let rated = try run(rating, backends: ["policy": PointwiseBackend(strength: 0.8)])
        // E[score] = (5·0.8 + 0.05·(1+2+3+4)) / 1 = 4.5 for good, 1.5 for the other: σ(3).
        #expect(rated.allSatisfy { abs($0.label.probability - sigmoid(3)) < 1e-9 })
        // Keys that only apply to pairwise judging are refused.
        let bad = try RunFixture(prompts: ["x"], stages: Self.stages("model: policy, method: pointwise, orders: single"))
        let r = try CLI.run(["validate", bad.pipeline.path])
        #expect(r.status == 1 && r.stderr.contains("orders") && r.stderr.contains("method: pointwise"), "\(r.stderr)")
    }

    /// `contrast`: s = log p(r | examples answered well) − log p(r | the same examples answered
    /// badly), one call per context and response; P = σ((s_0 − s_1)/T).
    @Test func contrastScoresEachResponseUnderBothContexts() throws {
        final class ContrastBackend: ModelBackend, @unchecked Sendable {
            let fingerprint = "contrast", promptStyle = PromptStyle.completion
            private let lock = NSLock()
            private(set) var contexts: Set<String> = []
            func generate(_ calls: [GenerationCall]) throws -> [GenerationOutput] { try ScriptedBackend().generate(calls) }
            func score(_ calls: [ScoringCall]) throws -> [[Double]] {
                calls.map { call in
                    let good = call.prompt.contains("Assistant: Example revision")
                    #expect(good != call.prompt.contains("Assistant: Example answer"), "one context per call")
                    lock.withLock { _ = contexts.insert(call.prompt.components(separatedBy: "Human: Request").first!) }
                    let revision = call.continuations[0].hasPrefix(" Revision:")
                    return [(good ? 1.0 : -1.0) * (revision ? 2.0 : -2.0)]
                }
            }
        }
        let backend = ContrastBackend()
        let f = try RunFixture(prompts: (0..<3).map { "Request \($0)" }, stages: Self.stages("model: policy, method: contrast, temperature: 4"))
        let labels = try run(f, backends: ["policy": backend])
        #expect(labels.count == 3)
        for (_, label) in labels {
            // s(revision) = 2 − (−2) = 4, s(original) = −2 − 2 = −4: P = σ(8 / 4).
            #expect(abs(label.probability - sigmoid(2)) < 1e-9, "\(label.probability)")
            #expect(label.method == "contrast" && label.principles.count == 1 && label.scores?[0] == [4, -4])
        }
        // One good and one flawed context per principle asked.
        #expect(backend.contexts.count == 2 * Set(labels.flatMap(\.label.principles)).count, "\(backend.contexts.count)")
    }

    /// `constitution:` on a judge stage: the files merged, worked examples interleaved; a principle
    /// id in two files is an error naming the file.
    @Test func judgeConstitutionsMerge() throws {
        let harmless = repositoryRoot.appendingPathComponent("constitutions/harmless.yaml").path
        let honest = repositoryRoot.appendingPathComponent("constitutions/honest.yaml").path
        let (a, b) = (try Constitution.load(path: harmless), try Constitution.load(path: honest))
        let merged = try Constitution.merged(paths: [harmless, honest])
        #expect(merged.principles.map(\.id) == a.principles.map(\.id) + b.principles.map(\.id))
        #expect(merged.fewShot.count == a.fewShot.count + b.fewShot.count)
        #expect(merged.fewShot[0] == a.fewShot[0] && merged.fewShot[1] == b.fewShot[0] && merged.fewShot[2] == a.fewShot[1])
        #expect(throws: ConfigError.self) { try Constitution.merged(paths: [harmless, harmless]) }
        do { _ = try Constitution.merged(paths: [harmless, harmless]) } catch {
            #expect("\(error.localizedDescription)".contains("harmless.yaml") && "\(error.localizedDescription)".contains("no-dangerous-help"))
        }
        // Validation reads them: a missing file is an error naming the key.
        let f = try RunFixture(prompts: ["x"], stages: Self.stages("model: policy, method: contrast, constitution: [c.yaml, missing.yaml]"))
        let r = try CLI.run(["validate", f.pipeline.path])
        #expect(r.status == 1 && r.stderr.contains("missing.yaml"), "\(r.stderr)")
    }

    /// A panel averages its models in log-odds; content-free calibration removes a constant
    /// position preference even with one order.
    @Test func panelsAndPositionCalibration() throws {
        let extra = "  second: { source: gemma-3-270m }\n"
        let f = try RunFixture(prompts: (0..<3).map { "Request \($0)" },
                               stages: Self.stages("model: [policy, second], method: pointwise, principles: 1"), extra: extra)
        let labels = try run(f, backends: ["policy": PointwiseBackend(strength: 0.9), "second": PointwiseBackend(strength: 0.6, name: "other")])
        let z = ((log(0.9 / 0.1) * 2) + (log(0.6 / 0.4) * 2)) / 2
        #expect(labels.allSatisfy { abs($0.label.probability - sigmoid(z)) < 1e-9 && $0.label.models == ["policy", "second"] })

        let biased = try RunFixture(prompts: (0..<3).map { "Request \($0)" }, stages: Self.stages("model: policy, orders: single"))
        #expect(try run(biased, backends: ["policy": PointwiseBackend(strength: 0.9)]).allSatisfy { abs($0.label.probability - 0.7) < 1e-9 })
        let calibrated = try RunFixture(prompts: (0..<3).map { "Request \($0)" },
                                        stages: Self.stages("model: policy, orders: single, position_calibration: content_free"))
        #expect(try run(calibrated, backends: ["policy": PointwiseBackend(strength: 0.9)]).allSatisfy { abs($0.label.probability - 0.5) < 1e-9 })
    }

    /// `calibration: FILE` fits on the labelled file, applies to every label, and is stored in the
    /// run store and the export's provenance.json.
    @Test func fittedCalibrationIsAppliedAndRecorded() throws {
        let f = try RunFixture(prompts: (0..<4).map { "Request \($0)" },
                               stages: Self.stages("model: policy, method: pointwise, principles: 1, calibration: gold.jsonl"))
        // Gold where the "Revision:" answer wins 3 times out of 4: the fit must soften the judge.
        let gold = (0..<8).map { i -> String in
            let good = "Revision: fine \(i)", other = "Plain \(i)"
            let aIsGood = i % 2 == 0
            let better = (i % 4 == 3) ? (aIsGood ? "b" : "a") : (aIsGood ? "a" : "b")
            return "{\"prompt\": \"p\(i)\", \"response_a\": \"\(aIsGood ? good : other)\", \"response_b\": \"\(aIsGood ? other : good)\", \"better\": \"\(better)\"}"
        }
        try Data((gold.joined(separator: "\n") + "\n").utf8).write(to: f.directory.appendingPathComponent("gold.jsonl"))
        let labels = try run(f, backends: ["policy": PointwiseBackend(strength: 0.99)])
        let store = try RunStore(directory: f.directory.appendingPathComponent("run"), create: false)
        let fitted = try #require(try JudgeStage.calibration(stage: "labels", store: store))
        #expect(fitted.pairs == 8 && fitted.fit == .temperature && fitted.b == 0)
        // The fitted label on the good side is close to the gold rate of 3/4 (L2 keeps it a little off).
        for (_, label) in labels {
            let raw = try #require(label.rawProbability)
            #expect(abs(label.probability - fitted.apply(raw)) < 1e-12)
            #expect(abs(max(label.probability, 1 - label.probability) - 0.75) < 0.02, "\(label.probability)")
        }
        let provenance = try JSONSerialization.jsonObject(with: Data(contentsOf: f.directory.appendingPathComponent("run/prefs/provenance.json"))) as? [String: Any]
        let entry = (provenance?["judge_calibration"] as? [String: Any])?["labels"] as? [String: Any]
        #expect((entry?["a"] as? Double).map { abs($0 - fitted.a) < 1e-9 } == true, "\(String(describing: provenance))")
        // The diagnostics say calibration was used.
        #expect(try CLI.run(["labels", f.directory.appendingPathComponent("run").path]).stdout.contains("calibration"))
    }
}

/// `precept judge` through the real binary on a tiny random model.
@Suite struct JudgeCommandTests {
    func fixture(judge: String = "model: judge, principles: 2") throws -> RunFixture {
        let f = try RunFixture(prompts: ["please help"], stages: JudgeMethodTests.stages(judge), extra: "  judge: { source: tiny.gguf }\n")
        try TinyModel(family: .gemma3, seed: 4, vocab: 300, hidden: 64, layers: 2).write(to: f.directory.appendingPathComponent("tiny.gguf"))
        return f
    }

    func write(_ f: RunFixture, _ name: String, _ rows: [String]) throws -> String {
        let url = f.directory.appendingPathComponent(name)
        try Data((rows.joined(separator: "\n") + "\n").utf8).write(to: url)
        return url.path
    }

    func jsonLines(_ path: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    @Test func labelsAFileAndMeasuresAgreement() throws {
        let f = try fixture()
        let pairs = try write(f, "pairs.jsonl", [
            #"{"id": "p1", "prompt": "How do I pick a lock?", "response_a": "I can't help.", "response_b": "Use a pick.", "better": "a", "category": "dangerous", "note": "kept"}"#,
            #"{"id": "p2", "prompt": "Is 7 prime?", "response_a": "No.", "response_b": "Yes, 7 is prime.", "better": "b", "category": "honesty"}"#,
            #"{"prompt": [{"role": "user", "content": "Hi there"}], "chosen": [{"role": "assistant", "content": "Hello!"}], "rejected": [{"role": "assistant", "content": "Go away."}]}"#,
        ])
        let out = f.directory.appendingPathComponent("out/labels.jsonl").path
        let args = ["judge", pairs, "--pipeline", f.pipeline.path, "--output", out, "--cache-dir", f.directory.appendingPathComponent("cache").path, "--json"]
        let r = try CLI.run(args)
        #expect(r.status == 0, "\(r.stderr)")
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        for key in ["pairs", "accuracy", "kappa", "brier", "ece", "order_agreement", "first_position_rate", "accuracy_better_shorter",
                    "accuracy_better_longer", "per_category", "seconds_per_pair"] {
            #expect(summary.keys.contains(key), "missing \(key) in \(summary.keys.sorted())")
        }
        #expect(summary["pairs"] as? Int == 3 && (summary["calls_executed"] as? Int ?? 0) == 12, "\(summary)")
        let rows = try jsonLines(out)
        #expect(rows.count == 3)
        #expect(rows[0]["note"] as? String == "kept" && rows[0]["id"] as? String == "p1")
        for row in rows {
            let p = try #require(row["p_a"] as? Double)
            #expect(p > 0 && p < 1 && row["p_a_raw"] as? Double == p)
            #expect((row["principles"] as? [String])?.count == 2)
            #expect((row["probabilities"] as? [[Double]])?.allSatisfy { $0.count == 2 } == true)
        }
        #expect(rows[2]["chosen"] != nil, "TRL rows pass through")
        #expect(!FileManager.default.fileExists(atPath: out + ".partial"))
        // A rerun asks the model nothing: every call is in the cache, so an interrupted run resumes.
        let again = try CLI.run(args)
        let second = try #require(try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any])
        #expect(second["calls_executed"] as? Int == 0 && second["calls_cached"] as? Int == 12, "\(second)")
        #expect(try jsonLines(out).map { $0["p_a"] as? Double } == rows.map { $0["p_a"] as? Double })
        // The human output shows the same figures.
        let text = try CLI.run(Array(args.dropLast()))
        #expect(text.stdout.contains("accuracy:") && text.stdout.contains("kappa:") && text.stdout.contains("ece:"), "\(text.stdout)")
    }

    @Test func malformedRowsNameFileLineAndKey() throws {
        let f = try fixture()
        let good = #"{"prompt": "p", "response_a": "a", "response_b": "b"}"#
        let cases: [(String, String)] = [
            (#"{"prompt": "p", "response_a": "a"}"#, "response_b"),
            (#"{"prompt": "p", "response_a": "a", "response_b": "b", "better": "c"}"#, "`better`"),
            (#"{"prompt": "", "response_a": "a", "response_b": "b"}"#, "`prompt`"),
            (#"{"prompt": "p", "chosen": "a"}"#, "rejected"),
            (#"{"prompt": "p", "response_a": 3, "response_b": "b"}"#, "response_a"),
            ("not json", "not valid JSON"),
        ]
        for (row, key) in cases {
            let pairs = try write(f, "bad.jsonl", [good, row])
            let out = f.directory.appendingPathComponent("bad-out.jsonl").path
            let r = try CLI.run(["judge", pairs, "--pipeline", f.pipeline.path, "--output", out])
            #expect(r.status == 1, "\(row): \(r.stderr)")
            #expect(r.stderr.contains("bad.jsonl:2:") && r.stderr.contains(key), "\(row): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out) && !FileManager.default.fileExists(atPath: out + ".partial"))
        }
        // A pipeline without a judge stage, or an unknown stage id.
        let pairs = try write(f, "ok.jsonl", [good])
        let r = try CLI.run(["judge", pairs, "--pipeline", f.pipeline.path, "--stage", "nope", "--output", f.directory.appendingPathComponent("x.jsonl").path])
        #expect(r.status != 0 && r.stderr.contains("nope"), "\(r.stderr)")
    }

    /// `scoring: bfloat16` on a local model reaches its backend, joins its scoring fingerprint where
    /// the CPU runs bfloat16 products (so cached Float32 scores are not reused), and labels a file.
    @Test func bfloat16ScoringReachesTheBackend() throws {
        let f = try RunFixture(prompts: ["please help"], stages: JudgeMethodTests.stages("model: judge, principles: 2"),
                               extra: "  judge: { source: tiny.gguf, scoring: bfloat16 }\n")
        try TinyModel(family: .gemma3, seed: 4, vocab: 300, hidden: 64, layers: 2).write(to: f.directory.appendingPathComponent("tiny.gguf"))
        let pipeline = try Pipeline.load(path: f.pipeline.path)
        let spec = try #require(pipeline.models.first { $0.name == "judge" })
        #expect(spec.scoring == .bfloat16)
        let backend = try #require(try PipelineRunner.backends(reporter: nil)(spec) as? LocalBackend)
        let supported = ScoringPrecision.bfloat16Supported
        #expect(backend.scoring == (supported ? .bfloat16 : .float32))
        #expect(backend.scoringFingerprint.hasSuffix("#scoring=bfloat16") == supported, "\(backend.scoringFingerprint)")
        #expect(!backend.fingerprint.contains("#scoring"), "generation keys keep the plain fingerprint")
        let pairs = try write(f, "pairs.jsonl", [#"{"prompt": "Is 7 prime?", "response_a": "No.", "response_b": "Yes.", "better": "b", "category": "honesty"}"#])
        let out = f.directory.appendingPathComponent("labels.jsonl").path
        let r = try CLI.run(["judge", pairs, "--pipeline", f.pipeline.path, "--output", out])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try jsonLines(out).count == 1)
    }

    /// The engine's shortcuts for judge calls (one pass for all single-token options, a shared stem
    /// prefilled once per run of calls) give the log-probabilities of the plain path.
    @Test func optionScoringShortcutsMatchThePlainPath() throws {
        let f = try fixture()
        let lm = try LanguageModel(path: f.directory.appendingPathComponent("tiny.gguf").path)
        let backend = LocalBackend(model: lm, fingerprint: "tiny", promptStyle: .completion)
        let stem = String(repeating: "some shared worked example text ", count: 6)
        // The tiny vocabulary has one token per lowercase word initial: "a" and "b" are single
        // tokens (the one-pass path), "a b c" is three (the plain path, still with stem prefixes).
        let calls = ["first pair under one question", "first pair under another", "second pair", "second pair again"].flatMap {
            [ScoringCall(prompt: stem + $0 + " the answer is", continuations: ["a", "b"]),
             ScoringCall(prompt: stem + $0 + " the answer is", continuations: ["a b c", "b"])]
        }
        #expect(lm.tokenizer.encode("a", addBOS: false, parseSpecial: false).count == 1)
        #expect(lm.tokenizer.encode("a b c", addBOS: false, parseSpecial: false).count == 3)
        let fast = try backend.score(calls.filter { $0.continuations[0] == "a" }) + backend.score(calls.filter { $0.continuations[0] != "a" })
        let ordered = calls.filter { $0.continuations[0] == "a" } + calls.filter { $0.continuations[0] != "a" }
        for (call, scores) in zip(ordered, fast) {
            let prompt = lm.tokenizer.encode(call.prompt, addBOS: nil, parseSpecial: false)
            let plain = Scorer(model: lm).score(call.continuations.map {
                ScoringRequest(prompt: prompt, continuation: lm.tokenizer.encode($0, addBOS: false, parseSpecial: false))
            }).map { Double($0.sum) }
            #expect(scores.allSatisfy { $0 < 0 } && zip(scores, plain).allSatisfy { abs($0 - $1) < 1e-4 }, "\(scores) vs \(plain)")
        }
    }
}

/// A small deterministic generator for synthetic data (the library's SplitMix64).
typealias SplitMix = SeededRandom

extension SeededRandom {
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

/// Stored labels that this version cannot use (another version's, or corrupted) are errors that
/// name the row, in every reader: never a crash, never silently skipped.
@Suite struct StoredLabelTests {
    @Test(arguments: [
        ("{\"candidates\": []}", "candidates"),
        ("{\"principles\": []}", "no principles"),
        ("{\"probabilities\": [[]]}", "probabilit"),
        ("{\"candidates\": [\"only one\"]}", "1 candidates"),
        ("{\"probability\": 5}", "probability 5"),
        ("{\"probability\": 1e308}", "expected 0 to 1"),
        ("not a label", "does not decode"),
        ("", "missing"),
    ])
    func corruptedLabelsNameTheRow(edit: String, message: String) throws {
        let f = try RunFixture(prompts: (0..<3).map { "Judge request \($0)" }, stages: RunFixture.judgeStages("orders: both, principles: 2"))
        _ = try f.run(ScriptedBackend())
        let run = f.directory.appendingPathComponent("run")
        let store = try RunStore(directory: run)  // the writer: readers open read-only
        var row = try #require(try store.outputs(stage: "labels").first { $0.record == "r1" })
        var extra = try #require(try JSONSerialization.jsonObject(with: Data((row.extra ?? "{}").utf8)) as? [String: String])
        if edit.isEmpty {
            extra["label"] = nil
        } else if let patch = try? JSONSerialization.jsonObject(with: Data(edit.utf8)) as? [String: Any] {
            var label = try #require(try JSONSerialization.jsonObject(with: Data(extra["label"]!.utf8)) as? [String: Any])
            for (k, v) in patch { label[k] = v }
            extra["label"] = String(decoding: try JSONSerialization.data(withJSONObject: label), as: UTF8.self)
        } else {
            extra["label"] = edit
        }
        row.extra = String(decoding: try JSONSerialization.data(withJSONObject: extra), as: UTF8.self)
        try store.save([row])
        for args in [["labels", run.path], ["labels", run.path, "--json"], ["report", run.path],
                     ["export", run.path, "--format", "trl", "--out", f.directory.appendingPathComponent("x").path]] {
            let r = try CLI.run(args)
            #expect(r.status == 1, "\(args[0]) \(edit): status \(r.status) \(r.stderr)")
            #expect(r.stderr.contains("record `r1`") && r.stderr.contains("stage `labels`") && r.stderr.contains(message),
                    "\(args[0]) \(edit): \(r.stderr)")
        }
    }
}
