import Foundation
import Testing
import PipelineTestSupport
@testable import PipelineKit

/// `precept compare`: two runs of the same prompts, the second with an edited constitution and
/// a judge that no longer prefers revisions.
@Suite struct CompareTests {
    @Test func comparesTwoConstitutionVersions() throws {
        let prompts = (0..<6).map { "Judge request \($0)" } + ["<script>alert(1)</script> please"]
        let f = try RunFixture(prompts: prompts, stages: RunFixture.judgeStages("orders: both, principles: 2"))
        _ = try f.run(ScriptedBackend(judging: .prefersRevision), output: "a")
        // B: beta's revision request edited, gamma removed, delta added (its example too).
        let edited = RunFixture.constitutionText
            .replacingOccurrences(of: "revision: Fix beta problems.", with: "revision: Fix beta problems thoroughly.")
            .replacingOccurrences(of: "  - { id: gamma, critique: Find gamma problems., revision: Fix gamma problems., preference: Which is more gamma?, tags: [b] }\n",
                                  with: "  - { id: delta, critique: Find delta problems., revision: Fix delta problems., preference: Which is more delta?, tags: [b] }\n")
        try Data(edited.utf8).write(to: f.constitution)
        _ = try f.run(ScriptedBackend(judging: .prefersPositionA), output: "b")
        let runA = f.directory.appendingPathComponent("a"), runB = f.directory.appendingPathComponent("b")

        let html = f.directory.appendingPathComponent("compare.html")
        let result = try CLI.run(["compare", runA.path, runB.path, "--json", "--html", html.path])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(object["records_compared"] as? Int == 7)
        // A's judge prefers every revision; B's position-biased judge, averaged over both orders,
        // ties every pair (p = 0.5): every labelled pair flips, win rates 1 and 0.5.
        #expect(object["labelled_in_both"] as? Int == 7 && object["label_flips"] as? Int == 7, "\(object)")
        let rates = try #require(object["revision_win_rate"] as? [String: Double])
        #expect(rates["a"] == 1.0 && rates["b"] == 0.5, "\(rates)")
        let changed = try #require(object["constitution_changed"] as? [String: [String]])
        #expect(changed["added"] == ["delta"] && changed["removed"] == ["gamma"] && changed["edited"] == ["beta"], "\(changed)")
        let rows = try #require(object["per_principle"] as? [[String: Any]])
        #expect(Set(rows.compactMap { $0["id"] as? String }).isSubset(of: ["alpha", "beta", "gamma", "delta"]))
        for row in rows {
            for key in ["id", "n_a", "n_b", "win_rate_a", "win_rate_b", "ci_a", "ci_b"] { #expect(row[key] != nil, "\(key) in \(row)") }
            if (row["n_a"] as? Int ?? 0) > 0 {
                #expect(row["win_rate_a"] as? Double == 1.0 && row["ci_a"] as? [Double] == [1.0, 1.0], "\(row)")
            }
        }
        #expect(rows.reduce(0) { $0 + ($1["n_a"] as? Int ?? 0) } == 7 && rows.reduce(0) { $0 + ($1["n_b"] as? Int ?? 0) } == 7)

        let page = try String(contentsOf: html, encoding: .utf8)
        #expect(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !page.contains("<script>alert"), "model and prompt text stays text")
        #expect(page.contains("<span class=\"add\">+   - { id: delta"), "the constitution diff shows the added principle")

        let text = try CLI.run(["compare", runA.path, runB.path])
        #expect(text.status == 0 && text.stdout.contains("label flips: 7") && text.stdout.contains("edited beta"), "\(text.stdout)")
        #expect(text.stdout.contains("+   - { id: delta") && text.stdout.contains("-   - { id: gamma"), "\(text.stdout)")
    }

    @Test func runsOfOtherPromptsAreAnError() throws {
        let f = try RunFixture(prompts: ["one", "two"], stages: RunFixture.slcai)
        _ = try f.run(ScriptedBackend(), output: "a")
        let g = try RunFixture(prompts: ["three"], stages: RunFixture.slcai)
        let text = try String(contentsOf: g.directory.appendingPathComponent("prompts.jsonl"), encoding: .utf8)
        try Data(text.replacingOccurrences(of: "\"r0\"", with: "\"other\"").utf8).write(to: g.directory.appendingPathComponent("prompts.jsonl"))
        _ = try g.run(ScriptedBackend(), output: "b")
        let result = try CLI.run(["compare", f.directory.appendingPathComponent("a").path, g.directory.appendingPathComponent("b").path])
        #expect(result.status == 1 && result.stderr.contains("the runs share no record"), "\(result.stderr)")
    }

    @Test func bootstrapAndLineDiffOnHandWorkedData() {
        #expect(RunComparison.bootstrap([1, 1, 1], resamples: 200) == [1, 1])
        let half = RunComparison.bootstrap((0..<100).map { Double($0 % 2) }, resamples: 2000)!
        // Binomial(100, 0.5): standard error 0.05, so the interval is about 0.40 … 0.60.
        #expect(abs(half[0] - 0.40) < 0.03 && abs(half[1] - 0.60) < 0.03, "\(half)")
        #expect(RunComparison.bootstrap([], resamples: 10) == nil)
        #expect(RunComparison.bootstrap([0, 1, 1, 0.5], resamples: 500) == RunComparison.bootstrap([0, 1, 1, 0.5], resamples: 500),
                "the same values give the same interval")
        // Identical probabilities 2e-5 apart around 0.5 are a tie in both runs, not a flip.
        let tie = RunComparison.RecordPair(record: "r", sample: 0, prompt: "", principleA: nil, principleB: nil, revisionA: "x",
                                           revisionB: "x", probabilityA: 0.49999, probabilityB: 0.50001)
        #expect(!tie.flipped)

        let lines = LineDiff.diff("a\nb\nc\nd", "a\nc\nd\ne")
        #expect(lines == [.same("a"), .removed("b"), .same("c"), .same("d"), .added("e")])
        #expect(LineDiff.unified(lines, context: 0) == ["- b", "…", "+ e"])
        #expect(LineDiff.unified(LineDiff.diff("x\ny", "x\ny")).isEmpty)
    }
}
