import Foundation
import ModelKit
import TensorKit
import TrainKit

/// ppo (PPO or RLOO): rollouts on the prompts scored by a trained reward model directory.
extension TrainingJob {
    func runPPO(_ spec: PPOSpec, prompts: [(id: String, text: String)], rewardModel: URL, progress: ((String) -> Void)?,
                stop: (() -> Bool)?) throws -> TrainingOutcome {
        let started = Date()
        // Decided by settings, prompts and the reward model's own fingerprint: no model is loaded
        // to find a finished job up to date.
        let fields = fingerprintFields("ppo", [settingsText("\(spec)")]) + [RewardModelScorer.fingerprint(of: rewardModel)]
            + prompts.map { "\($0.id)|\($0.text)" }
        let fingerprint = SHA256.hex(fields.joined(separator: "\u{1E}"))
        if let done = TrainedDirectory(directory).finished(fingerprint) { return done }
        let model = try LanguageModel(path: base.url.path)
        let scorer = try RewardModelScorer(directory: rewardModel, sharing: model)
        let tokenizer = TrainingTokenizer(model: model, style: base.promptStyle, system: system, maxLength: 4096)
        let tokens = prompts.map { tokenizer.prompt($0.text) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let adapter = LoRAAdapter(config: spec.lora, model: model.config, seed: seed)
        let texts = prompts.map(\.text)
        let trainer = PPOTrainer(model: model, adapter: adapter, config: ppoConfig(spec)) { rollouts in
            // The reward model reads the text as it was trained on it: prompt and response, no stop strings.
            var scores: [Double] = []
            for start in stride(from: 0, to: rollouts.count, by: 8) {
                let rows = rollouts[start..<min(rollouts.count, start + 8)].map {
                    RewardModelScorer.Row(id: "", prompt: texts[$0.prompt], responses: [CAIPrompts.clean($0.text)])
                }
                scores += scorer.score(Array(rows)).map { Double($0[0]) }
            }
            return scores
        }
        var warnings: [String] = []
        let keys = ["objective/scores", "objective/kl", "objective/rlhf_reward", "loss/policy", "response_length"]
        let last = try trainer.train(prompts: tokens, ids: prompts.map(\.id), directory: directory, fingerprint: fingerprint, onStep: { p in
            let text = keys.compactMap { k in p.metrics[k].map { String(format: "%@ %.3f", k, $0) } }.joined(separator: "  ")
            progress?(String(format: "step %d/%d  %@  %.0f s", p.step, p.totalSteps, text, p.elapsed))
            for w in p.warnings {
                warnings.append("step \(w.step): \(w.message)")
                progress?("warning: \(w.message)\(w.stops ? " (stopping)" : "")")
            }
        }, shouldStop: stop)

        if let head = trainer.valueHead {
            try Safetensors.write([("v_head.summary.weight", head.weight)], to: directory.appendingPathComponent("value_head.safetensors"))
        }
        try save(adapter, scoreHead: nil, model: model, merge: spec.merge, progress: progress)
        return try finish(spec.algorithm.rawValue, fingerprint: fingerprint, adapter: adapter, maxLength: 4096,
                          counts: (prompts.count, 0), metrics: (last, [:]), warnings: warnings, rewardModel: rewardModel.path, started: started)
    }

    func ppoConfig(_ spec: PPOSpec) -> PPOConfig {
        var c = PPOConfig()
        c.algorithm = spec.algorithm
        c.steps = spec.steps
        c.batchSize = spec.batchSize
        c.ppoEpochs = spec.ppoEpochs
        c.learningRate = spec.learningRate
        c.klCoef = spec.klCoef
        c.adaptiveKL = spec.adaptiveKL
        c.targetKL = spec.targetKL
        c.klEstimator = spec.klEstimator
        c.gamma = spec.gamma
        c.lambda = spec.lambda
        c.clipRange = spec.clipRange
        c.clipRangeValue = spec.clipRangeValue
        c.valueCoef = spec.valueCoef
        c.rlooK = spec.rlooK
        c.checkpointEvery = spec.checkpointEvery
        c.seed = seed
        c.sampling = SamplingParameters(temperature: Float(spec.sampling.temperature), topK: spec.sampling.topK,
                                        topP: Float(spec.sampling.topP), seed: seed, maxTokens: spec.sampling.maxTokens,
                                        stop: spec.sampling.stop + CAIPrompts.responseStops)
        c.missingEOSPenalty = spec.missingEOSPenalty
        c.monitors = spec.monitors
        return c
    }
}
