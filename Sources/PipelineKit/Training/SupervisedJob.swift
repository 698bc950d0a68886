import Foundation
import ModelKit
import TensorKit
import TrainKit

/// sft, rm and dpo: a `TrainingLoop` over tokenised texts or pairs, with held-out examples chosen
/// by id (`RecordSplit`, as exports choose their test split).
extension TrainingJob {
    func runSupervised(_ input: TrainingInput, progress: ((String) -> Void)?, stop: (() -> Bool)?) throws -> TrainingOutcome {
        guard case let (kind, spec, rewardModel, dpo)? = method.supervised else {
            throw TrainingError.noExamples(what: "ppo is not a supervised method")
        }
        let started = Date()
        let model = try LanguageModel(path: base.url.path)
        let tokenizer = TrainingTokenizer(model: model, style: base.promptStyle, system: system, maxLength: spec.maxLength)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let config = trainingConfig(spec)
        let adapter = LoRAAdapter(config: spec.lora, model: model.config, seed: seed)
        let network = TrainableTransformer(base: model.transformer, adapter: adapter)
        var warnings: [String] = []

        // Fingerprint of everything that decides the result: settings, model and tokenised data.
        var fields = fingerprintFields(kind.rawValue, [settingsText("\(spec)"), settingsText("\(String(describing: rewardModel))"),
                                                       settingsText("\(String(describing: dpo))")])
        func split<T>(_ items: [T], id: (T) -> String) -> (train: [T], eval: [T]) {
            var train: [T] = [], eval: [T] = []
            for item in items {
                if RecordSplit.isHeldOut(record: id(item), seed: seed, fraction: spec.evalFraction) { eval.append(item) } else { train.append(item) }
            }
            return (train, eval)
        }
        var fingerprint: String { SHA256.hex(fields.joined(separator: "\u{1E}")) }
        func loop<O: TrainingObjective>(_ objective: O) -> TrainingLoop<O> {
            let loop = TrainingLoop(config: config, objective: objective, directory: directory, fingerprint: fingerprint)
            let keys = kind == .dpo ? ["loss", "rewards/accuracies", "rewards/margins"] : kind == .rm ? ["loss", "accuracy"] : ["loss"]
            loop.onProgress = { p in
                let metrics = keys.compactMap { k in p.metrics[k].map { String(format: "%@ %.4f", k, $0) } }.joined(separator: "  ")
                progress?(String(format: "step %d/%d  %@  %.0f tok/s  %.0f s", p.step, p.totalSteps, metrics, p.tokensPerSecond, p.elapsed))
            }
            loop.shouldStop = stop
            return loop
        }
        let outcome: (eval: [String: Double], train: [String: Double])
        var counts = (train: 0, eval: 0)
        var scoreHead: RewardHead?
        switch input {
        case .sft(let texts):
            let examples = texts.map(tokenizer.sft)
            fields += examples.map { "\($0.id)|\($0.prompt)|\($0.response)" }
            let (train, eval) = split(examples) { $0.id }
            counts = (train.count, eval.count)
            if let done = TrainedDirectory(directory).finished(fingerprint) { return done }
            outcome = try loop(SFTTrainer(model: network)).run(train: train, eval: eval)
        case .preferences(let texts):
            var examples = texts.map(tokenizer.preference)
            fields += examples.map { "\($0.id)|\($0.prompt)|\($0.chosen)|\($0.rejected)|\($0.probability)" }
            if let done = TrainedDirectory(directory).finished(fingerprint) { return done }
            if let dpo {
                var c = DPOConfig()
                (c.beta, c.loss, c.labelSmoothing, c.rpoAlpha, c.ldAlpha) = (dpo.beta, dpo.loss, dpo.labelSmoothing, dpo.rpoAlpha, dpo.ldAlpha)
                let trainer = DPOTrainer(model: network, config: c)
                progress?("reference log-probabilities for \(examples.count) pairs")
                trainer.precomputeReference(&examples)
                let (train, eval) = split(examples) { $0.id }
                counts = (train.count, eval.count)
                outcome = try loop(trainer).run(train: train, eval: eval)
            } else {
                var c = RewardModelConfig()
                if let r = rewardModel { (c.softLabels, c.margin, c.centerRewards) = (r.labels == .soft, r.margin, r.centerRewards) }
                let head = RewardHead(hidden: model.config.hidden, seed: seed ^ 0x5C0E)
                scoreHead = head
                let trainer = RewardTrainer(model: network, scoreHead: head, config: c)
                let (train, eval) = split(examples) { $0.id }
                counts = (train.count, eval.count)
                outcome = try loop(trainer).run(train: train, eval: eval)
                if let accuracy = outcome.eval["accuracy"], accuracy < 0.70 {
                    warnings.append(String(format: "held-out accuracy %.2f is below 0.70 on %d pairs: this reward model is unreliable", accuracy, counts.eval))
                } else if counts.eval == 0 {
                    warnings.append("no held-out pairs (eval_fraction \(spec.evalFraction)): accuracy unmeasured")
                }
            }
        case .prompts:
            throw TrainingError.noExamples(what: "\(kind.rawValue) trains on texts or pairs, not prompts")
        }
        try save(adapter, scoreHead: scoreHead, model: model, merge: kind == .rm ? nil : spec.merge, progress: progress)
        return try finish(kind.rawValue, fingerprint: fingerprint, adapter: adapter, maxLength: spec.maxLength, counts: counts,
                          metrics: (outcome.train, outcome.eval), warnings: warnings, started: started)
    }

    func trainingConfig(_ spec: TrainingSpec) -> TrainingConfig {
        var c = TrainingConfig()
        c.epochs = spec.epochs
        c.maxSteps = spec.maxSteps
        c.learningRate = spec.learningRate
        c.schedule = spec.schedule
        c.warmupRatio = spec.warmupRatio
        c.weightDecay = spec.weightDecay
        c.maxGradNorm = spec.maxGradNorm
        c.batchSize = spec.batchSize
        c.gradientAccumulation = spec.gradientAccumulation
        c.microBatchTokens = max(spec.microBatchTokens, 2 * spec.maxLength)
        c.checkpointEvery = spec.checkpointEvery
        c.seed = seed
        return c
    }
}

/// A training spec as its fingerprint reads it, so a run finished before a change here stays up to
/// date: TrainKit's types written as the PipelineKit copies they replaced printed (issue 18), and
/// the fields added on 2026-12-02 left out while they hold their defaults (the training data,
/// which a `gate` changes, is fingerprinted separately).
func settingsText(_ printed: String) -> String {
    func words<T: RawRepresentable & CaseIterable>(_: T.Type, _ prefix: String, _ suffix: String = "") -> [(String, String)]
        where T.RawValue == String { T.allCases.map { ("\(prefix)\($0)\(suffix)", "\"\($0.rawValue)\"") } }
    let mirrors = [("TrainKit.LoRAConfig(", "PipelineKit.LoRASpec("), ("TrainKit.LoRATargetModule.", "PipelineKit.LoRATarget."),
                   ("TrainKit.DPOLossKind.", "PipelineKit.DPOLoss."), ("TrainKit.RLAlgorithm.", "PipelineKit.PolicyAlgorithm."),
                   ("TrainKit.MonitorConfig(rewardDriftSD: ", "PipelineKit.MonitorSpec(rewardDriftSD: "),
                   (", varianceFloor: ", ", rewardVarianceFloor: "), ("merge: nil, ", "merge: \"none\", ")]
        + words(LearningRateSchedule.self, "TrainKit.LearningRateSchedule.") + words(KLEstimator.self, "TrainKit.KLEstimator.")
        + words(MergedModel.Precision.self, "Optional(TrainKit.MergedModel.Precision.", ")") + words(MonitorKind.self, "TrainKit.MonitorKind.")
    var text = printed
    for (new, old) in mirrors { text = text.replacingOccurrences(of: new, with: old) }
    for unchanged in [", gate: nil", ", rpoAlpha: 0.0", ", ldAlpha: 1.0", ", missingEOSPenalty: nil", ", maxTruncationRate: 0.5"] {
        text = text.replacingOccurrences(of: unchanged, with: "")
    }
    return text
}
