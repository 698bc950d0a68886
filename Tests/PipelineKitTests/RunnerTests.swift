import Foundation
import ModelKit
import Testing
import PipelineTestSupport
@testable import PipelineKit


@Suite struct RunnerTests {
    static let prompts = (0..<10).map { "Request number \($0)?" }

    @Test func rerunsAreDeterministicAndCached() throws {
        let f = try RunFixture(prompts: Self.prompts, stages: RunFixture.slcai)
        let first = ScriptedBackend()
        let summary = try f.run(first)
        #expect(summary.executedCalls == 10 * 2 * 3 && summary.cachedCalls == 0)
        // A fresh run directory and cache gives the same rows.
        let other = try f.run(ScriptedBackend(), output: "run2", cache: "cache2")
        #expect(other.executedCalls == 60)
        let strip = { (rows: [OutputRow]) in rows.map { [$0.stage, $0.record, "\($0.sample)", "\($0.round)", $0.output, $0.principle ?? ""] } }
        #expect(strip(try f.rows()) == strip(try f.rows("run2")))
        // The same command again executes nothing; a new run directory with the old cache neither.
        let again = ScriptedBackend()
        #expect(try f.run(again).executedCalls == 0)
        let fromCache = ScriptedBackend()
        let third = try f.run(fromCache, output: "run3")
        #expect(fromCache.calls == 0 && third.cachedCalls == 60)
        #expect(strip(try f.rows("run3")) == strip(try f.rows()))
    }

    @Test func editingOnePrincipleReexecutesOnlyItsCalls() throws {
        let f = try RunFixture(prompts: Self.prompts, stages: RunFixture.slcai)
        _ = try f.run(ScriptedBackend())
        let gammaCritiques = try f.rows().filter { $0.stage == "critiques" && $0.principle == "gamma" }.count
        #expect(gammaCritiques > 0 && gammaCritiques < 20, "the seed should spread principles")
        let edited = RunFixture.constitutionText.replacingOccurrences(of: "Find gamma problems.", with: "Find gamma problems carefully.")
        try Data(edited.utf8).write(to: f.constitution)
        // A new run directory sharing the cache: each affected record re-runs its critique and
        // (its prompt now differs) its revision; every other call comes from the cache.
        let summary = try f.run(ScriptedBackend(), output: "run-edited")
        #expect(summary.executedCalls == 2 * gammaCritiques)
        #expect(summary.cachedCalls == 60 - 2 * gammaCritiques)
        // The original run directory skips its unchanged rows and takes the changed ones from the cache.
        let again = try f.run(ScriptedBackend())
        #expect(again.executedCalls == 0 && again.cachedCalls == 2 * gammaCritiques)
        let critiques = try f.rows().filter { $0.stage == "critiques" && $0.principle == "gamma" }
        #expect(critiques.allSatisfy { $0.input.contains("Find gamma problems carefully.") })
    }

    @Test func qualityGuardsFlagOutputsAndExportSkipsThem() throws {
        let f = try RunFixture(prompts: ["ECHO this back", "SILENT please", "LONG answer", "Normal request"], stages: RunFixture.slcai)
        let summary = try f.run(ScriptedBackend())
        let rows = try f.rows()
        let responses = rows.filter { $0.stage == "responses" }
        #expect(responses.filter { $0.record == "r1" }.allSatisfy { $0.flagList == ["empty"] && $0.output.isEmpty && $0.raw == "  " })
        #expect(responses.filter { $0.record == "r2" }.allSatisfy { $0.flagList == ["truncated"] })
        #expect(rows.filter { $0.stage == "revisions" && $0.record == "r0" }.allSatisfy { $0.flagList.contains("unchanged") })
        let export = try #require(summary.exports.first)
        #expect(export.skipped == 0, "revisions of flagged responses are themselves fine")
        #expect(summary.stages.first { $0.id == "responses" }?.flagged == ["empty": 2, "truncated": 2])
    }

    @Test func sftExportReadsBackFieldByField() throws {
        let f = try RunFixture(prompts: Self.prompts, stages: RunFixture.slcai)
        let summary = try f.run(ScriptedBackend())
        let export = try #require(summary.exports.first)
        #expect(export.train + export.test == 20 && export.test > 0 && export.train > 0)
        let dir = URL(fileURLWithPath: export.directory)
        var exported: [[String: Any]] = []
        for split in ["train", "test"] {
            let text = try String(contentsOf: dir.appendingPathComponent("\(split).jsonl"), encoding: .utf8)
            exported += text.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        }
        let rows = try f.rows()
        let constitution = try Constitution.load(path: f.constitution.path)
        for row in exported {
            let record = row["record_id"] as! String, sample = row["sample"] as! Int
            let response = try #require(rows.first { $0.stage == "responses" && $0.record == record && $0.sample == sample })
            let critique = try #require(rows.first { $0.stage == "critiques" && $0.record == record && $0.sample == sample })
            let revision = try #require(rows.first { $0.stage == "revisions" && $0.record == record && $0.sample == sample })
            let principle = try #require(constitution.principle(id: critique.principle!))
            let prompt = Self.prompts[Int(record.dropFirst())!]
            #expect(row["prompt"] as? String == prompt && row["init_prompt"] as? String == prompt)
            #expect(row["init_response"] as? String == response.output)
            #expect(row["critic_prompt"] as? String == principle.critique)
            #expect(row["critic_response"] as? String == critique.output)
            #expect(row["revision_prompt"] as? String == principle.revision)
            #expect(row["revision_response"] as? String == revision.output)
            #expect(row["principle"] as? String == principle.id && row["rounds"] as? Int == 1)
            let messages = try #require(row["messages"] as? [[String: String]])
            #expect(messages == [["role": "user", "content": prompt], ["role": "assistant", "content": revision.output]])
        }
        let provenance = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("provenance.json"))) as? [String: Any])
        #expect(provenance["constitution"] as? String == "fixture")
        #expect(provenance["constitution_sha256"] as? String == SHA256.hex(RunFixture.constitutionText))
        #expect(provenance["seed"] as? Int == 99)
        #expect((provenance["counts"] as? [String: Int])?["train"] == export.train)
    }

    @Test func roundsChainCritiquesAndRevisions() throws {
        let stages = """
          - { id: responses, generate: { model: policy } }
          - { id: revisions, critique_revise: { model: policy, input: responses, rounds: 3, few_shot: 1 } }
          - { id: direct, revise: { model: policy, input: responses, critique: false, few_shot: 1 } }
        """
        let f = try RunFixture(prompts: Array(Self.prompts.prefix(3)), stages: stages)
        let summary = try f.run(ScriptedBackend())
        // 3 responses; 3 rounds × (critique + revision) × 3; 3 direct revisions.
        #expect(summary.executedCalls == 3 + 18 + 3)
        let rows = try f.rows()
        #expect(rows.filter { $0.stage == "revisions" }.map(\.round).sorted() == [0, 0, 0, 1, 1, 1, 2, 2, 2])
        #expect(rows.filter { $0.stage == "revisions/critique" }.count == 9)
        for record in ["r0", "r1", "r2"] {
            let chain = rows.filter { $0.stage == "revisions" && $0.record == record }.sorted { $0.round < $1.round }
            // Each round revises the previous round's revision.
            for (a, b) in zip(chain, chain.dropFirst()) { #expect(b.input.contains("Assistant: \(a.output)\n")) }
        }
        #expect(rows.filter { $0.stage == "direct" }.allSatisfy { !$0.input.contains("Critique") && $0.input.hasSuffix("Revision:") })
    }

    @Test func onlyAndFromSelectStages() throws {
        let f = try RunFixture(prompts: Self.prompts, stages: RunFixture.slcai)
        let options = RunOptions(output: f.directory.appendingPathComponent("run"), cacheDirectory: f.directory.appendingPathComponent("cache"),
                                 only: "critiques")
        #expect(throws: RunError.missingInput(stage: "responses", input: "responses")) {
            _ = try PipelineRunner(pipelinePath: f.pipeline.path, options: options) { _ in ScriptedBackend() }.run()
        }
        _ = try f.run(ScriptedBackend())
        let backend = ScriptedBackend()
        var from = options
        from.only = nil
        from.from = "revisions"
        _ = try PipelineRunner(pipelinePath: f.pipeline.path, options: from) { _ in backend }.run()
        #expect(backend.calls == 0)
        var wrong = options
        wrong.only = "revision"
        #expect(throws: RunError.unknownStage("revision", suggestion: "revisions")) {
            _ = try PipelineRunner(pipelinePath: f.pipeline.path, options: wrong) { _ in ScriptedBackend() }.run()
        }
    }
}
