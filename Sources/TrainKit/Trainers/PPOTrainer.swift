import Foundation
import ModelKit
import TensorKit

/// The RL algorithm of a PPOTrainer.
public enum RLAlgorithm: String, Sendable, Codable, CaseIterable {
    /// PPO with a value head on the policy backbone and GAE.
    case ppo
    /// REINFORCE leave-one-out: k samples per prompt, critic-free.
    case rloo
}

/// Configuration of PPO / RLOO (TRL's PPOConfig and RLOOConfig, trimmed).
public struct PPOConfig: Sendable, Equatable {
    public var algorithm = RLAlgorithm.ppo
    /// Optimisation steps; each samples a fresh batch of rollouts.
    public var steps = 20
    /// Prompts per step (RLOO samples `rlooK` responses for each).
    public var batchSize = 8
    /// Passes over each batch of rollouts; each pass is one optimiser update.
    public var ppoEpochs = 2
    /// Peak learning rate, decayed linearly to 0 over all updates (TRL's `anneal_lr`).
    public var learningRate = 1e-5
    public var weightDecay = 0.0
    public var maxGradNorm = 1.0
    /// β of the per-token KL penalty.
    public var klCoef = 0.05
    public var adaptiveKL = false
    /// Target of the adaptive controller: KL per response, in nats.
    public var targetKL = 6.0
    public var klHorizon = 10_000.0
    public var klEstimator = KLEstimator.k1
    public var gamma = 1.0
    public var lambda = 0.95
    public var clipRange = 0.2
    public var clipRangeValue = 0.2
    /// Weight of the value loss in PPO's total loss (TRL's `vf_coef`).
    public var valueCoef = 0.1
    /// Whiten advantages over the batch (default: on for PPO, off for RLOO, as in TRL).
    public var whitenAdvantages: Bool?
    public var rlooK = 4
    /// Sampling of rollouts (temperature 1: on-policy samples).
    public var sampling = SamplingParameters(temperature: 1, maxTokens: 64)
    /// Cap on tokens per forward/backward pass (rollouts are grouped up to it).
    public var microBatchTokens = 2048
    public var checkpointEvery = 5
    public var seed: UInt64 = 0
    public var monitors = MonitorConfig()
    /// Subtracted from the score of a response that hit the token limit without ending (TRL's
    /// `missing_eos_penalty`; here a stop string also counts as an ending); nil: no penalty.
    public var missingEOSPenalty: Double?

    public init() {}
}

/// One sampled response and everything PPO computes about it.
public struct Rollout: Sendable {
    /// Index of its prompt in the trainer's prompt list.
    public var prompt: Int
    public var promptTokens: [Int32]
    /// Sampled tokens, ending with the end-of-sequence token when the model emitted one.
    public var response: [Int32]
    public var text: String
    public var finish: FinishReason
    public var score = 0.0
    public var logProbs: [Double] = []
    public var referenceLogProbs: [Double] = []
    public var values: [Double] = []
    public var advantages: [Double] = []
    public var returns: [Double] = []

    /// Σ_t KL_t of the response.
    public var kl: [Double] = []
}

/// PPO (Schulman et al. 2017) as used for RLHF (Ziegler et al. 2019; Ouyang et al. 2022; TRL): the
/// policy is the base plus a LoRA adapter, the frozen reference is the base without it, a value
/// head reads the policy's final hidden states. Each step samples rollouts from the current
/// policy (adapter merged in memory, batched generation), scores them with `reward`, shapes
/// per-token rewards with a KL penalty, estimates advantages (GAE, or RLOO's leave-one-out
/// baseline), and runs `ppoEpochs` clipped-surrogate updates.
public final class PPOTrainer {
    public let config: PPOConfig
    public let policy: TrainableTransformer
    public let reference: TrainableTransformer
    public let rollout: RolloutModel
    /// PPO's value head on the policy backbone (nil for RLOO).
    public let valueHead: RewardHead?
    public let head: TokenLogProbHead
    /// Scores finished rollouts (one score per rollout, in order).
    public let reward: ([Rollout]) throws -> [Double]
    public internal(set) var klController: AdaptiveKLController
    public internal(set) var monitors: TrainingMonitors
    let optimisers: [AdamW]

    public init(model: LanguageModel, adapter: LoRAAdapter, config: PPOConfig, reward: @escaping ([Rollout]) throws -> [Double]) {
        self.config = config
        self.reward = reward
        policy = TrainableTransformer(base: model.transformer, adapter: adapter)
        reference = TrainableTransformer(base: model.transformer, adapter: nil)
        rollout = RolloutModel(base: model, adapter: adapter)
        valueHead = config.algorithm == .ppo ? RewardHead(hidden: model.config.hidden, seed: config.seed ^ 0x7A1E) : nil
        head = TokenLogProbHead(head: model.transformer.weights.head)
        klController = AdaptiveKLController(value: config.klCoef, target: config.targetKL, horizon: config.klHorizon)
        monitors = TrainingMonitors(config: config.monitors)
        let adam = AdamWConfig(learningRate: Float(config.learningRate), weightDecay: Float(config.weightDecay))
        optimisers = (0..<(adapter.parameters.count + (config.algorithm == .ppo ? 1 : 0))).map { _ in AdamW(config: adam) }
    }

    /// Trainable tensors: the adapter's, then the value head as TRL's value-head model names it.
    public var parameters: [(name: String, value: Tensor, gradient: Tensor)] {
        (policy.adapter?.parameters ?? []) + (valueHead.map { [("v_head.summary.weight", $0.weight, $0.gradient)] } ?? [])
    }

    var whiten: Bool { config.whitenAdvantages ?? (config.algorithm == .ppo) }
    var updatesPerRun: Int { config.steps * config.ppoEpochs }

    // MARK: Rollouts

    /// Prompt indices of a step: a seeded permutation per pass over the prompts.
    public func promptIndices(step: Int, count: Int) -> [Int] {
        (0..<config.batchSize).map { i in
            let g = (step - 1) * config.batchSize + i
            return seededPermutation(count, seed: config.seed &+ UInt64(g / count + 1) &* 0x9E37_79B9_7F4A_7C15)[g % count]
        }
    }

    /// Samples responses from the current policy (the merged rollout model) and scores them.
    public func sample(_ prompts: [[Int32]], indices: [Int], step: Int) throws -> [Rollout] {
        let copies = config.algorithm == .rloo ? config.rlooK : 1
        var requests: [GenerationRequest] = [], owners: [Int] = []
        for (i, p) in indices.enumerated() {
            for k in 0..<copies {
                var parameters = config.sampling
                parameters.seed = config.seed &+ UInt64(step) &* 1_000_003 &+ UInt64(i * copies + k) &* 7919
                requests.append(GenerationRequest(prompt: prompts[p], parameters: parameters))
                owners.append(p)
            }
        }
        let generations = Generator(model: rollout.model).generate(requests)
        var rollouts = zip(owners, generations).map { p, g in
            Rollout(prompt: p, promptTokens: prompts[p], response: g.tokens + (g.stopToken.map { [$0] } ?? []), text: g.text,
                    finish: g.finishReason)
        }
        let scores = try reward(rollouts)
        precondition(scores.count == rollouts.count, "the reward function must return one score per rollout")
        let penalised = PPOMath.penaliseMissingEnd(scores: scores, finishes: rollouts.map(\.finish), penalty: config.missingEOSPenalty)
        for i in rollouts.indices { rollouts[i].score = penalised[i] }
        return rollouts
    }

    // MARK: Passes

    /// Rows of the hidden states that predict each response token: the one before it.
    static func layout(_ batch: ArraySlice<Rollout>) -> (sequences: [[Int32]], rows: [[Int]], targets: [[Int32]]) {
        var sequences: [[Int32]] = [], rows: [[Int]] = [], targets: [[Int32]] = []
        var offset = 0
        for r in batch {
            sequences.append(r.promptTokens + r.response)
            rows.append(responseRows(offset: offset, promptCount: r.promptTokens.count, responseCount: r.response.count))
            targets.append(r.response)
            offset += r.promptTokens.count + r.response.count
        }
        return (sequences, rows, targets)
    }

    /// Consecutive groups of rollouts within `microBatchTokens`.
    func microBatches(_ rollouts: [Rollout]) -> [Range<Int>] {
        var out: [Range<Int>] = [], start = 0, tokens = 0
        for (i, r) in rollouts.enumerated() {
            let t = r.promptTokens.count + r.response.count
            if i > start && tokens + t > config.microBatchTokens { out.append(start..<i); start = i; tokens = 0 }
            tokens += t
        }
        if start < rollouts.count { out.append(start..<rollouts.count) }
        return out
    }

    /// Old log-probabilities and values (policy), reference log-probabilities, without gradients.
    func scoreRollouts(_ rollouts: inout [Rollout]) {
        policy.training = false
        defer { policy.training = true }
        for range in microBatches(rollouts) {
            let (sequences, rows, targets) = Self.layout(rollouts[range])
            let acts = policy.forward(sequences, keep: false)
            let lp = head.forward(acts.hidden, rows: rows.flatMap { $0 }, targets: targets.flatMap { $0 }).logProbs
            let ref = reference.forward(sequences, keep: false)
            let refLp = head.forward(ref.hidden, rows: rows.flatMap { $0 }, targets: targets.flatMap { $0 }).logProbs
            var k = 0
            for (j, i) in range.enumerated() {
                let n = rows[j].count
                rollouts[i].logProbs = lp[k..<(k + n)].map(Double.init)
                rollouts[i].referenceLogProbs = refLp[k..<(k + n)].map(Double.init)
                rollouts[i].values = valueHead.map { h in rows[j].map { Double(h.score(acts.hidden, row: $0)) } } ?? []
                k += n
            }
        }
    }

    /// KL penalties, advantages and returns of every rollout.
    func estimateAdvantages(_ rollouts: inout [Rollout]) {
        let beta = klController.value
        for i in rollouts.indices {
            rollouts[i].kl = zip(rollouts[i].logProbs, rollouts[i].referenceLogProbs).map {
                PPOMath.kl(config.klEstimator, logProb: $0, referenceLogProb: $1)
            }
        }
        switch config.algorithm {
        case .ppo:
            for i in rollouts.indices {
                let rewards = PPOMath.tokenRewards(score: rollouts[i].score, kl: rollouts[i].kl, beta: beta)
                (rollouts[i].advantages, rollouts[i].returns) = PPOMath.gae(rewards: rewards, values: rollouts[i].values,
                                                                            gamma: config.gamma, lambda: config.lambda)
            }
        case .rloo:
            // Sequence reward R = score − β·Σ KL_t; baseline = mean R of the prompt's other samples.
            let k = config.rlooK
            for group in stride(from: 0, to: rollouts.count, by: k) {
                let members = group..<min(group + k, rollouts.count)
                let totals = members.map { rollouts[$0].score - beta * rollouts[$0].kl.reduce(0, +) }
                for (i, a) in zip(members, PPOMath.leaveOneOut(totals)) {
                    rollouts[i].advantages = [Double](repeating: a, count: rollouts[i].response.count)
                }
            }
        }
        if whiten {
            let flat = PPOMath.whiten(rollouts.flatMap(\.advantages))
            var k = 0
            for i in rollouts.indices {
                let n = rollouts[i].advantages.count
                rollouts[i].advantages = Array(flat[k..<(k + n)])
                k += n
            }
        }
    }

    /// One PPO epoch over the batch: accumulates gradients of the mean clipped losses; returns
    /// the epoch's sums (policy loss, value loss, clipped tokens, value-clipped tokens, approx KL, ratio).
    func accumulateEpoch(_ rollouts: [Rollout]) -> [String: Double] {
        policy.training = true
        let totalTokens = Double(rollouts.reduce(0) { $0 + $1.response.count })
        var pg = 0.0, vf = 0.0, clipped = 0.0, vClipped = 0.0, approxKL = 0.0, ratio = 0.0
        for range in microBatches(rollouts) {
            let (sequences, rows, targets) = Self.layout(rollouts[range])
            let acts = policy.forward(sequences)
            let flatRows = rows.flatMap { $0 }, flatTargets = targets.flatMap { $0 }
            let (lp, lse) = head.forward(acts.hidden, rows: flatRows, targets: flatTargets)
            let dHidden = Tensor(shape: [acts.rows, policy.config.hidden])
            var weights = [Float](repeating: 0, count: flatRows.count)
            var k = 0
            for (j, i) in range.enumerated() {
                let r = rollouts[i]
                for t in 0..<r.response.count {
                    let p = PPOMath.policyLoss(logProb: Double(lp[k]), oldLogProb: r.logProbs[t], advantage: r.advantages[t],
                                               clip: config.clipRange)
                    pg += p.loss
                    weights[k] = Float(p.dLogProb / totalTokens)
                    if p.clipped { clipped += 1 }
                    ratio += p.ratio
                    approxKL += 0.5 * (Double(lp[k]) - r.logProbs[t]) * (Double(lp[k]) - r.logProbs[t])
                    if let valueHead {
                        let row = rows[j][t]
                        let v = PPOMath.valueLoss(value: Double(valueHead.score(acts.hidden, row: row)), oldValue: r.values[t],
                                                  target: r.returns[t], clip: config.clipRangeValue)
                        vf += v.loss
                        if v.clipped { vClipped += 1 }
                        valueHead.backward(acts.hidden, row: row, dScore: Float(config.valueCoef * v.dValue / totalTokens), into: dHidden)
                    }
                    k += 1
                }
            }
            head.backward(acts.hidden, rows: flatRows, targets: flatTargets, weights: weights, logSumExp: lse, into: dHidden)
            _ = policy.backward(acts, dHidden: dHidden)
        }
        var out = ["loss/policy": pg / totalTokens, "policy/clipfrac": clipped / totalTokens,
                   "policy/approxkl": approxKL / totalTokens, "val/ratio": ratio / totalTokens]
        if valueHead != nil {
            out["loss/value"] = vf / totalTokens
            out["val/clipfrac"] = vClipped / totalTokens
        }
        return out
    }

    /// One RL step on the prompts at `indices`: rollouts, advantages, `ppoEpochs` updates.
    /// Returns the step's metrics (TRL's names) and its rollouts.
    public func step(_ prompts: [[Int32]], indices: [Int], step: Int) throws -> (metrics: [String: Double], rollouts: [Rollout]) {
        var rollouts = try sample(prompts, indices: indices, step: step)
        scoreRollouts(&rollouts)
        estimateAdvantages(&rollouts)
        var sums: [String: Double] = [:]
        var gradNorm = 0.0
        for epoch in 0..<config.ppoEpochs {
            for p in parameters { p.gradient.data.update(repeating: 0, count: p.gradient.count) }
            for (k, v) in accumulateEpoch(rollouts) { sums[k, default: 0] += v / Double(config.ppoEpochs) }
            gradNorm = clipGradientNorm(parameters, maxNorm: config.maxGradNorm)
            let update = (step - 1) * config.ppoEpochs + epoch
            let lr = config.learningRate * (1 - Double(update) / Double(max(updatesPerRun, 1)))
            for (p, adam) in zip(parameters, optimisers) {
                adam.update(p.value.data, gradients: p.gradient.data, count: p.value.count, learningRate: Float(lr))
            }
            rollout.refresh()
        }
        let n = Double(rollouts.count)
        let scores = rollouts.map(\.score)
        let meanScore = scores.reduce(0, +) / n
        let klSums = rollouts.map { $0.kl.reduce(0, +) }
        let meanKL = klSums.reduce(0, +) / n
        var metrics = sums
        metrics["objective/scores"] = meanScore
        metrics["objective/kl"] = meanKL
        metrics["objective/non_score_reward"] = -klController.value * meanKL
        metrics["objective/rlhf_reward"] = meanScore - klController.value * meanKL
        // As TRL: the sampled tokens' summed −log π, a Monte-Carlo estimate of the entropy.
        metrics["objective/entropy"] = rollouts.reduce(0) { $0 - $1.logProbs.reduce(0, +) } / n
        metrics["objective/kl_coef"] = klController.value
        metrics["reward_std"] = (scores.reduce(0) { $0 + ($1 - meanScore) * ($1 - meanScore) } / n).squareRoot()
        metrics["response_length"] = rollouts.reduce(0) { $0 + Double($1.response.count) } / n
        metrics["val/num_eos_tokens"] = Double(rollouts.filter { $0.finish == .endOfSequence }.count)
        metrics["truncation_rate"] = Double(rollouts.filter { $0.finish == .length }.count) / n
        metrics["distinct_2"] = distinctN(rollouts.map(\.text), n: 2)
        metrics["grad_norm"] = gradNorm
        metrics["learning_rate"] = config.learningRate * (1 - Double((step - 1) * config.ppoEpochs) / Double(max(updatesPerRun, 1)))
        if config.adaptiveKL { klController.update(kl: meanKL, samples: rollouts.count) }
        return (metrics, rollouts)
    }
}
