import Foundation
import Testing
import PipelineTestSupport
@testable import PipelineKit

/// Human labels imported into a run replace the judge's labels in exports, edit SFT data, and
/// are measured against the judge (issue 17, item 2).
@Suite struct HumanLabelTests {
    static let stages = RunFixture.judgeStages("orders: both, principles: 2") + """

      - { id: sft, export: { input: revisions, format: sft, test_fraction: 0 } }
    """

    func lines(_ url: URL) throws -> [[String: Any]] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    @Test func humanVerdictsAndEditsFlowIntoExportsAndAgreement() throws {
        let f = try RunFixture(prompts: (0..<6).map { "Judge request \($0)" }, stages: Self.stages)
        _ = try f.run(ScriptedBackend(judging: .prefersRevision))
        let run = f.directory.appendingPathComponent("run")
        let store = try RunStore(directory: run, create: false)
        let originals = Dictionary(uniqueKeysWithValues: try store.outputs(stage: "responses").map { ($0.record, $0.output) })

        let file = f.directory.appendingPathComponent("human.jsonl")
        try Data("""
            {"record": "r0", "verdict": "original", "reviewer": "ana"}
            {"record": "r1", "verdict": "tie"}
            {"record": "r2", "verdict": "revision", "edited_revision": "Human-written answer.", "note": "clearer"}
            {"record": "r3", "note": "looked fine"}
            {"record": "r4", "stage": "revisions", "verdict": "reject"}
            {"record": "r5", "stage": "revisions", "verdict": "reject"}
            {"record": "r5", "verdict": "revision"}
            {"record": "r0", "note": "second look"}

            """.utf8).write(to: file)
        let imported = try CLI.run(["review", run.path, "--import", file.path, "--reviewer", "bo"])
        #expect(imported.status == 0 && imported.stdout.contains("imported 8 human labels (6 verdicts, 1 edited revisions)"), "\(imported.stdout)\(imported.stderr)")

        // The judge preferred every revision; the humans agree on r2 only: accuracy 1/3, and
        // with every judge verdict the same, κ = (1/3 − 1/3) / (1 − 1/3) = 0.
        let labels = try CLI.run(["labels", run.path, "--json"])
        let agreement = try #require((try JSONSerialization.jsonObject(with: Data(labels.stdout.utf8)) as? [String: Any])?["human_agreement"] as? [String: Any])
        // Reviewed pairs: r0 (original; the later note keeps the verdict), r1 (tie), r2 and r5
        // (revision; r5's pair verdict comes before its revise-stage reject), r4 (reject on the
        // revise stage). The judge preferred every revision: 2 of 5 agree, and with one judge
        // verdict throughout κ = (p_o − p_e) / (1 − p_e) = (0.4 − 0.4) / 0.6 = 0.
        #expect(agreement["pairs"] as? Int == 5)
        #expect(abs((agreement["accuracy"] as? Double ?? 0) - 0.4) < 1e-9 && abs(agreement["kappa"] as? Double ?? 1) < 1e-9, "\(agreement)")
        #expect(agreement["confusion"] as? [[Int]] == [[2, 2, 1], [0, 0, 0], [0, 0, 0]], "\(agreement)")

        let trl = f.directory.appendingPathComponent("trl")
        #expect(try CLI.run(["export", run.path, "--format", "trl", "--out", trl.path, "--test-fraction", "0"]).status == 0)
        let pairs = try lines(trl.appendingPathComponent("train.jsonl"))
        func chosen(_ record: String) -> String? {
            (pairs.first { $0["record_id"] as? String == record }?["chosen"] as? [[String: String]])?.first?["content"]
        }
        #expect(chosen("r0") == originals["r0"], "the human preferred the original")
        #expect(chosen("r1") == nil, "a human tie leaves the pair out, as a near-tie does")
        #expect(chosen("r2") == "Human-written answer.", "the edited revision is the chosen side")
        #expect(chosen("r4") == originals["r4"], "a rejected revision loses its pair")
        #expect(chosen("r3") != nil && chosen("r3") != originals["r3"], "a note alone leaves the judge's label")
        #expect(chosen("r5") != nil && chosen("r5") != originals["r5"], "the pair verdict comes first, in exports as in SFT")
        #expect(pairs.first { $0["record_id"] as? String == "r2" }?["revision_response"] as? String == "Human-written answer.")
        let provenance = try JSONSerialization.jsonObject(with: Data(contentsOf: trl.appendingPathComponent("provenance.json"))) as? [String: Any]
        #expect(provenance?["label_sources"] as? [String: Int] == ["human": 5, "judge": 1], "\(String(describing: provenance?["label_sources"]))")

        let sft = f.directory.appendingPathComponent("sft")
        #expect(try CLI.run(["export", run.path, "--format", "sft", "--out", sft.path, "--test-fraction", "0"]).status == 0)
        let rows = try lines(sft.appendingPathComponent("train.jsonl"))
        #expect(rows.count == 4, "r0 and r4 were rejected by a human")
        #expect(rows.contains { $0["revision_response"] as? String == "Human-written answer." })
        let sftProvenance = try JSONSerialization.jsonObject(with: Data(contentsOf: sft.appendingPathComponent("provenance.json"))) as? [String: Any]
        #expect(sftProvenance?["human_labels"] as? [String: Int] == ["rejected": 2, "edited": 1, "stale": 0])
        #expect(!rows.contains { $0["init_prompt"] as? String == "Judge request 0" || $0["init_prompt"] as? String == "Judge request 4" })

        // Written back out as a pairs file `precept judge` reads.
        let out = f.directory.appendingPathComponent("labels-out.jsonl")
        #expect(try CLI.run(["review", run.path, "--export-labels", out.path]).status == 0)
        let exported = try lines(out)
        #expect(exported.count == 7, "one label in force per stage, record and sample")
        let r0 = try #require(exported.first { $0["record"] as? String == "r0" })
        #expect(r0["better"] as? String == "b" && r0["response_b"] as? String == originals["r0"] && r0["reviewer"] as? String == "bo", "reviewer and time of the newest row")
        let r2 = try #require(exported.first { $0["record"] as? String == "r2" })
        #expect(r2["better"] as? String == "a" && r2["response_a"] as? String == "Human-written answer." && r2["note"] as? String == "clearer")
        #expect(exported.first { $0["record"] as? String == "r1" }?["better"] == nil)
        #expect(exported.first { $0["record"] as? String == "r1" }?["reviewer"] as? String == "bo")

        // precept diff shows the human verdicts and the edited text.
        let diff = try CLI.run(["diff", run.path, "--plain"])
        #expect(diff.stdout.contains("Human:     original preferred (left out of SFT data)"), "\(diff.stdout)")
        #expect(diff.stdout.contains("Human:     revision accepted · revision edited (shown below)") && diff.stdout.contains("Human-written answer."))

        // Decided pairs only: a calibration / gold file as `precept judge` reads it.
        let gold = f.directory.appendingPathComponent("gold.jsonl")
        #expect(try CLI.run(["review", run.path, "--export-labels", gold.path, "--decided-only"]).status == 0)
        let goldRows = try PairsFile.read(path: gold.path, requireGold: true)
        // One row per pair, the judge-stage verdict first: r0 and r4 prefer the original, r2 and
        // r5 the revision (r5's revise-stage reject is superseded); r1's tie and r3's note are out.
        #expect(goldRows.count == 4 && goldRows.filter { $0.better == "b" }.count == 2, "\(goldRows.map { ($0.prompt, $0.better ?? "-") })")

        // A label about a revision that has changed since no longer applies: r4's revision is
        // rewritten (as a rerun after a constitution edit would), so its rejection is stale.
        let writer = try RunStore(directory: run)
        var r4 = try #require(try writer.outputs(stage: "revisions").first { $0.record == "r4" })
        r4.output = "A different revision."
        try writer.save([r4])
        let sft2 = f.directory.appendingPathComponent("sft2")
        #expect(try CLI.run(["export", run.path, "--format", "sft", "--out", sft2.path, "--test-fraction", "0"]).status == 0)
        #expect(try lines(sft2.appendingPathComponent("train.jsonl")).count == 5)
        let p2 = try JSONSerialization.jsonObject(with: Data(contentsOf: sft2.appendingPathComponent("provenance.json"))) as? [String: Any]
        #expect(p2?["human_labels"] as? [String: Int] == ["rejected": 1, "edited": 1, "stale": 1], "\(String(describing: p2?["human_labels"]))")
        #expect(try CLI.run(["review", run.path, "--export-labels", out.path]).status == 0)
        #expect(try lines(out).first { $0["record"] as? String == "r4" }?["stale"] as? Bool == true)

        // A later label replaces the earlier one.
        try Data(#"{"record": "r0", "verdict": "revision"}"#.utf8).write(to: file)
        #expect(try CLI.run(["review", run.path, "--import", file.path]).status == 0)
        let again = try CLI.run(["labels", run.path, "--json"])
        let updated = (try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any])?["human_agreement"] as? [String: Any]
        // r0 now agrees; r4's label is stale and no longer counted: 3 of 4.
        #expect(abs((updated?["accuracy"] as? Double ?? 0) - 0.75) < 1e-9 && updated?["pairs"] as? Int == 4, "\(String(describing: updated))")
    }

    @Test(arguments: [
        (#"{"record": "nope", "verdict": "tie"}"#, "at key `record`: stage `labels` has no record `nope` sample 0"),
        (#"{"record": "r0", "verdict": "maybe"}"#, "at key `verdict`: `maybe` is not candidate_0"),
        (#"{"record": "r0"}"#, "give at least one of `verdict`, `edited_revision`, `note`"),
        (#"{"record": "r0", "stage": "responses", "verdict": "tie"}"#, "at key `stage`: `responses` is not a judge or revise stage"),
        (#"{"record": "r0", "stage": "revisions", "verdict": "tie"}"#, "is not accept or reject"),
        (#"{"record": "r0", "sample": 1.5, "verdict": "tie"}"#, "at key `sample`: expected a whole number"),
    ])
    func badImportsNameTheLineAndStoreNothing(row: String, message: String) throws {
        let f = try RunFixture(prompts: (0..<3).map { "Judge request \($0)" }, stages: Self.stages)
        _ = try f.run(ScriptedBackend())
        let run = f.directory.appendingPathComponent("run")
        let file = f.directory.appendingPathComponent("bad.jsonl")
        try Data((#"{"record": "r1", "verdict": "tie"}"# + "\n" + row + "\n").utf8).write(to: file)
        let result = try CLI.run(["review", run.path, "--import", file.path])
        #expect(result.status == 1 && result.stderr.contains("bad.jsonl:2: error:") && result.stderr.contains(message), "\(result.stderr)")
        #expect(try RunStore(directory: run, create: false).humanLabels().isEmpty, "nothing stored from a bad file")
        let badPort = try CLI.run(["review", run.path, "--port", "70000"])
        #expect(badPort.status != 0 && badPort.stderr.contains("--port must be in 0…65535"), "\(badPort.stderr)")
    }
}
