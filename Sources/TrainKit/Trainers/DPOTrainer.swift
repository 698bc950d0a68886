import Foundation
import ModelKit
import TensorKit

/// Configuration of DPO (TRL's DPOConfig, trimmed).
public struct DPOConfig: Sendable, Equatable {
    public var beta = 0.1
    public var loss = DPOLossKind.sigmoid
    public var labelSmoothing = 0.0
    /// Weight of the NLL term on chosen responses (TRL's `rpo_alpha`; RPO, Pang et al. 2024 §3):
    /// loss = DPO + α · (−mean over the chosen response's tokens of log π). Here the mean is taken
    /// per pair, then averaged over the batch like the DPO term.
    public var rpoAlpha = 0.0
    /// Length desensitization (TRL's `ld_alpha`; LD-DPO, Liu et al. 2024, arXiv 2409.06411 §4): of the
    /// longer response of a pair, the tokens past the shorter one's length count α times in its
    /// log-probability, for the policy and the reference alike, so DPO's implicit reward stops paying
    /// for length. 1 is plain DPO.
    public var ldAlpha = 1.0

    public init() {}
}

/// Direct Preference Optimization with LoRA. The reference model is the base without the adapter;
/// its log-probabilities are computed once per dataset (`precomputeReference`). Metrics carry TRL's
/// names and definitions: rewards/chosen = β·(log π(y_c) − log π_ref(y_c)), rewards/rejected likewise,
/// rewards/accuracies = mean[rewards/chosen > rewards/rejected], rewards/margins = their difference,
/// logps/chosen and logps/rejected = the policy's summed log-probabilities.
public final class DPOTrainer: TrainingObjective {
    public let model: TrainableTransformer
    public let head: TokenLogProbHead
    public let config: DPOConfig

    public init(model: TrainableTransformer, config: DPOConfig) {
        self.model = model
        self.config = config
        head = TokenLogProbHead(head: model.base.weights.head)
    }

    public var parameters: [(name: String, value: Tensor, gradient: Tensor)] { model.adapter?.parameters ?? [] }
    public func tokenCount(_ e: PreferenceExample) -> Int { 2 * e.prompt.count + e.chosen.count + e.rejected.count }

    /// Sequences, scored rows and targets of a batch: chosen then rejected for each pair.
    public func layout(_ batch: [PreferenceExample]) -> (sequences: [[Int32]], rows: [[Int]], targets: [[Int32]]) {
        var sequences: [[Int32]] = [], rows: [[Int]] = [], targets: [[Int32]] = []
        var offset = 0
        for e in batch {
            for response in [e.chosen, e.rejected] {
                sequences.append(e.prompt + response)
                rows.append(responseRows(offset: offset, promptCount: e.prompt.count, responseCount: response.count))
                targets.append(response)
                offset += e.prompt.count + response.count
            }
        }
        return (sequences, rows, targets)
    }

    /// Each scored token's weight in its sequence's log-probability: 1, or `ldAlpha` for the tokens of
    /// the longer response of a pair past the shorter one's length (LD-DPO §4: log π̂(y) =
    /// Σ_{t ≤ l_p} log π(y_t) + α Σ_{t > l_p} log π(y_t), l_p = min(|y_c|, |y_r|)). Rows come in pairs.
    func tokenWeights(_ rows: [[Int]]) -> [[Double]] {
        rows.indices.map { s in
            let n = rows[s].count, shared = min(n, rows[s ^ 1].count)
            return (0..<n).map { $0 < shared ? 1 : config.ldAlpha }
        }
    }

    /// Summed (IPO: per-token mean, as TRL feeds IPO) response log-probabilities per sequence, with
    /// `tokenWeights`; the plain sums (for RPO's NLL); and the per-row logsumexp the LM-head backward pass reuses.
    public func sequenceLogProbs(_ hidden: Tensor, rows: [[Int]], targets: [[Int32]])
        -> (perSequence: [Double], plain: [Double], logSumExp: [Float]) {
        let (flat, lse) = head.forward(hidden, rows: rows.flatMap { $0 }, targets: targets.flatMap { $0 })
        var out: [Double] = [], plain: [Double] = [], i = 0
        for (r, w) in zip(rows, tokenWeights(rows)) {
            var sum = 0.0, weighted = 0.0
            for t in 0..<r.count {
                sum += Double(flat[i + t])
                weighted += w[t] * Double(flat[i + t])
            }
            let n = config.loss == .ipo ? Double(max(r.count, 1)) : 1
            out.append(weighted / n)
            plain.append(sum / n)
            i += r.count
        }
        return (out, plain, lse)
    }

    /// Fills the reference log-probabilities with the base model (adapter off), a few pairs per pass.
    public func precomputeReference(_ examples: inout [PreferenceExample], batchSize: Int = 4) {
        let reference = TrainableTransformer(base: model.base, adapter: nil)
        for start in stride(from: 0, to: examples.count, by: batchSize) {
            let batch = Array(examples[start..<min(examples.count, start + batchSize)])
            let (sequences, rows, targets) = layout(batch)
            let acts = reference.forward(sequences, keep: false)
            let lp = sequenceLogProbs(acts.hidden, rows: rows, targets: targets).perSequence
            for i in 0..<batch.count {
                examples[start + i].referenceChosen = lp[2 * i]
                examples[start + i].referenceRejected = lp[2 * i + 1]
            }
        }
    }

    private func loss(_ e: PreferenceExample, chosen: Double, rejected: Double) -> PairLoss {
        guard let rc = e.referenceChosen, let rr = e.referenceRejected else {
            preconditionFailure("DPO example \(e.id) has no reference log-probabilities: call precomputeReference first")
        }
        return dpoLoss(config.loss, beta: config.beta, labelSmoothing: config.labelSmoothing,
                       policyChosen: chosen, policyRejected: rejected, referenceChosen: rc, referenceRejected: rr)
    }

    public func accumulate(_ batch: [PreferenceExample], weight: Float) -> [String: Double] {
        model.training = true
        let (sequences, rows, targets) = layout(batch)
        let acts = model.forward(sequences)
        let (lp, plain, lse) = sequenceLogProbs(acts.hidden, rows: rows, targets: targets)
        let tokenWeights = tokenWeights(rows)
        var weights: [Float] = []
        var losses: [PairLoss] = []
        for (i, e) in batch.enumerated() {
            let l = loss(e, chosen: lp[2 * i], rejected: lp[2 * i + 1])
            losses.append(l)
            let w = Double(weight) / Double(batch.count)
            for (j, d) in [l.dChosen, l.dRejected].enumerated() {
                let n = rows[2 * i + j].count
                let perToken = config.loss == .ipo ? d / Double(max(n, 1)) : d
                // RPO: ∂(−α·mean log π(y_c))/∂ log π(token) = −α/n for each chosen token (unweighted by LD).
                let nll = j == 0 && config.rpoAlpha > 0 ? config.rpoAlpha / Double(max(n, 1)) : 0
                weights += tokenWeights[2 * i + j].map { Float(w * ($0 * perToken - nll)) }
            }
        }
        let dHidden = Tensor(shape: [acts.rows, model.config.hidden])
        head.backward(acts.hidden, rows: rows.flatMap { $0 }, targets: targets.flatMap { $0 }, weights: weights, logSumExp: lse,
                      into: dHidden)
        model.backward(acts, dHidden: dHidden)
        return metrics(batch, lp, plain, losses, rows: rows)
    }

    public func evaluate(_ batch: [PreferenceExample]) -> [String: Double] {
        model.training = false
        defer { model.training = true }
        let (sequences, rows, targets) = layout(batch)
        let acts = model.forward(sequences, keep: false)
        let (lp, plain, _) = sequenceLogProbs(acts.hidden, rows: rows, targets: targets)
        let losses = batch.enumerated().map { i, e in loss(e, chosen: lp[2 * i], rejected: lp[2 * i + 1]) }
        return metrics(batch, lp, plain, losses, rows: rows)
    }

    /// TRL's metrics; with `rpo_alpha` > 0, `loss` includes the NLL term and `nll_loss` is the
    /// mean per-token NLL of the chosen responses (summed log-probabilities: IPO's are per-token already).
    /// With `ld_alpha` < 1, rewards and `logps/*` use the desensitized log-probabilities, `nll_loss` the plain ones.
    private func metrics(_ batch: [PreferenceExample], _ lp: [Double], _ plain: [Double], _ losses: [PairLoss],
                         rows: [[Int]]) -> [String: Double] {
        let n = Double(batch.count)
        var chosen = 0.0, rejected = 0.0, correct = 0.0, logpC = 0.0, logpR = 0.0, nll = 0.0
        for (i, e) in batch.enumerated() {
            let tokens = Double(max(rows[2 * i].count, 1))
            nll += config.loss == .ipo ? -plain[2 * i] : -plain[2 * i] / tokens
            let rc = config.beta * (lp[2 * i] - (e.referenceChosen ?? 0))
            let rr = config.beta * (lp[2 * i + 1] - (e.referenceRejected ?? 0))
            chosen += rc
            rejected += rr
            if rc > rr { correct += 1 }
            logpC += lp[2 * i]
            logpR += lp[2 * i + 1]
        }
        var out = ["loss": losses.reduce(0) { $0 + $1.loss } / n + config.rpoAlpha * nll / n,
                "rewards/chosen": chosen / n, "rewards/rejected": rejected / n,
                "rewards/accuracies": correct / n, "rewards/margins": (chosen - rejected) / n,
                "logps/chosen": logpC / n, "logps/rejected": logpR / n]
        if config.rpoAlpha > 0 { out["nll_loss"] = nll / n }
        return out
    }
}
