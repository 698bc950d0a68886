import Foundation
import Testing
import PipelineTestSupport
@testable import PipelineKit

/// Small exports still give `datasets` two loadable splits.
@Suite struct ExportSplitTests {
    @Test func smallRunsGetATestRecordAndKeepATrainRecord() {
        let records = (0..<8).map { "rt-\($0)" }
        for seed in UInt64(0)..<50 {
            let test = RecordSplit.heldOutRecords(records, seed: seed, fraction: 0.05)
            #expect(!test.isEmpty && test.count < records.count, "seed \(seed): \(test)")
            // Records the plain hash split already put in test stay there.
            #expect(records.filter { RecordSplit.isHeldOut(record: $0, seed: seed, fraction: 0.05) }.allSatisfy(test.contains))
            let most = RecordSplit.heldOutRecords(records, seed: seed, fraction: 0.999)
            #expect(most.count == records.count - 1, "seed \(seed): never every record in test")
        }
        #expect(RecordSplit.heldOutRecords(records, seed: 1, fraction: 0).isEmpty, "a zero fraction asks for no test split")
        #expect(RecordSplit.heldOutRecords(["only"], seed: 1, fraction: 0.5).count <= 1)
        // The same record lands on the same side however often it appears (samples stay together).
        #expect(RecordSplit.heldOutRecords(records + records, seed: 3, fraction: 0.05) == RecordSplit.heldOutRecords(records, seed: 3, fraction: 0.05))
    }

    @Test func exportsSayWhenASplitIsEmpty() throws {
        let f = try RunFixture(prompts: (0..<4).map { "Request \($0)?" }, stages: """
              - { id: responses, generate: { model: policy } }
              - { id: critiques, critique: { model: policy, input: responses, few_shot: 1 } }
              - { id: revisions, revise: { model: policy, input: critiques, few_shot: 1 } }
              - { id: sft, export: { input: revisions, format: sft, test_fraction: 0.01 } }
            """)
        _ = try f.run(ScriptedBackend())
        let run = f.directory.appendingPathComponent("run")
        let lines = try String(contentsOf: run.appendingPathComponent("sft/test.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(lines.count >= 1, "a 1 % test fraction of 4 records still gives one test record")
        let none = try CLI.run(["export", run.path, "--format", "sft", "--out", f.directory.appendingPathComponent("x").path, "--test-fraction", "0"])
        #expect(none.status == 0 && none.stdout.contains("0 test") && none.stdout.contains("test.jsonl is empty"), "\(none.stdout)")
        let provenance = try JSONSerialization.jsonObject(with: Data(contentsOf: f.directory.appendingPathComponent("x/provenance.json"))) as? [String: Any]
        #expect((provenance?["note"] as? String)?.contains("empty") == true)
    }
}
