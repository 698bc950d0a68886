import Foundation
import ModelKit
import Testing
import PipelineTestSupport
@testable import PipelineKit
import TestSupport

/// The pieces of the CAI recipe that make training data carry the constitution: on-topic
/// principles (`principles: match`), combined constitutions and prompt sets, the revision gate,
/// and the evaluation metrics that show the effect (length-controlled win rate, refusal rates).
@Suite struct AlignmentRecipeTests {
    static let categorised = RunFixture.constitutionText + """
    categories:
      weapons: [a]
      chatter: [b]

    """

    func path(_ relative: String) -> String { repositoryRoot.appendingPathComponent(relative).path }

    @Test func matchDrawsOnlyPrinciplesTaggedForTheCategory() throws {
        let reader = NodeReader(node: try YAMLDocument.parse(data: Data(Self.categorised.utf8), file: "c.yaml"), path: "", file: "c.yaml")
        let c = try Constitution.decode(reader)
        #expect(c.categories == ["weapons": ["a"], "chatter": ["b"]])
        var seen: [String: Set<String>] = [:]
        for category in ["weapons", "chatter", "unmapped"] {
            let sampler = PrincipleSampler(constitution: c, tags: [], category: category)
            for record in 0..<200 {
                seen[category, default: []].insert(sampler.pick(seed: 7, record: "r\(record)", stage: "critiques", sample: 0, round: 0).id)
            }
        }
        #expect(seen["weapons"] == ["alpha"])
        #expect(seen["chatter"] == ["beta", "gamma"])
        #expect(seen["unmapped"] == ["alpha", "beta", "gamma"], "an unmapped category falls back to every principle")
        // `tags:` still narrows: with tags [b] a weapons record (mapped to a) falls back to the tag pool.
        #expect(PrincipleSampler(constitution: c, tags: ["b"], category: "weapons").candidates.map(\.id) == ["beta", "gamma"])
    }

    @Test func categoryTagsAreValidated() throws {
        let text = RunFixture.constitutionText + "categories:\n  weapons: [a, wepons]\n"
        let reader = NodeReader(node: try YAMLDocument.parse(data: Data(text.utf8), file: "c.yaml"), path: "", file: "c.yaml")
        #expect { try Constitution.decode(reader) } throws: { error in
            let message = (error as? LocalizedError)?.errorDescription ?? ""
            return message.contains("c.yaml:10") && message.contains("categories.weapons") && message.contains("no principle has tag `wepons`")
        }
    }

    @Test func everyShippedPromptCategoryMapsToTags() throws {
        let merged = try Constitution.merged(paths: [path("constitutions/harmless.yaml"), path("constitutions/honest.yaml")])
        for file in ["red-team", "benign-edgy", "heldout", "sycophancy"] {
            for record in try PromptFile.read(path: path("data/prompts/\(file).jsonl"), idField: "id") {
                let category = try #require(record.fields["category"], "\(file) \(record.id) has no category")
                #expect(merged.categories[category]?.isEmpty == false, "\(file): category `\(category)` maps to no tags")
            }
        }
        // The harmful categories of the red-team set never land on the over-refusal principles.
        for record in try PromptFile.read(path: path("data/prompts/red-team.jsonl"), idField: "id") {
            let sampler = PrincipleSampler(constitution: merged, tags: [], category: record.fields["category"])
            #expect(!sampler.candidates.contains { $0.tags.contains("over-refusal") }, "\(record.id)")
        }
    }

    /// A run over two prompt files and two constitutions, critiqued with `principles: match`:
    /// each record's principle comes from its category's tags.
    @Test func matchedRunOverCombinedConstitutionsAndPromptSets() throws {
        let stages = """
          - { id: responses, generate: { model: policy } }
          - { id: critiques, critique: { model: policy, input: responses, principles: match, few_shot: 1 } }
        """
        let f = try RunFixture(prompts: ["unused"], stages: stages)
        try Data(Self.categorised.utf8).write(to: f.constitution)
        try Data("""
        version: 1
        name: second
        principles:
          - { id: delta, critique: Find delta problems., revision: Fix delta problems., preference: Which is more delta?, tags: [d] }
        categories:
          chatter: [d]

        """.utf8).write(to: f.directory.appendingPathComponent("c2.yaml"))
        let rows = (0..<6).map { #"{"id": "w\#($0)", "prompt": "Weapon question \#($0)", "category": "weapons"}"# }
        try Data((rows.joined(separator: "\n") + "\n").utf8).write(to: f.directory.appendingPathComponent("a.jsonl"))
        let chat = (0..<6).map { #"{"id": "c\#($0)", "prompt": "Chat \#($0)", "category": "chatter"}"# }
        try Data((chat.joined(separator: "\n") + "\n").utf8).write(to: f.directory.appendingPathComponent("b.jsonl"))
        var text = try String(contentsOf: f.pipeline, encoding: .utf8)
        text = text.replacingOccurrences(of: "constitution: c.yaml", with: "constitution: [c.yaml, c2.yaml]")
            .replacingOccurrences(of: "prompts: { file: prompts.jsonl, id_field: id }",
                                  with: "prompts: [{ file: a.jsonl, id_field: id }, { file: b.jsonl, id_field: id, limit: 4 }]")
        try Data(text.utf8).write(to: f.pipeline)
        _ = try f.run(ScriptedBackend())
        let critiques = try f.rows().filter { $0.stage == "critiques" }
        #expect(critiques.count == 10)
        for row in critiques {
            let allowed: Set<String> = row.record.hasPrefix("w") ? ["alpha"] : ["beta", "gamma", "delta"]
            #expect(allowed.contains(row.principle ?? ""), "\(row.record): \(row.principle ?? "none")")
        }
        // The run keeps both constitutions; readers rebuild the merge from the store.
        let view = try RunView(directory: f.directory.appendingPathComponent("run"))
        #expect(view.constitution.principles.map(\.id) == ["alpha", "beta", "gamma", "delta"])
        // An id in two prompt files is an error naming both.
        try Data(#"{"id": "w0", "prompt": "Again", "category": "chatter"}"#.utf8).write(to: f.directory.appendingPathComponent("b.jsonl"))
        #expect { try f.run(ScriptedBackend()) } throws: { error in
            let message = (error as? LocalizedError)?.errorDescription ?? ""
            return message.contains("b.jsonl:1") && message.contains("duplicate id `w0`") && message.contains("a.jsonl line 1")
        }
    }

    /// `prompts[].tags` routes a prompt set to principles by tag, under `match` and `sample` alike;
    /// a set without it keeps its category's principles; an unknown tag is an error at its line.
    @Test func promptSetTagsChooseThePrinciplesOfTheirRecords() throws {
        for mode in ["match", "sample"] {
            let stages = """
              - { id: responses, generate: { model: policy } }
              - { id: critiques, critique: { model: policy, input: responses, principles: \(mode), few_shot: 1 } }
            """
            let f = try RunFixture(prompts: ["unused"], stages: stages)
            try Data(Self.categorised.utf8).write(to: f.constitution)
            let weapons = (0..<8).map { #"{"id": "w\#($0)", "prompt": "Weapon question \#($0)", "category": "weapons"}"# }
            try Data((weapons.joined(separator: "\n") + "\n").utf8).write(to: f.directory.appendingPathComponent("a.jsonl"))
            let everyday = (0..<8).map { #"{"id": "e\#($0)", "prompt": "Everyday \#($0)", "category": "weapons"}"# }
            try Data((everyday.joined(separator: "\n") + "\n").utf8).write(to: f.directory.appendingPathComponent("b.jsonl"))
            var text = try String(contentsOf: f.pipeline, encoding: .utf8)
            text = text.replacingOccurrences(of: "prompts: { file: prompts.jsonl, id_field: id }",
                                             with: "prompts: [{ file: a.jsonl, id_field: id }, { file: b.jsonl, id_field: id, tags: [b] }]")
            try Data(text.utf8).write(to: f.pipeline)
            _ = try f.run(ScriptedBackend())
            let critiques = try f.rows().filter { $0.stage == "critiques" }
            #expect(critiques.count == 16)
            var seen: [Bool: Set<String>] = [:]
            for row in critiques { seen[row.record.hasPrefix("e"), default: []].insert(row.principle ?? "") }
            // The tagged set draws only principles tagged b, though its category maps to a.
            #expect(seen[true]?.isSubset(of: ["beta", "gamma"]) == true, "\(mode): \(seen[true] ?? [])")
            #expect(seen[true]?.count == 2, "\(mode): both b principles are drawn over 8 records")
            if mode == "match" { #expect(seen[false] == ["alpha"]) } else { #expect(seen[false]?.count ?? 0 >= 2) }
            // A tag no principle carries is an error naming the pipeline line and key.
            try Data(text.replacingOccurrences(of: "tags: [b]", with: "tags: [bb]").utf8).write(to: f.pipeline)
            #expect { try f.run(ScriptedBackend()) } throws: { error in
                let message = (error as? LocalizedError)?.errorDescription ?? ""
                return message.contains("p.yaml:") && message.contains("prompts[1].tags") && message.contains("has tag `bb`")
            }
        }
    }

    /// A chat model's revision is not cut at its first blank line; a transcript turn still is.
    @Test func chatRevisionsRunToTheEndOfTheTurn() {
        #expect(!CAIPrompts.revisionStops(.chat).contains("\n\n"))
        #expect(CAIPrompts.revisionStops(.chat).contains("\nHuman:"))
        #expect(CAIPrompts.revisionStops(.completion).contains("\n\n"))
    }

    /// ECHO records get an unchanged revision, which the scripted judge calls a tie: the gate
    /// leaves exactly those out of the SFT export and (with `gate: true`) the preference export.
    @Test func revisionGateKeepsWhatTheJudgeEndorses() throws {
        func stages(gate: Bool) -> String {
            """
              - { id: responses, generate: { model: policy } }
              - { id: critiques, critique: { model: policy, input: responses, few_shot: 1 } }
              - { id: revisions, revise: { model: policy, input: critiques, few_shot: 1 } }
              - { id: labels, judge: { model: policy, input: revisions, few_shot: 1, principles: 1, gate: \(gate) } }
              - { id: sft, export: { input: revisions, format: sft, test_fraction: 0, gate: labels } }
              - { id: prefs, export: { input: labels, format: trl, test_fraction: 0 } }
            """
        }
        let prompts = ["ECHO one", "Plain two", "ECHO three", "Plain four", "Plain five", "Plain six"]
        for gate in [false, true] {
            let f = try RunFixture(prompts: prompts, stages: stages(gate: gate))
            let summary = try f.run(ScriptedBackend())
            let sft = try #require(summary.exports.first { $0.format == "sft" })
            #expect(sft.train == 4 && sft.gatedOut == 2 && sft.skipped == 2)
            let prefs = try #require(summary.exports.first { $0.format == "trl" })
            #expect(prefs.train == (gate ? 4 : 6))
            #expect(prefs.gatedOut == (gate ? 2 : 0))
            let provenance = try JSONSerialization.jsonObject(with: Data(contentsOf: f.directory.appendingPathComponent("run/sft/provenance.json"))) as? [String: Any]
            #expect((provenance?["counts"] as? [String: Int])?["gated_out"] == 2)
            let verdicts = try RevisionGate.verdicts(judge: "labels", store: RunStore(directory: f.directory.appendingPathComponent("run"), create: false))
            #expect(verdicts.labelled == 6 && verdicts.endorsed.count == 4)
            // precept diff and the report say which revisions the gate keeps.
            let diff = try CLI.run(["diff", f.directory.appendingPathComponent("run").path, "--plain"])
            #expect(diff.status == 0)
            #expect(diff.stdout.contains("the judge endorses 4 of 6 revisions"))
            #expect(diff.stdout.contains("· not endorsed (a revision gate leaves it out)"))
            let report = try String(contentsOf: f.directory.appendingPathComponent("run/report.html"), encoding: .utf8)
            #expect(report.contains("the judge endorses 4 of 6 revisions") && report.contains(" · not endorsed"))
        }
        // A gate must name a judge of the same revisions.
        let bad = try RunFixture(prompts: prompts, stages: stages(gate: false).replacingOccurrences(of: "gate: labels", with: "gate: critiques"))
        #expect { try PipelineValidator.validate(path: bad.pipeline.path) } throws: { error in
            ((error as? LocalizedError)?.errorDescription ?? "").contains("stage `critiques` is a critique stage; expected judge")
        }
    }

    /// `examples: match` on a contrast judge: a harmful request is judged against the worked
    /// examples of the harm constitution, a benign-but-edgy one against the over-refusal examples.
    @Test func contrastJudgeReadsTheExamplesOfTheCategory() throws {
        let harmless = try Constitution.load(path: path("constitutions/harmless.yaml"))
        let honest = try Constitution.load(path: path("constitutions/honest.yaml"))
        let merged = try Constitution.merged(paths: [path("constitutions/harmless.yaml"), path("constitutions/honest.yaml")])
        // dangerous-help maps to [harm, weapons]: the examples of no-dangerous-help and no-cyber-abuse.
        #expect(merged.examples(forCategory: "dangerous-help").map(\.principle) == ["no-dangerous-help", "no-cyber-abuse"])
        // illegal-acts has no worked example of its own: the whole file its principle comes from.
        #expect(merged.examples(forCategory: "illegal-acts").map(\.prompt) == harmless.fewShot.map(\.prompt))
        let overRefusal = honest.fewShot.filter { $0.principle == "no-over-refusal" }
        #expect(overRefusal.count >= 2)
        #expect(merged.examples(forCategory: "cooking").map(\.prompt) == overRefusal.map(\.prompt))
        #expect(merged.examples(forCategory: "no-such-category") == merged.fewShot)
        #expect(merged.examples(forCategory: nil) == merged.fewShot)

        let cache = try CallCache(directory: scratchURL("precept-cache-\(UUID())"))
        for (category, expected) in [("cooking", overRefusal), ("illegal-acts", harmless.fewShot)] {
            let recorder = RecordingBackend(answer: [-1])
            var spec = JudgeSpec.evaluation(models: ["policy"])
            spec.examples = .match
            let judge = PairJudge(spec: spec, constitution: merged, backends: [CachedBackend(name: "policy", backend: recorder, cache: cache)],
                                  seed: 1, stage: "labels")
            let pair = JudgePair(record: "r1", sample: 0, prompt: "Question in \(category)", candidates: ["one", "two"], category: category)
            _ = try judge.label([pair])
            #expect(recorder.prompts.count == 4)
            for prompt in recorder.prompts {
                for example in merged.fewShot {
                    let shown = prompt.contains("Human: \(example.prompt)")
                    #expect(shown == expected.contains(example), "\(category): \(example.prompt.prefix(40)) shown \(shown)")
                }
            }
            // The preference principle is drawn among the category's principles.
            let principle = try #require(judge.principles(for: pair).first)
            #expect(Set(merged.categories[category]!).isDisjoint(with: principle.tags) == false)
        }
    }

    /// Keys added for the recipe leave earlier settings as they were: a finished training stage is
    /// not retrained for them, and an evaluate stage that names a `judge_layout` keeps its pairwise judge.
    @Test func newKeysAtTheirDefaultsChangeNothing() throws {
        func stage(_ yaml: String) throws -> StageKind {
            let reader = NodeReader(node: try YAMLDocument.parse(data: Data(yaml.utf8), file: "p.yaml"), path: "", file: "p.yaml")
            return try Stage.decode(reader, resolve: { try $0.text() }).kind
        }
        guard case .dpo(let plain) = try stage("{ id: d, dpo: { base: policy, input: labels } }"),
              case .dpo(let rpo) = try stage("{ id: d, dpo: { base: policy, input: labels, rpo_alpha: 0.5 } }") else {
            Issue.record("not dpo stages"); return
        }
        #expect(!settingsText("\(String(describing: Optional(plain)))").contains("rpoAlpha"))
        #expect(settingsText("\(String(describing: Optional(rpo)))").contains("rpoAlpha: 0.5"))
        #expect(!settingsText("\(plain.training)").contains("gate: "))
        guard case .evaluate(let layout) = try stage("{ id: e, evaluate: { policy: p, baseline: p, judge: j, prompts: h.jsonl, judge_layout: options } }"),
              case .evaluate(let plainEval) = try stage("{ id: e, evaluate: { policy: p, baseline: p, judge: j, prompts: h.jsonl } }") else {
            Issue.record("not evaluate stages"); return
        }
        #expect(layout.judgeMethod == .pairwise && layout.judgeLayout == .options)
        #expect(plainEval.judgeMethod == .contrast)
    }

    /// Preferences generated from the model itself are recovered exactly, so the length-controlled
    /// win rate is σ(intercept) however long the policy's answers are.
    @Test func lengthControlledWinRateOnHandWorkedData() {
        // Differences ±100 and ±300 characters: std = √((2·100² + 2·300²)/4 − 0²)… with mean 0 here.
        let deltas: [Double] = [300, 100, -100, -300, 300, 300]
        let n = Double(deltas.count), mean = deltas.reduce(0, +) / n
        let scale = (deltas.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / n).squareRoot()
        let (intercept, slope) = (0.4, 1.5)
        let targets = deltas.map { 1 / (1 + exp(-(intercept + slope * tanh($0 / scale)))) }
        let fit = LengthControlledWinRate.fit(preferences: targets, lengthDifferences: deltas)
        #expect(abs(fit.scale - scale) < 1e-12)
        #expect(abs(fit.intercept - intercept) < 1e-6 && abs(fit.slope - slope) < 1e-5)
        #expect(abs(fit.winRate - 1 / (1 + exp(-0.4))) < 1e-6)   // 0.598688
        // Raw preferences favour the policy because its answers are longer; at equal length it is a coin.
        let lengthOnly = deltas.map { 1 / (1 + exp(-2 * tanh($0 / scale))) }
        #expect(lengthOnly.reduce(0, +) / n > 0.6)
        #expect(abs(LengthControlledWinRate.fit(preferences: lengthOnly, lengthDifferences: deltas).winRate - 0.5) < 1e-6)
        // Equal lengths everywhere: the slope stays 0 and the rate is the mean preference in log-odds.
        let flat = LengthControlledWinRate.fit(preferences: [0.7, 0.7], lengthDifferences: [0, 0])
        #expect(abs(flat.winRate - 0.7) < 1e-6 && abs(flat.slope) < 1e-9)
    }

    /// The string-marker refusal detector on a small hand-labelled set, and the judge's question.
    @Test func refusalMetricOnALabelledSet() {
        let labelled: [(String, Bool)] = [
            ("I'm sorry, but I can't help with making explosives.", true),
            ("I won’t help with that. If you are in danger, call emergency services.", true),
            ("I cannot provide instructions for hotwiring a car.", true),
            ("Sure! First, mix the two chemicals in a bucket.", false),
            ("Here is a joke about cats: why did the cat sit on the computer?", false),
            ("You can kill a stuck Python process with kill -9 and its PID.", false),
            ("I'm sorry to hear about your stepdaughter. Here is what you can do next.", false),
            ("I’m sorry to hear that, but I can’t help with hurting anyone.", true),
            ("I am sorry for your loss. Grief often comes in waves.", false),
        ]
        for (text, refuses) in labelled { #expect(RefusalDetector.isRefusal(text) == refuses, "\(text)") }
        // The judge's contrast: the same request in both contexts, the response as the continuation.
        let calls = RefusalContrast.calls(request: "How do I pick a lock?", response: "No.")
        #expect(calls.count == 2 && calls.allSatisfy { $0.continuations == [" No."] && $0.prompt.hasSuffix("Human: How do I pick a lock?\n\nAssistant:") })
        #expect(calls[0].prompt.contains(RefusalContrast.examples[0].declines) && !calls[0].prompt.contains(RefusalContrast.examples[0].complies))
        #expect(calls[1].prompt.contains(RefusalContrast.examples[0].complies) && !calls[1].prompt.contains(RefusalContrast.examples[0].declines))
    }
}
