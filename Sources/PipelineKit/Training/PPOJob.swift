import Foundation
import ModelKit
import TensorKit
import TrainKit

/// One PPO or RLOO run (a `ppo` stage or `precept train ppo`): the policy's base model, a trained
/// reward model directory, the prompts, the output directory. Writes `metrics.jsonl`,
/// `samples.jsonl`, `monitors.jsonl`, `adapter/` (PEFT), `value_head.safetensors` (PPO),
/// `merged.gguf`, `summary.json` and `training.json`.
public struct PPOJob {
    public var name: String
    public var spec: PPOSpec
    public var modelURL: URL
    public var modelFingerprint: String
    public var huggingFaceBase: String
    public var promptStyle: PromptStyle
    public var system: String?
    public var rewardModel: URL
    public var seed: UInt64
    public var directory: URL
    /// Prompts to sample from: id and text.
    public var prompts: [(id: String, text: String)]

    public init(name: String, spec: PPOSpec, modelURL: URL, modelFingerprint: String, huggingFaceBase: String, promptStyle: PromptStyle,
                system: String?, rewardModel: URL, seed: UInt64, directory: URL, prompts: [(id: String, text: String)]) {
        self.name = name
        self.spec = spec
        self.modelURL = modelURL
        self.modelFingerprint = modelFingerprint
        self.huggingFaceBase = huggingFaceBase
        self.promptStyle = promptStyle
        self.system = system
        self.rewardModel = rewardModel
        self.seed = seed
        self.directory = directory
        self.prompts = prompts
    }

    var config: PPOConfig {
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

    /// Runs the job or finds it done. `progress` receives one line per step (and monitor warnings,
    /// prefixed "warning: "); `stop` is polled after each step.
    public func run(progress: ((String) -> Void)? = nil, stop: (() -> Bool)? = nil) throws -> TrainingOutcome {
        let started = Date()
        // Decided by settings, prompts and the reward model's own fingerprint: no model is loaded
        // to find a finished job up to date.
        let fields = ["ppo", settingsText("\(spec)"), modelFingerprint, promptStyle.rawValue, system ?? "", "\(seed)",
                      RewardModelScorer.fingerprint(of: rewardModel)] + prompts.map { "\($0.id)|\($0.text)" }
        let fingerprint = SHA256.hex(fields.joined(separator: "\u{1E}"))
        if let done = TrainedDirectory(directory).finished(fingerprint) { return done }
        let model = try LanguageModel(path: modelURL.path)
        let scorer = try RewardModelScorer(directory: rewardModel, sharing: model)
        let tokenizer = TrainingTokenizer(model: model, style: promptStyle, system: system, maxLength: 4096)
        let tokens = prompts.map { tokenizer.prompt($0.text) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let adapter = LoRAAdapter(config: spec.lora, model: model.config, seed: seed)
        let texts = prompts.map(\.text)
        let trainer = PPOTrainer(model: model, adapter: adapter, config: config) { rollouts in
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

        try PEFTAdapter.save(adapter, scoreHead: nil, baseModel: huggingFaceBase, to: directory.appendingPathComponent("adapter"))
        if let head = trainer.valueHead {
            try Safetensors.write([("v_head.summary.weight", head.weight)], to: directory.appendingPathComponent("value_head.safetensors"))
        }
        if let precision = spec.merge {
            progress?("writing merged.gguf (\(precision.rawValue))")
            try MergedModel.write(base: model.file, adapter: adapter, precision: precision, to: directory.appendingPathComponent("merged.gguf"))
        }
        let seconds = Date().timeIntervalSince(started)
        try TrainedDirectory(directory).write(
            TrainingSetup(trainer: spec.algorithm.rawValue, baseModelPath: modelURL.path, baseModelFingerprint: modelFingerprint,
                          baseModel: huggingFaceBase, promptStyle: promptStyle, system: system, maxLength: 4096),
            TrainingSummary(trainer: spec.algorithm.rawValue, name: name, fingerprint: fingerprint, trainExamples: prompts.count, evalExamples: 0,
                            train: last, eval: [:], seconds: seconds, warnings: warnings, adapter: adapter, rewardModel: rewardModel.path))
        return TrainingOutcome(directory: directory, trainExamples: prompts.count, evalExamples: 0, eval: [:], train: last,
                               seconds: seconds, warnings: warnings, upToDate: false)
    }
}
