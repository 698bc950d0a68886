import Foundation
import ModelKit
import Testing
import PipelineTestSupport
import TestSupport
import TrainKit
@testable import PipelineKit

/// The ppo (PPO and RLOO) and evaluate stages in a run: a tiny random GGUF as the policy,
/// scripted generation and judging for the other stages, a reward model trained by the run.
@Suite(.serialized) struct RLStageTests {
    static let stages = """
      - { id: responses, generate: { model: policy, samples: 2 } }
      - { id: critiques, critique: { model: policy, input: responses, few_shot: 1 } }
      - { id: revisions, revise: { model: policy, input: critiques, few_shot: 1 } }
      - { id: labels, judge: { model: judge, input: revisions } }
      - { id: rm, reward_model: { base: policy, input: labels, lora: { rank: 2 }, epochs: 1, batch_size: 4, eval_fraction: 0.3 } }
      - { id: ppo, ppo: { policy: policy, reward_model: rm, lora: { rank: 2 }, steps: 3, batch_size: 4, max_tokens: 6, learning_rate: 0.001, monitors: { max_kl: 50 } } }
      - { id: rloo, ppo: { policy: policy, reward_model: rm, algorithm: rloo, rloo_k: 2, lora: { rank: 2 }, steps: 2, batch_size: 2, max_tokens: 6, merge: none } }
      - { id: eval, evaluate: { policy: ppo, baseline: policy, judge: judge, reward_model: rm, prompts: heldout.jsonl, benign_prompts: benign.jsonl, sycophancy_prompts: syco.jsonl, limit: 3 } }
    """

    func fixture() throws -> RunFixture {
        let prompts = (0..<10).map { "please do thing number \($0)" }
        let f = try RunFixture(prompts: prompts, stages: Self.stages, extra: "  judge: { source: tiny.gguf }\n")
        try TinyModel(family: .gemma3, seed: 4, vocab: 300, hidden: 64, layers: 2).write(to: f.directory.appendingPathComponent("tiny.gguf"))
        let text = try String(contentsOf: f.pipeline, encoding: .utf8).replacingOccurrences(of: "source: gemma-3-270m", with: "source: tiny.gguf")
        try Data(text.utf8).write(to: f.pipeline)
        func write(_ name: String, _ rows: [String]) throws {
            try Data((rows.joined(separator: "\n") + "\n").utf8).write(to: f.directory.appendingPathComponent(name))
        }
        try write("heldout.jsonl", (0..<4).map { "{\"id\": \"h\($0)\", \"prompt\": \"held out \($0)\"}" })
        try write("benign.jsonl", (0..<4).map { "{\"id\": \"b\($0)\", \"prompt\": \"how do I kill process \($0)\"}" })
        try write("syco.jsonl", (0..<4).map { "{\"id\": \"s\($0)\", \"prompt\": \"the moon is cheese \($0), right?\", \"false_claim\": \"The moon is cheese.\"}" })
        return f
    }

    func jsonLines(_ url: URL) throws -> [[String: Any]] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    @Test func ppoRlooAndEvaluateStagesWriteTheirOutputsAndReport() throws {
        let f = try fixture()
        _ = try f.run(ScriptedBackend())
        let run = f.directory.appendingPathComponent("run")
        let ppo = run.appendingPathComponent("ppo")
        let metrics = try jsonLines(ppo.appendingPathComponent("metrics.jsonl"))
        #expect(metrics.map { $0["step"] as! Int } == [1, 2, 3])
        for key in ["objective/kl", "objective/scores", "objective/rlhf_reward", "objective/entropy", "policy/approxkl", "policy/clipfrac",
                    "loss/policy", "loss/value", "response_length"] {
            #expect(metrics[0][key] != nil, "metrics.jsonl lacks \(key)")
        }
        #expect(try jsonLines(ppo.appendingPathComponent("samples.jsonl")).count == 3 * 4)
        for file in ["adapter/adapter_model.safetensors", "adapter/adapter_config.json", "value_head.safetensors", "merged.gguf", "summary.json"] {
            #expect(FileManager.default.fileExists(atPath: ppo.appendingPathComponent(file).path), "ppo/\(file)")
        }
        let rloo = run.appendingPathComponent("rloo")
        #expect(try jsonLines(rloo.appendingPathComponent("samples.jsonl")).count == 2 * 2 * 2)
        #expect(try jsonLines(rloo.appendingPathComponent("metrics.jsonl")).first?["loss/value"] == nil)

        let evaluation = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("eval/evaluation.json"))) as! [String: Any]
        for key in ["win_rate", "win_rate_ci", "reward_shift", "refusal_rate_benign", "sycophancy_agreement", "mean_length", "distinct_2"] {
            #expect(evaluation[key] != nil, "evaluation.json lacks \(key)")
        }
        let rate = evaluation["win_rate"] as! Double, ci = evaluation["win_rate_ci"] as! [Double]
        #expect(ci.count == 2 && ci[0] <= rate && rate <= ci[1] && ci[0] >= 0 && ci[1] <= 1)
        #expect((evaluation["refusal_rate_benign"] as! [String: Double]).keys.sorted() == ["baseline", "policy"])
        #expect(evaluation["prompts"] as? Int == 3)
        #expect(try jsonLines(run.appendingPathComponent("eval/samples.jsonl")).count == 9)

        let report = try String(contentsOf: run.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(report.contains("Training: ppo (ppo)") && report.contains("<svg") && report.contains("objective/scores"))
        #expect(report.contains("Evaluation: eval") && report.contains("judge win rate"))

        // A rerun with the same inputs trains nothing again.
        let before = try String(contentsOf: ppo.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        let modified = try FileManager.default.attributesOfItem(atPath: ppo.appendingPathComponent("merged.gguf").path)[.modificationDate] as! Date
        _ = try f.run(ScriptedBackend())
        #expect(try String(contentsOf: ppo.appendingPathComponent("metrics.jsonl"), encoding: .utf8) == before)
        #expect(try FileManager.default.attributesOfItem(atPath: ppo.appendingPathComponent("merged.gguf").path)[.modificationDate] as! Date == modified)
    }

    @Test func badRLInputsAreErrorsNamingThePlace() throws {
        let f = try fixture()
        var text = try String(contentsOf: f.pipeline, encoding: .utf8)
        try Data(text.replacingOccurrences(of: "monitors: { max_kl: 50 }", with: "monitors: { max_kl: 50, stop_on: [klx] }").utf8).write(to: f.pipeline)
        #expect { try PipelineValidator.validate(path: f.pipeline.path) } throws: { error in
            let message = (error as? LocalizedError)?.errorDescription ?? ""
            return message.contains("p.yaml:") && message.contains("unknown monitor `klx`")
        }
        try Data(text.replacingOccurrences(of: "limit: 3 }", with: "limit: 3, judge_layout: table }").utf8).write(to: f.pipeline)
        #expect { try PipelineValidator.validate(path: f.pipeline.path) } throws: { error in
            let message = (error as? LocalizedError)?.errorDescription ?? ""
            return message.contains("p.yaml:") && message.contains("judge_layout") && message.contains("dialogue")
        }
        try Data(text.utf8).write(to: f.pipeline)
        try Data("{\"id\": \"s0\", \"prompt\": \"right?\"}\n".utf8).write(to: f.directory.appendingPathComponent("syco.jsonl"))
        #expect { _ = try f.run(ScriptedBackend()) } throws: { error in
            let message = (error as? LocalizedError)?.errorDescription ?? ""
            return message.contains("syco.jsonl:1") && message.contains("false_claim")
        }
        text = text.replacingOccurrences(of: "reward_model: rm, lora", with: "reward_model: nowhere, lora")
        try Data(text.utf8).write(to: f.pipeline)
        #expect { _ = try f.run(ScriptedBackend()) } throws: { error in
            ((error as? LocalizedError)?.errorDescription ?? "").contains("nowhere")
        }
    }

    @Test func evalCommandComparesTwoModels() throws {
        let f = try fixture()
        let tiny = f.directory.appendingPathComponent("tiny.gguf").path, out = f.directory.appendingPathComponent("eval-out")
        let file = { (name: String) in f.directory.appendingPathComponent(name).path }
        let r = try CLI.run(["eval", "--policy", tiny, "--baseline", tiny, "--judge", tiny, "--prompts", file("heldout.jsonl"),
                             "--benign", file("benign.jsonl"), "--sycophancy", file("syco.jsonl"), "--constitution", f.constitution.path,
                             "--max-tokens", "8", "--output", out.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("judge win rate"), "\(r.stdout)")
        let e = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("evaluation.json"))) as! [String: Any]
        // The same model with the same seeds answers identically, so the two sides tie everywhere.
        let lengths = e["mean_length"] as! [String: Double], distinct = e["distinct_2"] as! [String: Double]
        #expect(lengths["policy"] == lengths["baseline"] && distinct["policy"] == distinct["baseline"])
        #expect(abs((e["win_probability"] as! Double) - 0.5) < 1e-9)
        #expect(e["reward_shift"] == nil && e["prompts"] as? Int == 4)

        let bad = try CLI.run(["eval", "--policy", file("missing.gguf"), "--prompts", file("heldout.jsonl"), "--output", out.path])
        #expect(bad.status != 0 && bad.stderr.contains("missing.gguf"), "\(bad.stderr)")
    }

    /// `precept train ppo` trains against the reward model a run wrote, finds itself up to date on a
    /// rerun, and names the file, line and key of a bad config.
    @Test func trainPPOCommandRunsAndRejectsBadConfigs() throws {
        let f = try fixture()
        _ = try f.run(ScriptedBackend())
        let file = { (name: String) in f.directory.appendingPathComponent(name) }
        let config = file("ppo.yaml"), out = file("ppo-out")
        try Data("version: 1\nbase: tiny.gguf\nreward_model: run/rm\nsteps: 2\nbatch_size: 2\nmax_tokens: 6\nlora: { rank: 2 }\nmerge: none\n".utf8)
            .write(to: config)
        let args = ["train", "ppo", "--config", config.path, "--data", file("heldout.jsonl").path, "--output", out.path]
        let r = try CLI.run(args)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("trained in") && r.stdout.contains("4 prompts") && r.stdout.contains("objective/scores"), "\(r.stdout)")
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as! [String: Any]
        #expect(summary["trainer"] as? String == "ppo" && summary["reward_model"] as? String == file("run/rm").path)
        #expect(try jsonLines(out.appendingPathComponent("metrics.jsonl")).count == 2)
        let again = try CLI.run(args)
        #expect(again.status == 0 && again.stdout.contains("up to date"), "\(again.stdout)\(again.stderr)")

        for (text, expected) in [("reward_model: nowhere\n", ["ppo.yaml:3", "reward_model", "no reward model"]),
                                 ("reward_model: run/rm\nkl_coef: -1\n", ["ppo.yaml:4", "kl_coef", "out of range"]),
                                 ("reward_model: run/rm\npolicy: x\n", ["ppo.yaml:4", "unknown key `policy`"])] {
            try Data("version: 1\nbase: tiny.gguf\n\(text)".utf8).write(to: config)
            let bad = try CLI.run(args)
            #expect(bad.status != 0, "\(text)")
            for part in expected { #expect(bad.stderr.contains(part), "\(text): \(bad.stderr)") }
        }
    }
}

/// RL after SL-CAI: a ppo stage whose policy is an earlier sft stage starts from (and is held
/// near) that stage's merged model; the evaluation reports the refusal and length-controlled
/// metrics on a held-out file with `kind` rows.
@Suite(.serialized) struct PPOFromSFTTests {
    @Test func ppoStartsFromTheSFTStageAndEvaluationReportsTheNewMetrics() throws {
        let stages = """
          - { id: responses, generate: { model: policy, samples: 1 } }
          - { id: critiques, critique: { model: policy, input: responses, few_shot: 1 } }
          - { id: revisions, revise: { model: policy, input: critiques, few_shot: 1 } }
          - { id: labels, judge: { model: judge, input: revisions, gate: true } }
          - { id: sft, sft: { base: policy, input: revisions, gate: labels, lora: { rank: 2 }, epochs: 1, batch_size: 4, eval_fraction: 0 } }
          - { id: rm, reward_model: { base: policy, input: labels, lora: { rank: 2 }, epochs: 1, batch_size: 4, eval_fraction: 0 } }
          - { id: ppo, ppo: { policy: sft, reward_model: rm, lora: { rank: 2 }, steps: 2, batch_size: 4, max_tokens: 6, missing_eos_penalty: 0.5 } }
          - { id: eval, evaluate: { policy: ppo, baseline: policy, judge: judge, prompts: heldout.jsonl } }
        """
        let f = try RunFixture(prompts: (0..<8).map { "please do thing number \($0)" }, stages: stages, extra: "  judge: { source: tiny.gguf }\n")
        try TinyModel(family: .gemma3, seed: 4, vocab: 300, hidden: 64, layers: 2).write(to: f.directory.appendingPathComponent("tiny.gguf"))
        let text = try String(contentsOf: f.pipeline, encoding: .utf8).replacingOccurrences(of: "source: gemma-3-270m", with: "source: tiny.gguf")
        try Data(text.utf8).write(to: f.pipeline)
        let kinds = ["harmful", "harmful", "benign-edgy", "ordinary"]
        let rows = kinds.enumerated().map { "{\"id\": \"h\($0)\", \"prompt\": \"held out \($0)\", \"kind\": \"\($1)\"}" }
        try Data((rows.joined(separator: "\n") + "\n").utf8).write(to: f.directory.appendingPathComponent("heldout.jsonl"))
        _ = try f.run(ScriptedBackend())
        let run = f.directory.appendingPathComponent("run")
        let training = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("ppo/training.json"))) as! [String: Any]
        #expect(training["base_model_path"] as? String == run.appendingPathComponent("sft/merged.gguf").path)
        let metrics = try String(contentsOf: run.appendingPathComponent("ppo/metrics.jsonl"), encoding: .utf8)
        #expect(metrics.contains("\"truncation_rate\""))
        let evaluation = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("eval/evaluation.json"))) as! [String: Any]
        #expect(evaluation["judge_method"] as? String == "contrast")
        #expect(evaluation["harmful_prompts"] as? Int == 2)
        #expect(evaluation["benign_prompts"] as? Int == 1, "the held-out file's benign-edgy rows measure over-refusal")
        for key in ["refusal_rate_harmful", "refusal_rate_harmful_judge", "refusal_rate_benign"] {
            #expect((evaluation[key] as? [String: Double])?.keys.sorted() == ["baseline", "policy"], "\(key)")
        }
        let lc = try #require(evaluation["length_controlled_win_rate"] as? Double)
        #expect(lc > 0 && lc < 1)
        // The win rate per kind of prompt, each over its own rows of samples.jsonl.
        let byKind = try #require(evaluation["win_rate_by_kind"] as? [String: [String: Any]])
        #expect(byKind.keys.sorted() == ["benign-edgy", "harmful", "ordinary"])
        let samples = try String(contentsOf: run.appendingPathComponent("eval/samples.jsonl"), encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        for (kind, v) in byKind {
            let p = samples.filter { $0["kind"] as? String == kind }.map { $0["p_policy_better"] as! Double }
            let want = p.reduce(0.0) { $0 + ($1 > 0.5 ? 1 : $1 == 0.5 ? 0.5 : 0) } / Double(p.count)
            #expect(v["prompts"] as? Int == p.count && abs((v["win_rate"] as! Double) - want) < 1e-12, "\(kind)")
        }
    }
}
