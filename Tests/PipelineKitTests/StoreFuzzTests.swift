import Foundation
import Testing
import PipelineTestSupport
@testable import PipelineKit

/// Issue 19's fuzz test: stored label rows mutated at random (JSON edits; byte flips in a copy
/// of run.sqlite), then `labels`, `report` and `export` run as real processes. No process may
/// crash (exit ≥ 128). A structural edit must give an error naming the row. A byte flip may also
/// leave the store readable; then nothing may be silently missing (same pairs, same exported
/// rows). A flip inside a text or a number cannot be detected without checksums; SQLite keeps
/// none, so such a flip is allowed to change a value, never to drop a row.
@Suite(.serialized) struct StoreFuzzTests {
    struct Outcome: Equatable {
        var status: Int32
        var stderr: String
        var labelsJSON: String
        var exported: [String]
    }

    /// Runs the three readers on `run`; the export goes to a fresh folder.
    func readers(_ run: URL, scratch: URL) throws -> (outcomes: [CLIResult], outcome: Outcome) {
        let out = scratch.appendingPathComponent("export-\(UUID().uuidString)")
        let labels = try CLI.run(["labels", run.path, "--json"])
        let report = try CLI.run(["report", run.path, "--out", scratch.appendingPathComponent("r-\(UUID().uuidString).html").path])
        let export = try CLI.run(["export", run.path, "--format", "trl", "--out", out.path, "--test-fraction", "0.25"])
        let exported = ["train.jsonl", "test.jsonl"].map {
            (try? String(contentsOf: out.appendingPathComponent($0), encoding: .utf8)) ?? ""
        }
        let worst = [labels, report, export].max { $0.status < $1.status }!
        return ([labels, report, export], Outcome(status: worst.status, stderr: labels.stderr + report.stderr + export.stderr,
                                                  labelsJSON: labels.stdout, exported: exported))
    }

    func makeRun() throws -> (RunFixture, URL) {
        let f = try RunFixture(prompts: (0..<8).map { "Judge request \($0)" }, stages: RunFixture.judgeStages("orders: both, principles: 2"))
        _ = try f.run(ScriptedBackend())
        return (f, f.directory.appendingPathComponent("run"))
    }

    /// A JSON value of another type than `value` (a number is never replaced by a number, so the
    /// edit always breaks the label's structure).
    func otherType(than value: Any, _ rng: inout SplitMix) -> Any {
        var choices: [Any] = ["text", ["a": 1], [0.5, "x"]]
        if !(value is NSNumber) { choices.append(7) }
        if value is String { choices.removeFirst() }
        if value is [Any] { choices.removeLast() }
        if value is [String: Any] { choices.remove(at: 1) }
        return choices[Int(rng.next() % UInt64(choices.count))]
    }

    @Test func randomJSONEditsOfLabelsAreErrorsNamingTheRow() throws {
        let (f, run) = try makeRun()
        let baseline = try readers(run, scratch: f.directory).outcome
        try #require(baseline.status == 0, "\(baseline.stderr)")
        var rng = SplitMix(seed: 2026)
        let pristine = try RunStore(directory: run, create: false).outputs(stage: "labels")
        for iteration in 0..<24 {
            let store = try RunStore(directory: run)
            var row = pristine[Int(rng.next() % UInt64(pristine.count))]
            var extra = try #require(try JSONSerialization.jsonObject(with: Data((row.extra ?? "{}").utf8)) as? [String: Any])
            let text = try #require(extra["label"] as? String)
            var label = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
            let keys = label.keys.sorted()
            let edit: String
            switch iteration % 4 {
            case 0:
                let key = keys[Int(rng.next() % UInt64(keys.count))]
                label[key] = otherType(than: label[key]!, &rng)
                extra["label"] = String(decoding: try JSONSerialization.data(withJSONObject: label), as: UTF8.self)
                edit = "\(key) of another type"
            case 1:
                let required = ["candidates", "principles", "probabilities", "probability", "belowConfidence"]
                let key = required[Int(rng.next() % UInt64(required.count))]
                label[key] = nil
                extra["label"] = String(decoding: try JSONSerialization.data(withJSONObject: label), as: UTF8.self)
                edit = "\(key) removed"
            case 2:
                let cut = 1 + Int(rng.next() % UInt64(text.utf8.count - 2))
                extra["label"] = String(decoding: Array(text.utf8.prefix(cut)), as: UTF8.self)
                edit = "cut at byte \(cut)"
            default:
                extra = rng.next() % 2 == 0 ? [:] : ["label": 42]
                edit = "label missing or not text"
            }
            row.extra = String(decoding: try JSONSerialization.data(withJSONObject: extra), as: UTF8.self)
            try store.save([row])
            let (results, outcome) = try readers(run, scratch: f.directory)
            for r in results {
                #expect(r.status == 1, "\(edit): exit \(r.status): \(r.stderr)")
                #expect(r.stderr.contains("record `\(row.record)`") && r.stderr.contains("stage `labels`"), "\(edit): \(r.stderr)")
            }
            _ = outcome
            try store.save([pristine.first { $0.record == row.record && $0.sample == row.sample }!])
        }
        #expect(try readers(run, scratch: f.directory).outcome == baseline, "restoring the rows restores the output")
    }

    @Test func byteFlipsInAStoreCopyNeverCrashOrDropRows() throws {
        let (f, run) = try makeRun()
        let baseline = try readers(run, scratch: f.directory).outcome
        try #require(baseline.status == 0, "\(baseline.stderr)")
        let pairs = try #require(try JSONSerialization.jsonObject(with: Data(baseline.labelsJSON.utf8)) as? [String: Any])["pairs"] as? Int
        let database = try Data(contentsOf: run.appendingPathComponent("run.sqlite"))
        var rng = SplitMix(seed: 19)
        // Half of the flips land near stored labels (where the label rows' cells are), the rest
        // anywhere in the file.
        let marker = [UInt8]("candidate_0".utf8)
        let labelOffsets = (0..<(database.count - marker.count)).filter { i in
            database[i] == marker[0] && database[i..<(i + marker.count)].elementsEqual(marker)
        }
        try #require(!labelOffsets.isEmpty)
        var errors = 0, same = 0, changedValues = 0
        let rounds = 40
        for iteration in 0..<rounds {
            let copy = f.directory.appendingPathComponent("flip-\(iteration)")
            try FileManager.default.createDirectory(at: copy, withIntermediateDirectories: true)
            var bytes = [UInt8](database)
            var flipped: [Int] = []
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                let near = labelOffsets[Int(rng.next() % UInt64(labelOffsets.count))] + Int(rng.next() % 400) - 200
                let at = iteration % 2 == 0 ? Int(rng.next() % UInt64(bytes.count)) : max(0, min(bytes.count - 1, near))
                bytes[at] ^= UInt8(1 << (rng.next() % 8))
                flipped.append(at)
            }
            try Data(bytes).write(to: copy.appendingPathComponent("run.sqlite"))
            let (results, outcome) = try readers(copy, scratch: f.directory)
            for r in results {
                #expect(r.status < 128, "bytes \(flipped): crashed with \(r.status): \(r.stderr)")
                if r.status != 0 {
                    #expect(r.stderr.hasPrefix("error: ") && r.stderr.count < 2000, "bytes \(flipped): \(r.stderr)")
                }
            }
            if outcome.status != 0 { errors += 1; continue }
            if outcome == baseline { same += 1; continue }
            // Readable but different: a value changed in place; no row may be missing.
            changedValues += 1
            let object = try JSONSerialization.jsonObject(with: Data(outcome.labelsJSON.utf8)) as? [String: Any]
            #expect(object?["pairs"] as? Int == pairs, "bytes \(flipped): pairs \(String(describing: object?["pairs"])) of \(pairs ?? -1)")
            #expect(zip(outcome.exported, baseline.exported).allSatisfy { $0.split(separator: "\n").count == $1.split(separator: "\n").count },
                    "bytes \(flipped): exported rows differ in number")
        }
        #expect(errors + same + changedValues == rounds)
        print("byte flips: \(errors) errors, \(same) identical, \(changedValues) readable with changed values")
    }
}
