import Foundation
import Testing
import ModelKit
import TensorKit
import TestSupport
@testable import TrainKit

/// The trainers on a tiny random model: each moves its own metric the right way within a fixed
/// number of steps, and an interrupted run resumed from its checkpoint ends where an
/// uninterrupted one does.
@Suite struct TrainerTests {
    func model(_ family: TinyModel.Family = .gemma3, rank: Int = 4) throws -> (LanguageModel, TrainableTransformer) {
        let url = scratchURL("precept-train-\(UUID()).gguf")
        try TinyModel(family: family, seed: 21).write(to: url)
        let lm = try LanguageModel(path: url.path)
        return (lm, TrainableTransformer(base: lm.transformer, adapter: LoRAAdapter(config: LoRAConfig(rank: rank, alpha: 16), model: lm.config, seed: 1)))
    }

    func directory() -> URL { scratchURL("precept-run-\(UUID())") }

    func config(steps: Int, lr: Double = 1e-2) -> TrainingConfig {
        var c = TrainingConfig()
        c.epochs = steps
        c.learningRate = lr
        c.batchSize = 2
        c.warmupRatio = 0
        c.schedule = .constant
        c.checkpointEvery = 0
        return c
    }

    /// Pairs whose chosen answer ends in one set of tokens and rejected in another.
    var pairs: [PreferenceExample] {
        (0..<6).map { (i: Int) -> PreferenceExample in
            let first = Int32(10 + i % 3)
            let prompt: [Int32] = [2, Int32(4 + i), 7]
            return PreferenceExample(id: "p\(i)", prompt: prompt, chosen: [first, 20, 21], rejected: [first, 30, 31], probability: 0.9)
        }
    }

    @Test func sftLowersTheResponseLoss() throws {
        let (_, m) = try model()
        let sft = SFTTrainer(model: m)
        let data = (0..<4).map { SFTExample(id: "s\($0)", prompt: [2, Int32(5 + $0)], response: [12, 13, 14, 1]) }
        let loop = TrainingLoop(config: config(steps: 15), objective: sft, directory: directory(), fingerprint: "sft")
        let before = loop.evaluate(data)["loss"]!
        let result = try loop.run(train: data, eval: data)
        #expect(result.eval["loss"]! < before * 0.5, "loss \(before) → \(result.eval["loss"]!)")
        let lines = try String(contentsOf: loop.metricsURL, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == loop.totalSteps(examples: 4) + 1)   // every step, then the final eval
        #expect(lines.last!.contains("\"split\":\"eval\""))
    }

    /// A DPO trainer (β = 0.5) on a fresh tiny model, with the pairs' reference log-probabilities.
    func dpoTrainer() throws -> (DPOTrainer, [PreferenceExample]) {
        let (_, m) = try model()
        var c = DPOConfig()
        c.beta = 0.5
        let dpo = DPOTrainer(model: m, config: c)
        var data = pairs
        dpo.precomputeReference(&data)
        return (dpo, data)
    }

    @Test func dpoRaisesAccuracyAndMargin() throws {
        let (dpo, data) = try dpoTrainer()
        let loop = TrainingLoop(config: config(steps: 10), objective: dpo, directory: directory(), fingerprint: "dpo")
        let before = loop.evaluate(data)
        #expect(before["rewards/margins"]! == 0 && before["rewards/accuracies"]! == 0)   // policy = reference at step 0
        let after = try loop.run(train: data, eval: data).eval
        #expect(after["rewards/accuracies"]! == 1)
        #expect(after["rewards/margins"]! > 1)
        #expect(after["logps/chosen"]! - after["logps/rejected"]! > before["logps/chosen"]! - before["logps/rejected"]!)
    }

    @Test func rewardModelLearnsThePreference() throws {
        let (lm, m) = try model(.llama3)
        let rm = RewardTrainer(model: m, scoreHead: RewardHead(hidden: lm.config.hidden, seed: 3), config: RewardModelConfig())
        let loop = TrainingLoop(config: config(steps: 12), objective: rm, directory: directory(), fingerprint: "rm")
        let result = try loop.run(train: pairs, eval: pairs)
        #expect(result.eval["accuracy"]! == 1)
        // Soft targets of 0.9: the optimum margin is log(0.9/0.1) ≈ 2.2, so margins stay finite.
        #expect(result.eval["rewards/margins"]! > 0.5)
    }

    @Test func resumedRunEqualsUninterruptedRun() throws {
        func train(stopAfter: Int?, dir: URL) throws -> [Float] {
            let (dpo, data) = try dpoTrainer()
            var tc = config(steps: 4)
            tc.checkpointEvery = 2
            tc.schedule = .linear
            let loop = TrainingLoop(config: tc, objective: dpo, directory: dir, fingerprint: "resume")
            if let stopAfter { loop.shouldStop = { loop.objective.model.adapter!.parameters.isEmpty == false && stepCounter(dir) >= stopAfter } }
            do { _ = try loop.run(train: data, eval: []) } catch TrainingError.interrupted(let step) {
                #expect(step == stopAfter)
                return []
            }
            return dpo.parameters.flatMap { $0.value.array }
        }
        let straight = try train(stopAfter: nil, dir: directory())
        let dir = directory()
        #expect(try train(stopAfter: 5, dir: dir).isEmpty)
        let resumed = try train(stopAfter: nil, dir: dir)
        #expect(resumed == straight)
        let steps = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
            .split(separator: "\n").filter { $0.contains("\"split\":\"train\"") }.count
        #expect(steps == 12)   // 4 epochs × 3 steps, none logged twice
    }
}

/// Train steps logged so far in a run directory.
func stepCounter(_ dir: URL) -> Int {
    ((try? String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)) ?? "")
        .split(separator: "\n").filter { $0.contains("\"split\":\"train\"") }.count
}
