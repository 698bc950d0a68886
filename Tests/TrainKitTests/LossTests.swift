import Foundation
import Testing
@testable import TrainKit

/// Each DPO loss and the Bradley-Terry loss against values worked out by hand for given
/// log-probabilities, and their gradients against the same hand derivations.
@Suite struct LossTests {
    // Policy log-probs −10 / −14, reference −11 / −13: Δ = (−10 + 14) − (−11 + 13) = 2.
    let pc = -10.0, pr = -14.0, rc = -11.0, rr = -13.0

    func loss(_ kind: DPOLossKind, beta: Double, smoothing: Double = 0) -> PairLoss {
        dpoLoss(kind, beta: beta, labelSmoothing: smoothing, policyChosen: pc, policyRejected: pr, referenceChosen: rc, referenceRejected: rr)
    }

    @Test func sigmoidLoss() {
        // β = 0.5: z = 1, L = −log σ(1) = log(1 + e⁻¹) = 0.3132617; dL/dΔ = −β·σ(−1) = −0.5·0.2689414.
        let l = loss(.sigmoid, beta: 0.5)
        #expect(abs(l.loss - 0.313_261_687_5) < 1e-9)
        #expect(abs(l.dChosen - -0.134_470_711_3) < 1e-9)
        #expect(l.dRejected == -l.dChosen)
        // Label smoothing 0.1: L = 0.9·0.3132617 + 0.1·log(1 + e) = 0.2819355 + 0.1313262 = 0.4132617.
        let s = loss(.sigmoid, beta: 0.5, smoothing: 0.1)
        #expect(abs(s.loss - 0.413_261_687_5) < 1e-9)
        // dL/dΔ = 0.5·(−0.9·σ(−1) + 0.1·σ(1)) = 0.5·(−0.2420473 + 0.0731059) = −0.0844707.
        #expect(abs(s.dChosen - -0.084_470_711_3) < 1e-9)
    }

    @Test func robustLoss() {
        // ε = 0.1, β = 0.5: (0.9·0.3132617 − 0.1·1.3132617)/0.8 = (0.2819355 − 0.1313262)/0.8 = 0.1882617.
        let l = loss(.robust, beta: 0.5, smoothing: 0.1)
        #expect(abs(l.loss - 0.188_261_687_5) < 1e-9)
        // dL/dΔ = 0.5·(−0.9·σ(−1) − 0.1·σ(1))/0.8 = 0.5·(−0.2420473 − 0.0731059)/0.8 = −0.19697071.
        #expect(abs(l.dChosen - -0.196_970_710_7) < 1e-9)
    }

    @Test func hingeLoss() {
        // β = 0.25: 1 − βΔ = 0.5 > 0 → L = 0.5, dL/dΔ = −β; β = 1: 1 − 2 < 0 → 0 and no gradient.
        #expect(loss(.hinge, beta: 0.25) == PairLoss(loss: 0.5, dChosen: -0.25, dRejected: 0.25))
        #expect(loss(.hinge, beta: 1) == PairLoss(loss: 0, dChosen: 0, dRejected: 0))
    }

    @Test func ipoLoss() {
        // β = 0.1: target 1/(2β) = 5; L = (2 − 5)² = 9; dL/dΔ = 2·(2 − 5) = −6.
        #expect(loss(.ipo, beta: 0.1) == PairLoss(loss: 9, dChosen: -6, dRejected: 6))
    }

    @Test func gradientsMatchFiniteDifferences() {
        for kind in DPOLossKind.allCases {
            let l = loss(kind, beta: 0.3, smoothing: kind == .robust || kind == .sigmoid ? 0.1 : 0)
            let h = 1e-6
            let plus = dpoLoss(kind, beta: 0.3, labelSmoothing: kind == .robust || kind == .sigmoid ? 0.1 : 0,
                               policyChosen: pc + h, policyRejected: pr, referenceChosen: rc, referenceRejected: rr).loss
            let minus = dpoLoss(kind, beta: 0.3, labelSmoothing: kind == .robust || kind == .sigmoid ? 0.1 : 0,
                                policyChosen: pc - h, policyRejected: pr, referenceChosen: rc, referenceRejected: rr).loss
            #expect(abs((plus - minus) / (2 * h) - l.dChosen) < 1e-6, "\(kind)")
        }
    }

    @Test func bradleyTerry() {
        // r_c = 1.5, r_r = 0.5, p = 1: L = −log σ(1) = 0.3132617, dL/dr_c = σ(1) − 1 = −0.2689414.
        let hard = bradleyTerryLoss(chosen: 1.5, rejected: 0.5, target: 1)
        #expect(abs(hard.loss - 0.313_261_687_5) < 1e-9 && abs(hard.dChosen - -0.268_941_421_4) < 1e-9)
        // p = 0.7: L = 0.7·0.3132617 + 0.3·1.3132617 = 0.6132617; dL/dr_c = 0.7310586 − 0.7 = 0.0310586.
        let soft = bradleyTerryLoss(chosen: 1.5, rejected: 0.5, target: 0.7)
        #expect(abs(soft.loss - 0.613_261_687_5) < 1e-9 && abs(soft.dChosen - 0.031_058_578_6) < 1e-9)
        #expect(soft.dRejected == -soft.dChosen)
        // Margin 1: Δ = 0 → L = log 2; centring 0.01: + 0.01·(2)² = 0.04, dL/dr_c = σ(0) − 1 + 0.04 = −0.46.
        let both = bradleyTerryLoss(chosen: 1.5, rejected: 0.5, target: 1, margin: 1, centering: 0.01)
        #expect(abs(both.loss - (log(2) + 0.04)) < 1e-12 && abs(both.dChosen - -0.46) < 1e-12 && abs(both.dRejected - 0.54) < 1e-12)
    }

    @Test func schedules() {
        var c = TrainingConfig()
        c.learningRate = 1
        c.warmupRatio = 0.2
        // 10 steps, 2 of warmup: 0.5, 1, then linear decay over the 8 remaining.
        #expect(c.learningRate(step: 1, total: 10) == 0.5 && c.learningRate(step: 2, total: 10) == 1)
        #expect(abs(c.learningRate(step: 6, total: 10) - 0.5) < 1e-12 && c.learningRate(step: 10, total: 10) == 0)
        c.schedule = .cosine
        #expect(abs(c.learningRate(step: 6, total: 10) - 0.5) < 1e-12 && abs(c.learningRate(step: 4, total: 10) - 0.5 * (1 + cos(.pi / 4))) < 1e-12)
    }
}
