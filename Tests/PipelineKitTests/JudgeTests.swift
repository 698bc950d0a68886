import Foundation
import ModelKit
import Testing
import PipelineTestSupport
@testable import PipelineKit
import TestSupport

/// The judge stage with scripted judges: soft labels, both orders, ensembles, chain of thought,
/// sampled pairs, confidence filtering, diagnostics and preference exports.
@Suite struct JudgeTests {
    static let prompts = (0..<8).map { "Judge request \($0)" }

    func labels(_ f: RunFixture, _ output: String = "run") throws -> [(row: OutputRow, label: PairLabel)] {
        try JudgeStage.labels(stage: "labels", store: RunStore(directory: f.directory.appendingPathComponent(output), create: false))
    }

    @Test func positionBiasIsDetectedAndAveragedAway() throws {
        let f = try RunFixture(prompts: Self.prompts, stages: RunFixture.judgeStages("orders: both, principles: 2"))
        _ = try f.run(ScriptedBackend(judging: .prefersPositionA))
        let stored = try labels(f)
        #expect(stored.count == 8)
        for (_, label) in stored {
            #expect(label.probabilities.count == 2 && label.probabilities.allSatisfy { $0.count == 2 })
            #expect(abs(label.probability - 0.5) < 1e-9, "averaging both orders cancels a constant position preference")
        }
        let d = LabelDiagnostics(labels: stored)
        #expect(d.orderAgreement == 0)
        #expect(abs(d.firstPositionRate! - 0.8) < 1e-9)
        #expect(d.tieRate == 1)
        #expect(d.text.contains { $0.contains("position bias") })
        // With one order the same judge's labels carry its bias.
        let single = try RunFixture(prompts: Self.prompts, stages: RunFixture.judgeStages("orders: single"))
        _ = try single.run(ScriptedBackend(judging: .prefersPositionA))
        #expect(try labels(single).allSatisfy { abs($0.label.probability - 0.8) < 1e-9 })
        #expect(LabelDiagnostics(labels: try labels(single)).orderAgreement == nil)
    }

    /// Both layouts end in "The answer is: (", and the worked examples put the better answer at
    /// A, B, B, A (the shipped constitution's first four few-shot pairs).
    @Test func layoutsRenderTheDocumentedPrompt() throws {
        let c = try Constitution.load(path: repositoryRoot.appendingPathComponent("constitutions/harmless.yaml").path)
        for layout in JudgeLayout.allCases {
            let examples = JudgePrompts.examples(c, count: 4, preferences: [c.principles[0]], layout: layout)
            let answers = examples.components(separatedBy: "The answer is: (").dropFirst().map { $0.prefix(1) }
            #expect(answers == ["A", "B", "B", "A"])
            for (i, example) in c.fewShot.prefix(4).enumerated() {
                let better = answers[i] == "A" ? layout == .dialogue ? "Assistant (A): " : "(A) " : layout == .dialogue ? "Assistant (B): " : "(B) "
                #expect(examples.contains(better + example.revision))
            }
            let text = JudgePrompts.prompt(examples: examples, layout: layout, prompt: "Q?", preference: "Which is kinder?",
                                           a: "first", b: "second", rationale: nil)
            let expected = layout == .dialogue
                ? "Human: Q?\n\nAssistant (A): first\n\nAssistant (B): second\n\nQuestion: Which is kinder?\nThe answer is: ("
                : "Consider the following conversation between a human and an assistant:\nHuman: Q?\nWhich is kinder?\nOptions:\n(A) first\n(B) second\nThe answer is: ("
            #expect(text.hasSuffix("\n\n" + expected))
        }
        // The key is validated like every enum key.
        let f = try RunFixture(prompts: Self.prompts, stages: RunFixture.judgeStages("layout: table"))
        let r = try CLI.run(["validate", f.pipeline.path])
        #expect(r.status == 1 && r.stderr.contains("layout") && r.stderr.contains("dialogue"), "\(r.stderr)")
    }

    /// The evaluate stage's win-rate judge asks in the layout it is given (`judge_layout`,
    /// `precept eval --judge-layout`), in both orders, so a constant position preference cancels.
    @Test func winRateJudgeUsesTheGivenLayout() throws {
        let c = try Constitution.load(path: repositoryRoot.appendingPathComponent("constitutions/harmless.yaml").path)
        let dir = scratchURL("precept-eval-layout-\(UUID().uuidString)")
        for layout in JudgeLayout.allCases {
            let recorder = RecordingBackend(answer: [log(0.7), log(0.3)])
            let judge = CachedBackend(name: "judge", backend: recorder, cache: try CallCache(directory: dir.appendingPathComponent("\(layout)")))
            let evaluator = Evaluator(policy: judge, baseline: judge, judge: judge, constitution: c,
                                      sampling: SamplingSpec(temperature: 0, topP: 1, topK: 0, maxTokens: 8, stop: []),
                                      system: nil, seed: 1, batchSize: 4, judgeLayout: layout)
            let p = try evaluator.winProbabilities([EvaluationPrompt(id: "q", text: "Q?", falseClaim: nil)], policy: ["mine"], baseline: ["theirs"])
            #expect(p.count == 1 && abs(p[0] - 0.5) < 1e-9)
            #expect(recorder.prompts.count == 2)
            let (first, second) = layout == .dialogue
                ? ("Assistant (A): mine\n\nAssistant (B): theirs", "Assistant (A): theirs\n\nAssistant (B): mine")
                : ("(A) mine\n(B) theirs\nThe answer is: (", "(A) theirs\n(B) mine\nThe answer is: (")
            #expect(recorder.prompts.first?.contains(first) == true && recorder.prompts.last?.contains(second) == true)
            #expect(recorder.prompts.allSatisfy { $0.components(separatedBy: "The answer is: (").count == JudgePrompts.defaultFewShot + 2 })
        }
    }

    @Test func trlExportReadsBackFieldByField() throws {
        let f = try RunFixture(prompts: Self.prompts, stages: RunFixture.judgeStages("orders: both, principles: 2"))
        let summary = try f.run(ScriptedBackend())
        let stored = try labels(f)
        #expect(stored.allSatisfy { abs($0.label.probability - 0.9) < 1e-9 })
        let d = LabelDiagnostics(labels: stored)
        #expect(d.orderAgreement == 1 && d.revisionWinRate == 1 && abs(d.firstPositionRate! - 0.5) < 1e-9)
        let export = try #require(summary.exports.first)
        #expect(export.format == "trl" && export.train + export.test == 8 && export.skipped == 0)
        let rows = try f.rows()
        let chains = try RevisionChain.load(stage: "revisions", store: RunStore(directory: f.directory.appendingPathComponent("run"), create: false),
                                            constitution: try Constitution.load(path: f.constitution.path))
        for split in ["train", "test"] {
            let text = try String(contentsOf: URL(fileURLWithPath: export.directory).appendingPathComponent("\(split).jsonl"), encoding: .utf8)
            for line in text.split(separator: "\n") {
                let row = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                let record = row["record_id"] as! String
                let chain = try #require(chains.first { $0.record == record })
                let prompt = Self.prompts[Int(record.dropFirst())!]
                #expect(row["prompt"] as? [[String: String]] == [["role": "user", "content": prompt]])
                #expect(row["chosen"] as? [[String: String]] == [["role": "assistant", "content": chain.revision]])
                #expect(row["rejected"] as? [[String: String]] == [["role": "assistant", "content": chain.original]])
                #expect(row["messages"] as? [[String: String]] == [["role": "user", "content": prompt], ["role": "assistant", "content": chain.revision]])
                #expect(row["init_response"] as? String == chain.original && row["revision_response"] as? String == chain.revision)
                #expect(row["critic_response"] as? String == chain.critique && row["critic_prompt"] as? String == chain.critiqueRequest)
                #expect(abs((row["judge_probability"] as? Double ?? 0) - 0.9) < 1e-9)
                #expect(row["chosen_is"] as? String == "revision")
                let label = try #require(rows.first { $0.stage == "labels" && $0.record == record })
                #expect((row["principle"] as? String)?.split(separator: ",").count == 2)
                #expect(label.output == "0.9000")
            }
        }
    }

    @Test func openRLHFExportAndConfidenceFilter() throws {
        let f = try RunFixture(prompts: Self.prompts, stages: RunFixture.judgeStages("min_confidence: 0.3", export: "openrlhf"))
        let summary = try f.run(ScriptedBackend())
        let export = try #require(summary.exports.first)
        #expect(export.train + export.test == 8)
        let text = try String(contentsOf: URL(fileURLWithPath: export.directory).appendingPathComponent("train.jsonl"), encoding: .utf8)
        let row = try #require(try JSONSerialization.jsonObject(with: Data(text.split(separator: "\n")[0].utf8)) as? [String: Any])
        let chosen = try #require(row["chosen"] as? [[String: String]])
        #expect(chosen.count == 2 && chosen[0]["role"] == "user" && chosen[1]["role"] == "assistant")
        #expect(chosen[0]["content"] == row["prompt"] as? String)
        #expect((row["rejected"] as? [[String: String]])?[0] == chosen[0])
        // Above the label's distance from 0.5 (0.4), every pair is kept in the store but not exported.
        let strict = try RunFixture(prompts: Self.prompts, stages: RunFixture.judgeStages("min_confidence: 0.45", export: "openrlhf"))
        let filtered = try strict.run(ScriptedBackend())
        #expect(filtered.exports.first?.skipped == 8 && filtered.exports.first?.train == 0)
        #expect(try labels(strict).allSatisfy { $0.label.belowConfidence && $0.row.flags == "low-confidence" })
    }

    @Test func chainOfThoughtIsClampedAndKept() throws {
        let f = try RunFixture(prompts: Self.prompts, stages: RunFixture.judgeStages("cot: true, cot_clamp: [0.4, 0.6]"))
        _ = try f.run(ScriptedBackend())
        for (_, label) in try labels(f) {
            #expect(abs(label.probability - 0.6) < 1e-9)
            #expect(label.rationales?.first?.count == 2)
        }
        #expect(try f.rows().contains { $0.stage == "labels" && $0.input.contains("Let's think step by step:") })
    }

    @Test func sampledPairsCoverEveryPairOfSamples() throws {
        let stages = """
          - { id: responses, generate: { model: policy, samples: 3 } }
          - { id: labels, judge: { model: policy, input: responses, pairs: sampled, few_shot: 0 } }
        """
        let f = try RunFixture(prompts: Array(Self.prompts.prefix(3)), stages: stages)
        _ = try f.run(ScriptedBackend())
        let stored = try labels(f)
        #expect(stored.count == 9)
        #expect(Set(stored.map { "\($0.row.record)/\($0.row.sample)" }).count == 9)
        #expect(stored.allSatisfy { $0.row.candidateName(0)?.hasPrefix("sample") == true })
        #expect(LabelDiagnostics(labels: stored).revisionWinRate == nil)
    }

    @Test func labelsCommandPrintsTheDocumentedKeys() throws {
        let f = try RunFixture(prompts: Self.prompts, stages: RunFixture.judgeStages("orders: both"))
        _ = try f.run(ScriptedBackend())
        let r = try CLI.run(["labels", f.directory.appendingPathComponent("run").path, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        for key in ["pairs", "order_agreement", "first_position_rate", "tie_rate", "mean_length_chosen", "mean_length_rejected",
                    "revision_win_rate", "per_principle"] {
            #expect(object.keys.contains(key), "missing \(key)")
        }
        let text = try CLI.run(["labels", f.directory.appendingPathComponent("run").path])
        #expect(text.stdout.contains("order agreement: 1.00"))
        let diff = try CLI.run(["diff", f.directory.appendingPathComponent("run").path])
        #expect(diff.stdout.contains("Judge:     P(revision better) = 0.900"))
    }
}
