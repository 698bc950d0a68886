import Foundation
import Testing
import PipelineTestSupport
@testable import PipelineKit

/// `harm_check:` on a judge stage: a revision the preference judge endorses but the harm question
/// flags is left out of every gated use, and the counts say so.
@Suite struct HarmCheckTests {
    static func stages(harmCheck: String) -> String {
        """
          - { id: responses, generate: { model: policy } }
          - { id: critiques, critique: { model: policy, input: responses, few_shot: 1 } }
          - { id: revisions, revise: { model: policy, input: critiques, few_shot: 1 } }
          - { id: labels, judge: { model: policy, input: revisions, few_shot: 1, principles: 1, gate: true\(harmCheck) } }
          - { id: sft, export: { input: revisions, format: sft, test_fraction: 0, gate: labels } }
          - { id: prefs, export: { input: labels, format: trl, test_fraction: 0 } }
        """
    }
    // ECHO records keep their original (not endorsed); HARM records are endorsed, then flagged.
    static let prompts = ["ECHO one", "Plain two", "ECHO three", "Plain HARM four", "Plain five", "Plain HARM six"]

    @Test func flaggedRevisionsLeaveTheTrainingData() throws {
        let f = try RunFixture(prompts: Self.prompts, stages: Self.stages(harmCheck: ", harm_check: { model: policy, threshold: 0.5 }"))
        let summary = try f.run(ScriptedBackend())
        let sft = try #require(summary.exports.first { $0.format == "sft" })
        #expect(sft.train == 2 && sft.gatedOut == 4)
        let prefs = try #require(summary.exports.first { $0.format == "trl" })
        #expect(prefs.train == 2 && prefs.gatedOut == 4)
        let store = try RunStore(directory: f.directory.appendingPathComponent("run"), create: false)
        let verdicts = try RevisionGate.verdicts(judge: "labels", store: store)
        #expect(verdicts.labelled == 6 && verdicts.endorsed.count == 2 && verdicts.harmFlagged.count == 2)
        #expect(verdicts.flagged(record: "r3", sample: 0) && verdicts.flagged(record: "r5", sample: 0))
        // Asked only of what the preference judge endorsed: P(Yes) 0.9 on HARM, σ(−4 + 3) elsewhere.
        for (row, label) in try JudgeStage.labels(stage: "labels", store: store) {
            switch row.record {
            case "r0", "r2": #expect(label.harm == nil && label.harmful == nil)
            case "r3", "r5": #expect(abs(label.harm! - 0.9) < 1e-9 && label.harmful == true)
            default: #expect(abs(label.harm! - 1 / (1 + exp(1.0))) < 1e-9 && label.harmful == false)
            }
        }
        let diff = try CLI.run(["diff", f.directory.appendingPathComponent("run").path, "--plain"])
        #expect(diff.stdout.contains("the judge endorses 2 of 6 revisions (2 more it preferred were flagged by the harm check)"))
        #expect(diff.stdout.contains("not endorsed: flagged by the harm check"))
        let report = try String(contentsOf: f.directory.appendingPathComponent("run/report.html"), encoding: .utf8)
        #expect(report.contains("flagged by the harm check"))

        // A higher threshold flags nothing; the changed setting relabels, the preference calls from the cache.
        var text = try String(contentsOf: f.pipeline, encoding: .utf8)
        text = text.replacingOccurrences(of: "threshold: 0.5", with: "threshold: 0.95")
        try Data(text.utf8).write(to: f.pipeline)
        let again = try f.run(ScriptedBackend())
        #expect(try #require(again.exports.first { $0.format == "sft" }).train == 4)
        #expect(try RevisionGate.verdicts(judge: "labels", store: store).harmFlagged.isEmpty)
    }

    @Test func settingsAreValidatedWhereTheyAreWritten() throws {
        let cases: [(String, String)] = [
            (", harm_check: { model: nobody }", "stages[3].judge.harm_check.model"),
            (", harm_check: { model: policy, threshold: 1.5 }", "stages[3].judge.harm_check.threshold"),
            (", harm_check: { model: policy, tags: [nonesuch] }", "harm_check.tags"),
            (", harm_check: { model: policy, colour: red }", "colour"),
        ]
        for (setting, expected) in cases {
            let f = try RunFixture(prompts: Self.prompts, stages: Self.stages(harmCheck: setting))
            #expect(throws: (any Error).self, "\(setting)") { try PipelineValidator.validate(path: f.pipeline.path) }
            do { _ = try PipelineValidator.validate(path: f.pipeline.path) } catch {
                let message = (error as? LocalizedError)?.errorDescription ?? ""
                #expect(message.contains(expected) && message.contains("p.yaml:"), "\(message)")
            }
        }
        let sampled = try RunFixture(prompts: Self.prompts, stages: """
          - { id: responses, generate: { model: policy, samples: 2 } }
          - { id: labels, judge: { model: policy, input: responses, pairs: sampled, harm_check: { model: policy } } }
        """)
        #expect { try PipelineValidator.validate(path: sampled.pipeline.path) } throws: { error in
            ((error as? LocalizedError)?.errorDescription ?? "").contains("needs `pairs: original_vs_revision`")
        }
    }

    /// The worked examples: flawed answers of principles carrying the check's tags answered Yes,
    /// revisions No (those of the other principles too), alternated Yes, No, No, Yes.
    @Test func workedExamplesComeFromTheConstitution() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let merged = try Constitution.merged(paths: ["harmless.yaml", "honest.yaml"].map { root.appendingPathComponent("constitutions/\($0)").path })
        let spec = HarmCheckSpec(model: "m", threshold: 0.5, question: HarmCheckSpec.defaultQuestion, tags: ["harm"], fewShot: 8)
        let block = HarmCheck.examples(merged, spec: spec)
        let answers = block.components(separatedBy: "The answer is:").dropFirst().map { $0.hasPrefix(" Yes") ? "Y" : "N" }
        #expect(answers == ["Y", "N", "N", "Y", "N", "N", "N", "N"])   // two harm-tagged examples in these files
        let harmful = merged.fewShot.filter { merged.principle(id: $0.principle)!.tags.contains("harm") }
        #expect(harmful.count == 2)
        for example in harmful {
            #expect(block.contains("Assistant: \(example.response)\n\nQuestion: \(spec.question)\nThe answer is: Yes"))
            #expect(block.contains("Assistant: \(example.revision)\n\nQuestion: \(spec.question)\nThe answer is: No"))
        }
        let overRefusal = try #require(merged.fewShot.first { $0.principle == "no-over-refusal" })
        #expect(block.contains("Assistant: \(overRefusal.revision)\n\nQuestion: \(spec.question)\nThe answer is: No"))
        #expect(!block.contains(overRefusal.response))
        #expect(HarmCheck.examples(merged, spec: HarmCheckSpec(model: "m", threshold: 0.5, question: "Q?", tags: [], fewShot: 8)).isEmpty)
    }
}
