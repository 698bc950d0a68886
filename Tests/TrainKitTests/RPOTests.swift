import Foundation
import Testing
import ModelKit
import TensorKit
import TestSupport
@testable import TrainKit

/// DPO with the RPO term (`rpo_alpha`) and PPO's missing-EOS penalty and truncation monitor.
@Suite struct RPOTests {
    /// The accumulated gradient of DPO + α·NLL equals a central finite difference of the reported
    /// loss, for α = 0 and α = 1, and with length desensitization (`ld_alpha` 0.5) under α = 0.5,
    /// on a LoRA B entry of a tiny model.
    @Test func rpoGradientMatchesFiniteDifferences() throws {
        let url = scratchURL("precept-rpo-\(UUID()).gguf")
        try TinyModel(family: .gemma3, seed: 21).write(to: url)
        let lm = try LanguageModel(path: url.path)
        let pairs = (0..<3).map { (i: Int) -> PreferenceExample in
            let first = Int32(10 + i)
            let prompt: [Int32] = [2, Int32(4 + i), 7]
            return PreferenceExample(id: "p\(i)", prompt: prompt, chosen: [first, 20, 21], rejected: [first, 30], probability: 1)
        }
        var losses: [Double: Double] = [:]
        for (alpha, ld) in [(0.0, 1.0), (1.0, 1.0), (0.5, 0.5)] {
            let adapter = LoRAAdapter(config: LoRAConfig(rank: 2, alpha: 4), model: lm.config, seed: 3)
            // Give B non-zero values so the gradient flows through A as well.
            for p in adapter.parameters where p.name.hasSuffix("lora_B.weight") { for i in 0..<p.value.count { p.value.data[i] = Float(i % 7) * 0.01 - 0.03 } }
            let model = TrainableTransformer(base: lm.transformer, adapter: adapter)
            var c = DPOConfig()
            c.beta = 0.5
            c.rpoAlpha = alpha
            c.ldAlpha = ld
            let dpo = DPOTrainer(model: model, config: c)
            var data = pairs
            dpo.precomputeReference(&data)
            for p in dpo.parameters { p.gradient.data.update(repeating: 0, count: p.gradient.count) }
            let metrics = dpo.accumulate(data, weight: 1)
            losses[alpha] = metrics["loss"]!
            if alpha > 0 { #expect(metrics["nll_loss"]! > 0) } else { #expect(metrics["nll_loss"] == nil) }
            let p = dpo.parameters.first { $0.name.hasSuffix("lora_B.weight") }!
            for index in [0, 5, p.value.count - 1] {
                let analytic = Double(p.gradient.data[index])
                let saved = p.value.data[index]
                let eps: Float = 1e-2
                p.value.data[index] = saved + eps
                let up = dpo.evaluate(data)["loss"]!
                p.value.data[index] = saved - eps
                let down = dpo.evaluate(data)["loss"]!
                p.value.data[index] = saved
                let numeric = (up - down) / Double(2 * eps)
                #expect(abs(analytic - numeric) <= 2e-3 + 0.05 * abs(numeric), "α \(alpha) ld \(ld) index \(index): \(analytic) vs \(numeric)")
            }
        }
        // The NLL term only adds: α·(mean per-token NLL of the chosen responses) > 0.
        #expect(losses[1.0]! > losses[0.0]!)
    }

    /// LD-DPO: the longer response's tokens past the shorter one's length count `ld_alpha` times, so a
    /// sequence's log-probability is linear in α between "shared tokens only" (0) and plain DPO (1);
    /// the plain sums (RPO's NLL) do not move.
    @Test func lengthDesensitizedLogProbsWeighTheExcessTokens() throws {
        let url = scratchURL("precept-ld-\(UUID()).gguf")
        try TinyModel(family: .gemma3, seed: 22).write(to: url)
        let lm = try LanguageModel(path: url.path)
        // Pair 1: chosen longer by 2 tokens; pair 2: rejected longer by 1.
        let pairs = [PreferenceExample(id: "a", prompt: [2, 5, 7], chosen: [10, 20, 21, 22], rejected: [10, 30], probability: 1),
                     PreferenceExample(id: "b", prompt: [2, 6], chosen: [11, 23], rejected: [11, 31, 32], probability: 1)]
        var results: [Double: (weighted: [Double], plain: [Double])] = [:]
        for ld in [0.0, 0.25, 1.0] {
            var c = DPOConfig()
            c.ldAlpha = ld
            let dpo = DPOTrainer(model: TrainableTransformer(base: lm.transformer, adapter: nil), config: c)
            let (sequences, rows, targets) = dpo.layout(pairs)
            #expect(dpo.tokenWeights(rows) == [[1, 1, ld, ld], [1, 1], [1, 1], [1, 1, ld]])
            let acts = dpo.model.forward(sequences, keep: false)
            let (weighted, plain, _) = dpo.sequenceLogProbs(acts.hidden, rows: rows, targets: targets)
            results[ld] = (weighted, plain)
        }
        for s in 0..<4 {
            let (shared, full) = (results[0]!.weighted[s], results[1]!.weighted[s])
            #expect(abs(results[0.25]!.weighted[s] - (shared + 0.25 * (full - shared))) < 1e-6)
            #expect(abs(results[0.25]!.plain[s] - results[1]!.plain[s]) < 1e-9)
        }
        // Sequences whose tokens all lie within the shorter length are unchanged; the others lose their tail.
        #expect(results[0]!.weighted[1] == results[1]!.weighted[1] && results[0]!.weighted[2] == results[1]!.weighted[2])
        #expect(results[0]!.weighted[0] > results[1]!.weighted[0] && results[0]!.weighted[3] > results[1]!.weighted[3])
    }

    @Test func missingEndPenaltyOnlyHitsTruncatedResponses() {
        let scores = [1.0, 0.5, -0.25, 2.0]
        let finishes: [FinishReason] = [.endOfSequence, .length, .stopString, .length]
        #expect(PPOMath.penaliseMissingEnd(scores: scores, finishes: finishes, penalty: 1.5) == [1.0, -1.0, -0.25, 0.5])
        #expect(PPOMath.penaliseMissingEnd(scores: scores, finishes: finishes, penalty: nil) == scores)
    }

    @Test func truncationMonitorFiresAboveItsBound() {
        var config = MonitorConfig()
        config.maxTruncationRate = 0.25
        config.stopOn = [.truncation]
        var m = TrainingMonitors(config: config)
        let fine = m.check(MonitorSample(rewardMean: 0, rewardStd: 1, kl: 1, length: 10, distinct2: 0.8, truncationRate: 0.25), step: 1)
        #expect(fine.isEmpty)
        let w = m.check(MonitorSample(rewardMean: 0, rewardStd: 1, kl: 1, length: 10, distinct2: 0.8, truncationRate: 0.5), step: 2)
        #expect(w.map(\.kind) == [.truncation])
        #expect(w.first?.stops == true)
        #expect(w.first?.message.contains("50% of responses hit the token limit") == true)
    }
}
