import ArgumentParser
import Foundation
import ModelKit
import PipelineKit
import TrainKit

extension TrainerKind: ExpressibleByArgument {}

extension Precept {
    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train a LoRA adapter with SFT, a reward model, DPO, or PPO/RLOO against a reward model.",
            discussion: """
                The config file holds the keys of the matching pipeline stage (see docs/training.md and docs/rl.md). \
                Writes metrics.jsonl, adapter/ (PEFT), merged.gguf (sft, dpo, ppo), summary.json into --output. \
                For ppo, --data is a prompts JSONL (`prompt`, optional `id`) and the config names `reward_model`. \
                Ctrl-C saves a checkpoint; the same command resumes from it.
                """)

        @Argument(help: "sft, rm, dpo or ppo (ppo also runs RLOO: `algorithm: rloo`).") var trainer: TrainerKind
        @Option(help: "Training configuration (YAML).") var config: String
        @Option(help: "Training data (JSONL): prompt/completion or messages for sft; prompt/chosen/rejected for rm and dpo; prompt for ppo.")
        var data: String
        @Option(help: "Output directory (default: outputs/train-<trainer>).") var output: String?

        func run() throws {
            try running {
                let file = try TrainingConfigFile.load(path: config, kind: trainer)
                let input: TrainingInput
                switch trainer {
                case .sft: input = .sft(try TrainingData.readSFT(path: data))
                case .rm, .dpo: input = .preferences(try TrainingData.readPreferences(path: data))
                case .ppo:
                    let hasIDs = (try? String(contentsOfFile: data, encoding: .utf8))?.split(separator: "\n").first?.contains("\"id\"") ?? false
                    let prompts = try PromptFile.read(path: data, field: "prompt", idField: hasIDs ? "id" : nil).map { (id: $0.id, text: $0.text) }
                    guard let rewardModel = file.rewardModel else { throw ValidationError("\(config): ppo needs `reward_model`") }
                    input = .prompts(prompts, rewardModel: rewardModel)
                }
                let reporter = TerminalReporter()
                var name = trainer.rawValue
                if case .ppo(let spec) = file.method { name = spec.algorithm.rawValue }
                let directory = URL(fileURLWithPath: output ?? "outputs/train-\(name)")
                let job = TrainingJob(name: "train-\(name)", method: file.method, base: try TrainingBase(file.model, reporter: reporter),
                                      system: file.system, seed: file.seed, directory: directory)
                let stop = StopFlag()
                let signals = installInterruptHandler(stop)
                defer { withExtendedLifetime(signals) {} }
                let outcome: TrainingOutcome
                do {
                    outcome = try job.run(input, progress: { reporter.message($0) }, stop: { stop.isRequested })
                } catch TrainingError.interrupted(let step) {
                    note("interrupted after step \(step); checkpoint saved in \(directory.path)/checkpoint, rerun to resume")
                    throw ExitCode(interruptedStatus)
                }
                let done = outcome.upToDate ? "up to date" : String(format: "trained in %.0f s", outcome.seconds)
                if case .prompts(let prompts, _) = input {
                    let keys = ["objective/scores", "objective/kl", "objective/rlhf_reward", "objective/entropy", "policy/clipfrac", "loss/policy",
                                "loss/value", "response_length"]
                    print("\(done): \(prompts.count) prompts")
                    print("last step: " + keys.compactMap { k in outcome.train[k].map { String(format: "%@ %.4f", k, $0) } }.joined(separator: ", "))
                } else {
                    let metrics = (outcome.eval.isEmpty ? outcome.train : outcome.eval)
                        .filter { !["epoch", "learning_rate", "grad_norm", "tokens_per_second"].contains($0.key) }
                        .sorted { $0.key < $1.key }.map { String(format: "%@ %.4f", $0.key, $0.value) }.joined(separator: ", ")
                    print("\(done): \(outcome.trainExamples) train / \(outcome.evalExamples) held-out examples")
                    print("\(outcome.eval.isEmpty ? "train" : "held-out"): \(metrics)")
                }
                for w in outcome.warnings { print("warning: \(w)") }
                print("outputs: \(directory.path)")
            }
        }
    }

    struct ScoreRM: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "score-rm",
            abstract: "Score prompt/response pairs with a trained reward model (a reward_model stage or `train rm` directory).",
            discussion: """
                Rows with `prompt` and `response` get a `score`; rows with `prompt`, `chosen` and `rejected` get both \
                scores, and the accuracy (chosen scored higher) is printed at the end. Output is JSONL on stdout.
                """)

        @Argument(help: "The reward model's directory (holds training.json and adapter/).") var model: String
        @Option(help: "JSONL with prompt/response or prompt/chosen/rejected rows.") var data: String
        @Option(help: "Sequences per forward pass.") var batchSize = 8

        func run() throws {
            try running {
                let dir = URL(fileURLWithPath: model)
                let scorer = try RewardModelScorer(directory: dir)
                let rows = try RewardModelScorer.readRows(path: data)
                var correct = 0, pairs = 0
                for start in stride(from: 0, to: rows.count, by: batchSize) {
                    let batch = Array(rows[start..<min(rows.count, start + batchSize)])
                    for (row, scores) in zip(batch, scorer.score(batch)) {
                        var out: [String: Any] = ["id": row.id]
                        if scores.count == 2 {
                            out["chosen_score"] = Double(scores[0])
                            out["rejected_score"] = Double(scores[1])
                            pairs += 1
                            if scores[0] > scores[1] { correct += 1 }
                        } else {
                            out["score"] = Double(scores[0])
                        }
                        let json = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
                        print(String(decoding: json, as: UTF8.self))
                    }
                }
                if pairs > 0 { note(String(format: "accuracy %.3f (%d of %d pairs scored chosen above rejected)", Double(correct) / Double(pairs), correct, pairs)) }
            }
        }
    }
}
