import Foundation

/// DPO loss variants, named as TRL names them (`loss_type`).
public enum DPOLossKind: String, Sendable, Codable, CaseIterable {
    case sigmoid, ipo, robust, hinge
}

/// A loss value with its gradient with respect to the two inputs it was computed from.
public struct PairLoss: Sendable, Equatable {
    public var loss: Double
    public var dChosen: Double
    public var dRejected: Double
}

/// log σ(x), computed without overflow: min(x, 0) − log(1 + e^−|x|).
@inlinable func logSigmoid(_ x: Double) -> Double { min(x, 0) - log1p(exp(-abs(x))) }
@inlinable func sigmoid(_ x: Double) -> Double { x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)) }

/// The DPO family of losses (Rafailov et al. 2023; IPO: Azar et al. 2023; robust/conservative:
/// Chowdhury et al. 2024; hinge: SLiC), in TRL's formulation. With
///   Δ = (log π(y_c) − log π(y_r)) − (log π_ref(y_c) − log π_ref(y_r)),  ε = label smoothing:
///   sigmoid: −(1−ε)·log σ(βΔ) − ε·log σ(−βΔ)
///   robust:  (−(1−ε)·log σ(βΔ) + ε·log σ(−βΔ)) / (1 − 2ε)
///   hinge:   max(0, 1 − βΔ)
///   ipo:     (Δ − 1/(2β))²   (TRL feeds IPO per-token average log-probs; the caller does that)
/// The gradient is returned for the policy log-probs: dL/dlog π(y_c) = dL/dΔ = −dL/dlog π(y_r).
public func dpoLoss(_ kind: DPOLossKind, beta: Double, labelSmoothing: Double = 0,
                    policyChosen: Double, policyRejected: Double, referenceChosen: Double, referenceRejected: Double) -> PairLoss {
    let delta = (policyChosen - policyRejected) - (referenceChosen - referenceRejected)
    let e = labelSmoothing, z = beta * delta
    let loss: Double, dDelta: Double
    switch kind {
    case .sigmoid:
        loss = -(1 - e) * logSigmoid(z) - e * logSigmoid(-z)
        dDelta = beta * (-(1 - e) * sigmoid(-z) + e * sigmoid(z))
    case .robust:
        loss = (-(1 - e) * logSigmoid(z) + e * logSigmoid(-z)) / (1 - 2 * e)
        dDelta = beta * (-(1 - e) * sigmoid(-z) - e * sigmoid(z)) / (1 - 2 * e)
    case .hinge:
        loss = max(0, 1 - z)
        dDelta = 1 - z > 0 ? -beta : 0
    case .ipo:
        let target = 1 / (2 * beta)
        loss = (delta - target) * (delta - target)
        dDelta = 2 * (delta - target)
    }
    return PairLoss(loss: loss, dChosen: dDelta, dRejected: -dDelta)
}

/// Bradley-Terry reward-model loss with a soft target p = P(chosen ≻ rejected) (the judge's label;
/// p = 1 is TRL's hard-label loss):
///   Δ = r_c − r_r − margin,  L = −p·log σ(Δ) − (1−p)·log σ(−Δ) + c·(r_c + r_r)²
/// where c is TRL's `center_rewards_coefficient`. dL/dΔ = σ(Δ) − p.
public func bradleyTerryLoss(chosen: Double, rejected: Double, target p: Double, margin: Double = 0,
                             centering c: Double = 0) -> PairLoss {
    let delta = chosen - rejected - margin
    let sum = chosen + rejected
    let loss = -p * logSigmoid(delta) - (1 - p) * logSigmoid(-delta) + c * sum * sum
    let d = sigmoid(delta) - p
    return PairLoss(loss: loss, dChosen: d + 2 * c * sum, dRejected: -d + 2 * c * sum)
}
