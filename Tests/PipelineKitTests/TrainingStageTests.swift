import Foundation
import ModelKit
import Testing
import PipelineTestSupport
import TestSupport
import TrainKit
@testable import PipelineKit

/// The reward_model, dpo and sft stages in a run (tiny random GGUF as the base, scripted
/// generation and judging), `precept train` and `precept score-rm` on the files they write.
@Suite(.serialized) struct TrainingStageTests {
    static let stages = """
      - { id: responses, generate: { model: policy, samples: 2 } }
      - { id: critiques, critique: { model: policy, input: responses, few_shot: 1 } }
      - { id: revisions, revise: { model: policy, input: critiques, few_shot: 1 } }
      - { id: labels, judge: { model: judge, input: revisions } }
      - { id: rm, reward_model: { base: policy, input: labels, lora: { rank: 2 }, epochs: 2, batch_size: 2, eval_fraction: 0.3 } }
      - { id: dpo, dpo: { base: policy, input: labels, lora: { rank: 2, targets: [q, v, down] }, epochs: 2, batch_size: 2, eval_fraction: 0.3, merge: f32, learning_rate: 0.001 } }
      - { id: sft, sft: { base: policy, input: revisions, lora: { rank: 2 }, batch_size: 4, merge: q8_0 } }
      - { id: preferences, export: { input: labels, format: trl } }
    """

    func fixture() throws -> RunFixture {
        let prompts = (0..<12).map { "please do thing number \($0)" }
        let f = try RunFixture(prompts: prompts, stages: Self.stages, extra: "  judge: { source: tiny.gguf }\n")
        try TinyModel(family: .gemma3, seed: 4, vocab: 300, hidden: 64, layers: 2).write(to: f.directory.appendingPathComponent("tiny.gguf"))
        let text = try String(contentsOf: f.pipeline, encoding: .utf8).replacingOccurrences(of: "source: gemma-3-270m", with: "source: tiny.gguf")
        try Data(text.utf8).write(to: f.pipeline)
        return f
    }

    func json(_ url: URL) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }

    @Test func trainingStagesWriteAdaptersMetricsAndMergedModels() throws {
        let f = try fixture()
        _ = try f.run(ScriptedBackend())
        let run = f.directory.appendingPathComponent("run")

        // DPO: metrics.jsonl per step with TRL's names, a held-out split, a PEFT adapter, a merged GGUF.
        let dpo = run.appendingPathComponent("dpo")
        let lines = try String(contentsOf: dpo.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        let train = lines.filter { $0["split"] as? String == "train" }, eval = lines.filter { $0["split"] as? String == "eval" }
        #expect(train.map { $0["step"] as! Int } == Array(1...train.count) && !train.isEmpty)
        #expect(eval.count == 1)
        for key in ["loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected",
                    "learning_rate", "grad_norm"] {
            #expect(train[0][key] != nil, "metrics.jsonl lacks \(key)")
        }
        let summary = try json(dpo.appendingPathComponent("summary.json"))
        #expect((summary["eval_examples"] as! Int) > 0 && (summary["train_examples"] as! Int) > 0)
        #expect((summary["eval"] as! [String: Any])["rewards/accuracies"] != nil)
        let config = try json(dpo.appendingPathComponent("adapter/adapter_config.json"))
        #expect(config["target_modules"] as? [String] == ["down_proj", "q_proj", "v_proj"])
        let merged = try LanguageModel(path: dpo.appendingPathComponent("merged.gguf").path)
        #expect(merged.file.tensor(named: "blk.0.attn_q.weight")?.type == .f32)

        // The merged model equals the base with the adapter.
        let base = try LanguageModel(path: f.directory.appendingPathComponent("tiny.gguf").path)
        let (adapter, _) = try PEFTAdapter.load(dpo.appendingPathComponent("adapter"), model: base.config)
        #expect(adapter.parameters.contains { p in p.name.contains("lora_B") && p.value.array.contains { $0 != 0 } }, "training moved B")
        let adapted = TrainableTransformer(base: base.transformer, adapter: adapter)
        adapted.training = false
        let tokens: [Int32] = [2, 40, 41, 42, 43]
        let want = adapted.forward([tokens], keep: false).hidden.array
        let got = merged.transformer.forward([SequenceInput(cache: merged.transformer.makeCache(), tokens: tokens)]).array
        #expect(zip(want, got).allSatisfy { abs($0 - $1) < 1e-4 })

        // The reward model: score head in the adapter, accuracy reported; SFT: Q8_0 merge.
        let rm = run.appendingPathComponent("rm")
        #expect(try Safetensors.read(rm.appendingPathComponent("adapter/adapter_model.safetensors")).tensors[PEFTAdapter.scoreName]?.shape == [1, 64])
        #expect((try json(rm.appendingPathComponent("summary.json"))["eval"] as! [String: Any])["accuracy"] != nil)
        #expect(!FileManager.default.fileExists(atPath: rm.appendingPathComponent("merged.gguf").path))
        #expect(try LanguageModel(path: run.appendingPathComponent("sft/merged.gguf").path).file.tensor(named: "blk.0.ffn_up.weight")?.type == .q8_0)

        // A rerun finds every training stage up to date and leaves its files alone.
        let before = try Data(contentsOf: dpo.appendingPathComponent("metrics.jsonl"))
        let modified = try FileManager.default.attributesOfItem(atPath: dpo.appendingPathComponent("summary.json").path)[.modificationDate] as! Date
        _ = try f.run(ScriptedBackend())
        #expect(try Data(contentsOf: dpo.appendingPathComponent("metrics.jsonl")) == before)
        #expect(try FileManager.default.attributesOfItem(atPath: dpo.appendingPathComponent("summary.json").path)[.modificationDate] as! Date == modified)

        // The CLI: generate with the merged model, score with the reward model, train DPO from the export.
        let gen = try CLI.run(["generate", "--model", dpo.appendingPathComponent("merged.gguf").path, "--prompt", "a b c", "--max-tokens", "4"])
        #expect(gen.status == 0, "\(gen.stderr)")
        let pairs = run.appendingPathComponent("preferences/train.jsonl")
        let scored = try CLI.run(["score-rm", rm.path, "--data", pairs.path])
        #expect(scored.status == 0, "\(scored.stderr)")
        #expect(scored.stdout.split(separator: "\n").count == (try String(contentsOf: pairs, encoding: .utf8)).split(separator: "\n").count)
        #expect(scored.stdout.contains("\"chosen_score\"") && scored.stderr.contains("accuracy"))

        let configFile = f.directory.appendingPathComponent("dpo.yaml")
        try Data("version: 1\nbase: tiny.gguf\nlora: { rank: 2 }\nbatch_size: 4\nloss: ipo\nmerge: none\n".utf8).write(to: configFile)
        let out = f.directory.appendingPathComponent("cli-dpo")
        let trained = try CLI.run(["train", "dpo", "--config", configFile.path, "--data", pairs.path, "--output", out.path])
        #expect(trained.status == 0, "\(trained.stderr)")
        #expect(trained.stdout.contains("rewards/accuracies"))
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("adapter/adapter_model.safetensors").path))
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("merged.gguf").path))
    }

    /// dpo and reward_model with `base: <sft stage>`: trained on top of the SFT stage's merged
    /// model (SL-CAI, then preference training), which is DPO's reference; wiring errors name the key.
    @Test func preferenceTrainingStartsFromAnSFTStage() throws {
        let stages = """
          - { id: responses, generate: { model: policy, samples: 2 } }
          - { id: critiques, critique: { model: policy, input: responses, few_shot: 1 } }
          - { id: revisions, revise: { model: policy, input: critiques, few_shot: 1 } }
          - { id: labels, judge: { model: judge, input: revisions } }
          - { id: sft, sft: { base: policy, input: revisions, lora: { rank: 2 }, batch_size: 4, learning_rate: 0.01, merge: f32 } }
          - { id: rm, reward_model: { base: sft, input: labels, lora: { rank: 2 }, batch_size: 2, eval_fraction: 0.3 } }
          - { id: dpo, dpo: { base: sft, input: labels, lora: { rank: 2 }, epochs: 2, batch_size: 2, eval_fraction: 0.3, merge: f32, learning_rate: 0.001 } }
        """
        let prompts = (0..<12).map { "please do thing number \($0)" }
        let f = try RunFixture(prompts: prompts, stages: stages, extra: "  judge: { source: tiny.gguf }\n")
        try TinyModel(family: .gemma3, seed: 4, vocab: 300, hidden: 64, layers: 2).write(to: f.directory.appendingPathComponent("tiny.gguf"))
        let text = try String(contentsOf: f.pipeline, encoding: .utf8).replacingOccurrences(of: "source: gemma-3-270m", with: "source: tiny.gguf")
        try Data(text.utf8).write(to: f.pipeline)
        _ = try f.run(ScriptedBackend())
        let run = f.directory.appendingPathComponent("run")
        let sftMerged = run.appendingPathComponent("sft/merged.gguf").path
        for stage in ["rm", "dpo"] {
            #expect(try json(run.appendingPathComponent("\(stage)/training.json"))["base_model_path"] as? String == sftMerged)
        }
        // DPO's merged model is the SFT model with DPO's adapter, not the original base with it.
        let sft = try LanguageModel(path: sftMerged)
        let (adapter, _) = try PEFTAdapter.load(run.appendingPathComponent("dpo/adapter"), model: sft.config)
        let adapted = TrainableTransformer(base: sft.transformer, adapter: adapter)
        adapted.training = false
        let tokens: [Int32] = [2, 40, 41, 42, 43]
        let want = adapted.forward([tokens], keep: false).hidden.array
        let merged = try LanguageModel(path: run.appendingPathComponent("dpo/merged.gguf").path)
        let got = merged.transformer.forward([SequenceInput(cache: merged.transformer.makeCache(), tokens: tokens)]).array
        #expect(zip(want, got).allSatisfy { abs($0 - $1) < 1e-4 })
        let base = try LanguageModel(path: f.directory.appendingPathComponent("tiny.gguf").path)
        let fromBase = TrainableTransformer(base: base.transformer, adapter: adapter)
        fromBase.training = false
        #expect(zip(fromBase.forward([tokens], keep: false).hidden.array, got).contains { abs($0 - $1) > 1e-3 }, "the SFT step moved the model")

        // Only an earlier sft stage can be a base.
        for (from, to, message) in [("base: sft, input: labels, lora: { rank: 2 }, epochs: 2", "base: labels, input: labels, lora: { rank: 2 }, epochs: 2",
                                     "stage `labels` is a judge stage; expected sft"),
                                    ("base: sft, input: labels, lora: { rank: 2 }, batch_size: 2", "base: dpo, input: labels, lora: { rank: 2 }, batch_size: 2",
                                     "stage `dpo` comes later")] {
            try Data(text.replacingOccurrences(of: from, with: to).utf8).write(to: f.pipeline)
            #expect { try PipelineValidator.validate(path: f.pipeline.path) } throws: { error in
                let d = (error as? LocalizedError)?.errorDescription ?? ""
                return d.contains(message) && d.contains(".base")
            }
        }
    }

    @Test func badTrainingInputsAreErrorsNamingThePlace() throws {
        let dir = try temporaryDirectory()
        try TinyModel(family: .llama3, seed: 1).write(to: dir.appendingPathComponent("tiny.gguf"))
        let config = dir.appendingPathComponent("c.yaml"), data = dir.appendingPathComponent("d.jsonl")
        try Data("version: 1\nbase: tiny.gguf\nbeta: 0.1\nbta: 2\n".utf8).write(to: config)
        try Data("{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n".utf8).write(to: data)
        var r = try CLI.run(["train", "dpo", "--config", config.path, "--data", data.path, "--output", dir.appendingPathComponent("o").path])
        #expect(r.status == 1 && r.stderr.contains("c.yaml:4:1") && r.stderr.contains("bta"), "\(r.stderr)")

        try Data("version: 1\nbase: tiny.gguf\n".utf8).write(to: config)
        try Data("{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n{\"prompt\": \"a\", \"chosen\": \"b\"}\n".utf8).write(to: data)
        r = try CLI.run(["train", "dpo", "--config", config.path, "--data", data.path, "--output", dir.appendingPathComponent("o").path])
        #expect(r.status == 1 && r.stderr.contains("d.jsonl:2: error: at key `rejected`: missing"), "\(r.stderr)")

        try Data("{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\", \"judge_probability\": 3}\n".utf8).write(to: data)
        r = try CLI.run(["train", "rm", "--config", config.path, "--data", data.path, "--output", dir.appendingPathComponent("o").path])
        #expect(r.status == 1 && r.stderr.contains("d.jsonl:1: error: at key `judge_probability`"), "\(r.stderr)")

        try Data("version: 1\nbase: nowhere.gguf\n".utf8).write(to: config)
        r = try CLI.run(["train", "sft", "--config", config.path, "--data", data.path])
        #expect(r.status == 1 && r.stderr.contains("c.yaml:2") && r.stderr.contains("no file at"), "\(r.stderr)")

        r = try CLI.run(["score-rm", dir.path, "--data", data.path])
        #expect(r.status == 1 && r.stderr.contains("not a reward model directory"), "\(r.stderr)")
    }
}
