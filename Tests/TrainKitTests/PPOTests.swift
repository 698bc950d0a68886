import Foundation
import Testing
import ModelKit
import TensorKit
import TestSupport
@testable import TrainKit

/// PPO/RLOO arithmetic against hand-computed values, the in-memory merged rollout model against
/// the adapter's forward pass, and a toy environment (reward = share of one token in the
/// response) in which PPO and RLOO must raise the reward within a fixed number of steps.
@Suite struct PPOMathTests {
    func close(_ a: [Double], _ b: [Double], _ tol: Double = 1e-4) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) < tol }
    }

    @Test func gaeMatchesHandValues() {
        let (a, r) = PPOMath.gae(rewards: [0, 0, 1], values: [0.5, 0.4, 0.3], gamma: 1, lambda: 0.95)
        #expect(close(a, [0.43675, 0.565, 0.7]), "\(a)")
        #expect(close(r, [0.93675, 0.965, 1.0]), "\(r)")
        let (b, _) = PPOMath.gae(rewards: [0, 0, 1], values: [0.5, 0.4, 0.3], gamma: 0.9, lambda: 0.5)
        #expect(close(b, [-0.05675, 0.185, 0.7]), "\(b)")
    }

    @Test func clippedPolicyLoss() {
        // ρ = e^0.5 = 1.64872; with A = 2 the clipped term −2·1.2 is the max: no gradient.
        let up = PPOMath.policyLoss(logProb: -1, oldLogProb: -1.5, advantage: 2, clip: 0.2)
        #expect(abs(up.loss - -2.4) < 1e-9 && up.dLogProb == 0 && up.clipped)
        // With A = −2 the unclipped term 2·1.64872 is the max: gradient −A·ρ.
        let down = PPOMath.policyLoss(logProb: -1, oldLogProb: -1.5, advantage: -2, clip: 0.2)
        #expect(abs(down.loss - 3.29744) < 1e-4 && abs(down.dLogProb - 3.29744) < 1e-4 && !down.clipped)
        let same = PPOMath.policyLoss(logProb: -2, oldLogProb: -2, advantage: 0.7, clip: 0.2)
        #expect(abs(same.loss - -0.7) < 1e-12 && abs(same.dLogProb - -0.7) < 1e-12 && same.ratio == 1)
    }

    @Test func clippedValueLoss() {
        // v_c = 0.5 + clip(0.5, ±0.2) = 0.7: (0.7 − 2)² > (1 − 2)², clip active → no gradient.
        let a = PPOMath.valueLoss(value: 1, oldValue: 0.5, target: 2, clip: 0.2)
        #expect(abs(a.loss - 0.845) < 1e-9 && a.dValue == 0 && a.clipped)
        let b = PPOMath.valueLoss(value: 0.6, oldValue: 0.5, target: 0, clip: 0.2)
        #expect(abs(b.loss - 0.18) < 1e-9 && abs(b.dValue - 0.6) < 1e-9 && !b.clipped)
        let c = PPOMath.valueLoss(value: 0.9, oldValue: 0.5, target: 0, clip: 0.2)
        #expect(abs(c.loss - 0.405) < 1e-9 && abs(c.dValue - 0.9) < 1e-9 && !c.clipped)
    }

    @Test func klEstimatorsAndRewards() {
        #expect(abs(PPOMath.kl(.k1, logProb: -1, referenceLogProb: -1.5) - 0.5) < 1e-12)
        #expect(abs(PPOMath.kl(.k2, logProb: -1, referenceLogProb: -1.5) - 0.125) < 1e-12)
        #expect(abs(PPOMath.kl(.k3, logProb: -1, referenceLogProb: -1.5) - 0.1065307) < 1e-6)
        #expect(PPOMath.kl(.k3, logProb: -1.5, referenceLogProb: -1) > 0)   // k3 is never negative
        #expect(close(PPOMath.tokenRewards(score: 2, kl: [0.1, 0.2], beta: 0.5), [-0.05, 1.9]))
        #expect(close(PPOMath.leaveOneOut([1, 2, 3, 6]), [-8.0 / 3, -4.0 / 3, 0, 4]))
        #expect(close(PPOMath.whiten([1, 2, 3, 4]), [-1.161895, -0.387298, 0.387298, 1.161895]))
        var c = AdaptiveKLController(value: 0.1, target: 6)
        c.update(kl: 12, samples: 100)
        #expect(abs(c.value - 0.1002) < 1e-12)
        c = AdaptiveKLController(value: 0.1, target: 6)
        c.update(kl: 3, samples: 100)
        #expect(abs(c.value - 0.0998) < 1e-12)
    }

    @Test func monitorsWarnWithTheirNumbers() {
        #expect(distinctN(["a b a b", "a b"], n: 2) == 0.5)
        var config = MonitorConfig()
        config.stopOn = [.kl]
        var m = TrainingMonitors(config: config)
        #expect(m.check(MonitorSample(rewardMean: 0, rewardStd: 1, kl: 1, length: 10, distinct2: 0.8), step: 1).isEmpty)
        #expect(m.check(MonitorSample(rewardMean: 1.5, rewardStd: 0.5, kl: 2, length: 12, distinct2: 0.7), step: 2).isEmpty)
        let w = m.check(MonitorSample(rewardMean: 2.5, rewardStd: 0.05, kl: 12, length: 16, distinct2: 0.3), step: 3)
        #expect(Set(w.map(\.kind)) == Set(MonitorKind.allCases).subtracting([.truncation]))   // no response was cut
        #expect(w.filter(\.stops).map(\.kind) == [.kl])
        #expect(w.first { $0.kind == .lengthGrowth }!.message.contains("16.0"))
    }
}

@Suite struct PPOTrainerTests {
    static let target: Int32 = 9

    func model(seed: UInt64 = 21) throws -> LanguageModel {
        let url = scratchURL("precept-ppo-\(UUID()).gguf")
        try TinyModel(family: .gemma3, seed: seed).write(to: url)
        return try LanguageModel(path: url.path)
    }

    @Test func mergedRolloutModelMatchesTheAdapter() throws {
        let lm = try model()
        let adapter = LoRAAdapter(config: LoRAConfig(rank: 4, alpha: 8), model: lm.config, seed: 3)
        for p in adapter.parameters { for i in 0..<p.value.count { p.value.data[i] = Float(sin(Double(i) * 0.37 + Double(p.value.count))) * 0.05 } }
        let rollout = RolloutModel(base: lm, adapter: adapter)
        let tokens: [Int32] = [2, 5, 11, 17, 3, 8]
        let merged = rollout.model.transformer.forward([SequenceInput(cache: rollout.model.transformer.makeCache(), tokens: tokens)])
        let adapted = TrainableTransformer(base: lm.transformer, adapter: adapter)
        adapted.training = false
        let reference = adapted.forward([tokens], keep: false).hidden
        let plain = lm.transformer.forward([SequenceInput(cache: lm.transformer.makeCache(), tokens: tokens)])
        var diff: Float = 0, moved: Float = 0
        for i in 0..<merged.count { diff = max(diff, abs(merged.data[i] - reference.data[i])); moved = max(moved, abs(plain.data[i] - reference.data[i])) }
        #expect(diff < 1e-4, "merged vs adapter: \(diff)")
        #expect(moved > 1e-2, "the adapter must change the output for this test to mean anything (\(moved))")
        withExtendedLifetime((merged, reference, plain)) {}
    }

    func config(_ algorithm: RLAlgorithm, steps: Int) -> PPOConfig {
        var c = PPOConfig()
        c.algorithm = algorithm
        c.steps = steps
        c.batchSize = algorithm == .rloo ? 4 : 8
        c.rlooK = 4
        c.learningRate = 3e-2
        c.klCoef = 0.01
        c.sampling = SamplingParameters(temperature: 1, maxTokens: 6, ignoreEOS: true)
        c.checkpointEvery = 0
        c.seed = 5
        return c
    }

    /// Reward: the share of the target token among the response tokens.
    static func share(_ rollouts: [Rollout]) -> [Double] {
        rollouts.map { r in Double(r.response.filter { $0 == target }.count) / Double(max(r.response.count, 1)) }
    }

    func raisesReward(_ algorithm: RLAlgorithm) throws -> (before: Double, after: Double) {
        let lm = try model()
        let adapter = LoRAAdapter(config: LoRAConfig(rank: 4, alpha: 16), model: lm.config, seed: 1)
        let trainer = PPOTrainer(model: lm, adapter: adapter, config: config(algorithm, steps: 20), reward: Self.share)
        let prompts: [[Int32]] = (0..<8).map { [2, Int32(4 + $0), 7] }
        var scores: [Double] = []
        for s in 1...20 {
            let (m, _) = try trainer.step(prompts, indices: trainer.promptIndices(step: s, count: prompts.count), step: s)
            scores.append(m["objective/scores"]!)
            for key in ["objective/kl", "objective/rlhf_reward", "objective/entropy", "policy/approxkl", "policy/clipfrac",
                        "loss/policy", "response_length"] { #expect(m[key]?.isFinite == true, "\(key)") }
            if algorithm == .ppo { #expect(m["loss/value"]?.isFinite == true) }
        }
        return (scores.prefix(3).reduce(0, +) / 3, scores.suffix(3).reduce(0, +) / 3)
    }

    @Test func ppoRaisesTheRewardOfAToyEnvironment() throws {
        let (before, after) = try raisesReward(.ppo)
        #expect(after > before + 0.2, "PPO: share of the target token \(before) → \(after)")
    }

    @Test func rlooRaisesTheRewardOfAToyEnvironment() throws {
        let (before, after) = try raisesReward(.rloo)
        #expect(after > before + 0.2, "RLOO: share of the target token \(before) → \(after)")
    }

    @Test func interruptedRunResumesToTheSameResult() throws {
        let prompts: [[Int32]] = (0..<8).map { [2, Int32(4 + $0), 7] }
        let ids = prompts.indices.map { "p\($0)" }
        func trainer() throws -> PPOTrainer {
            let lm = try model()
            return PPOTrainer(model: lm, adapter: LoRAAdapter(config: LoRAConfig(rank: 4, alpha: 16), model: lm.config, seed: 1),
                              config: config(.ppo, steps: 4), reward: Self.share)
        }
        let straightDir = scratchURL("precept-ppo-\(UUID())")
        let straight = try trainer()
        let final = try straight.train(prompts: prompts, ids: ids, directory: straightDir, fingerprint: "f")

        let dir = scratchURL("precept-ppo-\(UUID())")
        let first = try trainer()
        var polls = 0
        #expect(throws: TrainingError.interrupted(step: 2)) {
            _ = try first.train(prompts: prompts, ids: ids, directory: dir, fingerprint: "f", shouldStop: { polls += 1; return polls == 2 })
        }
        let resumed = try trainer()
        let again = try resumed.train(prompts: prompts, ids: ids, directory: dir, fingerprint: "f")
        #expect(again["objective/scores"] == final["objective/scores"] && again["loss/policy"] == final["loss/policy"])
        for (a, b) in zip(straight.parameters, resumed.parameters) { #expect(a.value.array == b.value.array, "\(a.name)") }
        let lines = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 4)
        let samples = try String(contentsOf: dir.appendingPathComponent("samples.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(samples.count == 4 * 8)
    }
}
