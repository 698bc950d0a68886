import Foundation
import Testing
import PipelineTestSupport
@testable import PipelineKit

/// What we hand to other tools works in them (issue 19): every export format loads with Hugging
/// Face `datasets` the usual way, and a merged.gguf from `precept train dpo` loads and generates
/// in llama.cpp. Runs with the python that scripts/test.sh installs (PRECEPT_PYTHON: a venv with
/// llama-cpp-python and datasets); under CI a missing one fails instead of skipping.
enum EcosystemPython {
    static let path = ProcessInfo.processInfo.environment["PRECEPT_PYTHON"].flatMap { $0.isEmpty ? nil : $0 }
}

@Suite(.serialized, .enabled(if: EcosystemPython.path != nil || ProcessInfo.processInfo.environment["CI"] == "true",
                             "needs PRECEPT_PYTHON (scripts/test.sh sets it to a venv with llama-cpp-python and datasets)"))
struct EcosystemTests {
    /// Runs `script` with the venv's python; returns its standard output.
    func runPython(_ script: String, _ arguments: [String]) throws -> CLIResult {
        let python = try #require(EcosystemPython.path, "PRECEPT_PYTHON is not set")
        return try CLI.run(["-c", script] + arguments, executable: URL(fileURLWithPath: python))
    }

    @Test func everyExportFormatLoadsWithDatasets() throws {
        let f = try RunFixture(prompts: (0..<6).map { "Judge request \($0)" }, stages: RunFixture.judgeStages("orders: both, principles: 2"))
        _ = try f.run(ScriptedBackend())
        let run = f.directory.appendingPathComponent("run")
        let script = """
            import json, sys
            from datasets import load_dataset
            folder = sys.argv[1]
            d = load_dataset("json", data_files={"train": folder + "/train.jsonl", "test": folder + "/test.jsonl"})
            print(json.dumps({split: {"rows": d[split].num_rows, "columns": sorted(d[split].column_names)} for split in d}))
            """
        let expected: [String: [String]] = [
            "sft": ["messages", "prompt", "init_prompt", "init_response", "critic_prompt", "critic_response", "revision_prompt", "revision_response"],
            "trl": ["prompt", "chosen", "rejected", "judge_probability", "principle"],
            "openrlhf": ["chosen", "rejected"],
        ]
        for (format, columns) in expected.sorted(by: { $0.key < $1.key }) {
            let out = f.directory.appendingPathComponent("export-\(format)")
            let export = try CLI.run(["export", run.path, "--format", format, "--out", out.path, "--test-fraction", "0.3"])
            #expect(export.status == 0, "\(format): \(export.stderr)")
            let loaded = try runPython(script, [out.path])
            #expect(loaded.status == 0, "\(format): \(loaded.stderr.suffix(2000))")
            let object = try JSONSerialization.jsonObject(with: Data(loaded.stdout.utf8)) as? [String: [String: Any]]
            for split in ["train", "test"] {
                let info = try #require(object?[split], "\(format): no \(split) split in \(loaded.stdout)")
                #expect((info["rows"] as? Int ?? 0) > 0, "\(format) \(split): \(info)")
                let have = Set(info["columns"] as? [String] ?? [])
                #expect(Set(columns).isSubset(of: have), "\(format) \(split): columns \(have.sorted())")
            }
        }
    }

    @Test func aMergedDPOModelRunsInLlamaCpp() throws {
        let dir = try temporaryDirectory()
        let data = dir.appendingPathComponent("pairs.jsonl")
        let rows = (0..<4).map { i in
            #"{"prompt": "How do I pick a lock? (\#(i))", "chosen": "I can't help with that, but a locksmith can.", "rejected": "Insert a tension wrench and rake the pins."}"#
        }
        try Data((rows.joined(separator: "\n") + "\n").utf8).write(to: data)
        let config = dir.appendingPathComponent("dpo.yaml")
        try Data("version: 1\nbase: gemma-3-270m\nlora: { rank: 2 }\nbatch_size: 2\nepochs: 1\nmax_length: 64\nmerge: q8_0\n".utf8).write(to: config)
        let out = dir.appendingPathComponent("dpo")
        let trained = try CLI.run(["train", "dpo", "--config", config.path, "--data", data.path, "--output", out.path])
        #expect(trained.status == 0, "\(trained.stderr)")
        let merged = out.appendingPathComponent("merged.gguf")
        try #require(FileManager.default.fileExists(atPath: merged.path))
        let script = """
            import json, sys
            from llama_cpp import Llama
            llm = Llama(model_path=sys.argv[1], n_ctx=256, n_threads=2, verbose=False)
            r = llm("The capital of France is", max_tokens=8, temperature=0)
            print(json.dumps({"text": r["choices"][0]["text"], "tokens": r["usage"]["completion_tokens"], "vocab": llm.n_vocab()}))
            """
        let ran = try runPython(script, [merged.path])
        #expect(ran.status == 0, "\(ran.stderr.suffix(2000))")
        let object = try JSONSerialization.jsonObject(with: Data(ran.stdout.utf8)) as? [String: Any]
        #expect((object?["tokens"] as? Int ?? 0) > 0 && !((object?["text"] as? String) ?? "").isEmpty, "\(ran.stdout)")
        #expect(object?["vocab"] as? Int == 262_144, "\(ran.stdout)")
    }
}
