import Foundation
import Testing
import ModelKit
import TensorKit
import TestSupport
@testable import TrainKit

/// End-to-end gradients of a whole tiny random model (every op of both architectures: embedding,
/// RMSNorm incl. QK-norm and post-norms, RoPE both styles, attention with causal and sliding-window
/// masks and GQA, SiLU and GELU-tanh gated MLPs, LoRA on all seven projections, the chunked LM-head
/// log-softmax and the reward head) against central finite differences of the forward pass.
@Suite struct ModelGradientTests {
    func load(_ family: TinyModel.Family) throws -> LanguageModel {
        let url = scratchURL("precept-grad-\(family)-\(UUID()).gguf")
        try TinyModel(family: family, seed: 7).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        return try LanguageModel(path: url.path)
    }

    /// L = Σ cᵢ·log p(tᵢ) over some positions + Σ d_s·r_s over sequences: touches both heads.
    struct Objective {
        let sequences: [[Int32]] = [[2, 5, 9, 4, 11, 7, 3], [2, 8, 6, 12, 10]]
        var rows: [Int] = [1, 2, 4, 5, 7, 9, 10]
        var targets: [Int32] = [9, 4, 7, 3, 6, 12, 10]
        var c: [Float] = [0.7, -1.1, 0.4, 1.3, -0.6, 0.9, 0.5]
        var d: [Float] = [0.8, -1.2]
        var lastRows: [Int] = [6, 11]

        func loss(_ model: TrainableTransformer, _ head: TokenLogProbHead, _ rm: RewardHead) -> Double {
            let acts = model.forward(sequences, keep: false)
            let lp = head.logProbs(acts.hidden, rows: rows, targets: targets)
            var total = zip(lp, c).reduce(0.0) { $0 + Double($1.0 * $1.1) }
            for (row, dr) in zip(lastRows, d) { total += Double(dr * rm.score(acts.hidden, row: row)) }
            return total
        }
    }

    @Test(arguments: [TinyModel.Family.llama3, .gemma3])
    func wholeModelGradientsMatchFiniteDifferences(family: TinyModel.Family) throws {
        let lm = try load(family)
        let adapter = LoRAAdapter(config: LoRAConfig(rank: 2, alpha: 4), model: lm.config, seed: 3)
        // Non-zero B so the gradient reaches A as well (B = 0 at init would zero it).
        var s: UInt64 = 11
        for p in adapter.parameters where p.name.contains("lora_B") {
            for i in 0..<p.value.count {
                s = s &* 6364136223846793005 &+ 1442695040888963407
                p.value[i] = (Float(s >> 40) / Float(1 << 24) * 2 - 1) * 0.5
            }
        }
        let model = TrainableTransformer(base: lm.transformer, adapter: adapter)
        let head = TokenLogProbHead(head: lm.transformer.weights.head)
        let rm = RewardHead(hidden: lm.config.hidden, seed: 5)
        for i in 0..<rm.weight.count { rm.weight[i] *= 40 }
        let objective = Objective()

        // Analytic gradients.
        let acts = model.forward(objective.sequences)
        let dHidden = Tensor(shape: [acts.rows, lm.config.hidden])
        head.backward(acts.hidden, rows: objective.rows, targets: objective.targets, weights: objective.c, into: dHidden)
        for (row, dr) in zip(objective.lastRows, objective.d) { rm.backward(acts.hidden, row: row, dScore: dr, into: dHidden) }
        let dx = model.backward(acts, dHidden: dHidden)
        let dEmbedding = Tensor(shape: [lm.config.vocabSize, lm.config.hidden])
        embedding_backward(dEmbedding.data, dx: dx.data, tokens: objective.sequences.flatMap { $0 },
                           hidden: lm.config.hidden, scale: lm.config.embeddingScale)

        func check(_ name: String, _ value: Tensor, _ gradient: Tensor, every stride: Int = 1) -> Int {
            var failures = 0
            for i in Swift.stride(from: 0, to: value.count, by: stride) {
                let saved = value[i], eps: Float = family == .gemma3 ? 2e-3 : 1e-2
                value[i] = saved + eps
                let plus = objective.loss(model, head, rm)
                value[i] = saved - eps
                let minus = objective.loss(model, head, rm)
                value[i] = saved
                let numeric = (plus - minus) / Double(2 * eps), analytic = Double(gradient[i])
                if abs(numeric - analytic) > 2e-3 + 2e-2 * abs(numeric) {
                    failures += 1
                    if failures <= 3 { Issue.record("\(family) \(name)[\(i)]: analytic \(analytic) vs numeric \(numeric)") }
                }
            }
            return failures
        }
        var checked = 0, failed = 0
        for p in adapter.parameters {
            failed += check(p.name, p.value, p.gradient)
            checked += p.value.count
        }
        failed += check("score.weight", rm.weight, rm.gradient)
        // The input embeddings (the tied LM head on Gemma is perturbed too, so check the untied Llama).
        if family == .llama3 { failed += check("token_embd", lm.transformer.weights.embedding.dense, dEmbedding, every: 3) }
        #expect(failed == 0, "\(failed) of \(checked) LoRA gradients and the head gradients disagree")
        #expect(adapter.parameters.count == lm.config.layers * 14)
    }

    @Test func zeroInitialisedAdapterEqualsTheBaseModel() throws {
        let lm = try load(.gemma3)
        let adapter = LoRAAdapter(config: LoRAConfig(rank: 4, alpha: 8, dropout: 0.1), model: lm.config, seed: 1)
        let model = TrainableTransformer(base: lm.transformer, adapter: adapter)
        let tokens: [Int32] = [2, 5, 9, 4, 11, 7]
        let trained = model.forward([tokens], keep: true)
        // The inference forward with Float32 activations on the same weights: the same function,
        // summed in another order (inference attention is CQuant's row-by-row kernel).
        let base = Transformer(config: lm.config, weights: lm.transformer.weights, int8Activations: false)
        let reference = base.forward([SequenceInput(cache: base.makeCache(), tokens: tokens)])
        let scale = reference.array.map(abs).max() ?? 1
        let worst = zip(trained.hidden.array, reference.array).map { abs($0 - $1) }.max() ?? 0
        #expect(worst <= 1e-5 * max(scale, 1), "zero adapter vs base model: \(worst) (largest \(scale))")
    }
}

/// Backward of the embedding lookup x_r = scale · E[tokens_r]: dE[tokens_r] += scale · dx_r.
/// Shapes: `dEmbedding` (vocab, hidden), accumulated; `dx` (T, hidden); `tokens` (T).
func embedding_backward(_ dEmbedding: UnsafeMutablePointer<Float>, dx: UnsafePointer<Float>, tokens: [Int32],
                               hidden: Int, scale: Float) {
    for (r, token) in tokens.enumerated() {
        let dst = dEmbedding + Int(token) * hidden, src = dx + r * hidden
        for j in 0..<hidden { dst[j] += scale * src[j] }
    }
}
