import Foundation
import ModelKit

/// Per-token estimators of KL(π ‖ π_ref) from one sampled token (Schulman, "Approximating KL
/// Divergence", 2020), with d = log π(y) − log π_ref(y) and r = π_ref/π = e^(−d):
/// k1 = d (unbiased, can be negative), k2 = d²/2, k3 = (r − 1) − log r (unbiased, ≥ 0).
public enum KLEstimator: String, Sendable, Codable, CaseIterable { case k1, k2, k3 }

/// The arithmetic of PPO and RLOO for language models, as TRL's PPOTrainer and RLOOTrainer do it
/// ("The N Implementation Details of RLHF with PPO", Huang et al. 2024). Pure functions over
/// per-token arrays of one response, so each is testable against hand-computed values.
public enum PPOMath {
    /// Scores after TRL's `missing_eos_penalty`: `penalty` is subtracted from each response that
    /// was cut at the token limit (finish `length`); a response ended by an end-of-sequence token
    /// or a stop string keeps its score.
    public static func penaliseMissingEnd(scores: [Double], finishes: [FinishReason], penalty: Double?) -> [Double] {
        guard let penalty else { return scores }
        return zip(scores, finishes).map { $1 == .length ? $0 - penalty : $0 }
    }

    /// One token's KL estimate.
    public static func kl(_ estimator: KLEstimator, logProb: Double, referenceLogProb: Double) -> Double {
        let d = logProb - referenceLogProb
        switch estimator {
        case .k1: return d
        case .k2: return 0.5 * d * d
        case .k3: return exp(-d) - 1 + d
        }
    }

    /// Per-token rewards of one response: −β·KL_t at every token, plus the reward model's score
    /// at the last token (Ziegler et al. 2019 §2; TRL's `rewards[last] += scores`).
    public static func tokenRewards(score: Double, kl: [Double], beta: Double) -> [Double] {
        var r = kl.map { -beta * $0 }
        if !r.isEmpty { r[r.count - 1] += score }
        return r
    }

    /// Generalised advantage estimation (Schulman et al. 2016, eq. 16) over one response:
    /// δ_t = r_t + γ·V_{t+1} − V_t with V_T = 0, A_t = δ_t + γλ·A_{t+1}; returns = A + V.
    public static func gae(rewards: [Double], values: [Double], gamma: Double, lambda: Double) -> (advantages: [Double], returns: [Double]) {
        precondition(rewards.count == values.count)
        let n = rewards.count
        var advantages = [Double](repeating: 0, count: n)
        var next = 0.0, nextValue = 0.0
        for t in stride(from: n - 1, through: 0, by: -1) {
            let delta = rewards[t] + gamma * nextValue - values[t]
            next = delta + gamma * lambda * next
            advantages[t] = next
            nextValue = values[t]
        }
        return (advantages, zip(advantages, values).map { $0 + $1 })
    }

    /// (x − mean) / sqrt(var + 1e-8) over all tokens of a batch (TRL's `masked_whiten`, unbiased
    /// variance); `shiftMean: false` adds the mean back.
    public static func whiten(_ x: [Double], shiftMean: Bool = true) -> [Double] {
        guard x.count > 1 else { return x }
        let mean = x.reduce(0, +) / Double(x.count)
        let variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(x.count - 1)
        let scale = 1 / (variance + 1e-8).squareRoot()
        return x.map { shiftMean ? ($0 - mean) * scale : ($0 - mean) * scale + mean }
    }

    /// The clipped surrogate of one token: ρ = exp(log π − log π_old),
    /// loss = max(−A·ρ, −A·clip(ρ, 1 − ε, 1 + ε)) (PPO paper eq. 7, negated).
    /// `dLogProb` is d loss / d log π: −A·ρ where the unclipped term is the max, else 0.
    /// `clipped` is TRL's clipfrac indicator (the clipped term is strictly larger).
    public static func policyLoss(logProb: Double, oldLogProb: Double, advantage: Double, clip: Double)
        -> (loss: Double, dLogProb: Double, clipped: Bool, ratio: Double) {
        let ratio = exp(logProb - oldLogProb)
        let unclipped = -advantage * ratio
        let clippedTerm = -advantage * min(max(ratio, 1 - clip), 1 + clip)
        if unclipped >= clippedTerm { return (unclipped, -advantage * ratio, false, ratio) }
        return (clippedTerm, 0, true, ratio)
    }

    /// The clipped value loss of one token: v_c = v_old + clip(v − v_old, −ε, ε),
    /// loss = ½·max((v − R)², (v_c − R)²) (TRL's vf_loss). `dValue` is d loss / d v.
    public static func valueLoss(value: Double, oldValue: Double, target: Double, clip: Double)
        -> (loss: Double, dValue: Double, clipped: Bool) {
        let clippedValue = oldValue + min(max(value - oldValue, -clip), clip)
        let l1 = (value - target) * (value - target), l2 = (clippedValue - target) * (clippedValue - target)
        if l1 >= l2 { return (0.5 * l1, value - target, false) }
        // v_c does not move with v once the clip is active.
        let active = abs(value - oldValue) < clip
        return (0.5 * l2, active ? clippedValue - target : 0, true)
    }

    /// RLOO's advantage for k samples of one prompt: A_i = R_i − mean_{j≠i} R_j
    /// (Ahmadian et al. 2024, "Back to Basics"; TRL's RLOOTrainer).
    public static func leaveOneOut(_ rewards: [Double]) -> [Double] {
        let k = Double(rewards.count)
        guard rewards.count > 1 else { return rewards.map { _ in 0 } }
        let sum = rewards.reduce(0, +)
        return rewards.map { $0 - (sum - $0) / (k - 1) }
    }
}

/// The adaptive KL coefficient of Ziegler et al. 2019 §2.2:
/// e = clip(KL/target − 1, −0.2, 0.2), β ← β·(1 + e·n/horizon) after n samples.
public struct AdaptiveKLController: Sendable, Equatable {
    public var value: Double
    public var target: Double
    public var horizon: Double

    public init(value: Double, target: Double, horizon: Double = 10_000) {
        self.value = value
        self.target = target
        self.horizon = horizon
    }

    public mutating func update(kl: Double, samples n: Int) {
        let error = min(max(kl / target - 1, -0.2), 0.2)
        value *= 1 + error * Double(n) / horizon
    }
}
