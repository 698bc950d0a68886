import Foundation
import ModelKit
import TrainKit

/// The sft, reward_model and dpo stages: training data from an earlier stage of the run, the
/// base model from `models:`, outputs in `<run>/<stage id>/`. A finished stage is not rerun for
/// the same inputs; an interrupted one resumes from its last checkpoint.
enum TrainingStage {
    /// The GGUF file of a training stage's base model, its fingerprint and its Hugging Face name.
    static func baseModel(_ model: ModelSpec, context: RunContext) throws -> (url: URL, fingerprint: String, huggingFace: String) {
        let (url, fingerprint) = try PipelineRunner.localModel(model, reporter: context.reporter)
        if case .catalog(let name) = model.source { return (url, fingerprint, TrainingJob.huggingFaceName(catalog: name)) }
        return (url, fingerprint, url.lastPathComponent)
    }

    /// The policy is trained and evaluated on the prompts it generated from: the first generate
    /// stage's system text.
    static func generationSystem(_ pipeline: Pipeline) -> String? {
        pipeline.stages.lazy.compactMap { s -> GenerateSpec? in
            if case .generate(let g) = s.kind { return g } else { return nil }
        }.first?.system
    }

    /// The model a training stage starts from: an earlier trained stage's merged model (which
    /// StageWiring allows only where it makes sense), else the model of that name in `models:`.
    static func startingModel(_ name: String, stage: Stage, context: RunContext, directory: URL) throws -> ModelSpec? {
        if context.pipeline.stage(id: name) != nil { return try EvaluateStage.model(name, stage: stage, context: context, directory: directory) }
        return context.pipeline.model(named: name)
    }

    /// A training stage; ppo runs in `runPPO`.
    static func run(_ method: TrainingMethod, stage: Stage, context: RunContext, directory: URL) throws {
        if case .ppo(let spec) = method { return try runPPO(spec, stage: stage, context: context, directory: directory) }
        guard case let (kind, spec, rewardModel, dpo)? = method.supervised else { return }
        // dpo and reward_model may start from an earlier sft stage's merged model, which is then
        // also DPO's reference (SL-CAI before preference training, as in the CAI paper §4).
        guard let model = try startingModel(spec.base, stage: stage, context: context, directory: directory) else {
            throw RunError.training(stage: stage.id, message: "base model `\(spec.base)` is not in `models:`")
        }
        let input: TrainingInput
        if kind == .sft {
            let chains = try RevisionChain.load(stage: spec.input, store: context.store, constitution: nil)
            if chains.isEmpty { throw RunError.missingInput(stage: stage.id, input: spec.input) }
            let selection = try RevisionGate.apply(chains, gate: spec.gate, store: context.store, stage: spec.input, pipeline: context.pipeline)
            let texts = TrainingData.revisions(selection.kept)
            if let gate = spec.gate {
                context.reporter?.message("\(stage.id): gate `\(gate)` endorses \(selection.kept.count) of \(chains.count - selection.humanRejected) revisions; the rest are left out"
                    + (selection.harmFlagged > 0 ? " (\(selection.harmFlagged) of them flagged by the harm check)" : ""))
                if texts.isEmpty { throw RunError.training(stage: stage.id, message: "judge `\(gate)` endorses none of the \(chains.count) revisions") }
            }
            if selection.humanRejected + selection.humanEdited > 0 {
                context.reporter?.message("\(stage.id): human labels: \(selection.humanRejected) revisions rejected, \(selection.humanEdited) edited")
            }
            if texts.isEmpty { throw RunError.training(stage: stage.id, message: "no non-empty revisions in `\(spec.input)` to train on") }
            input = .sft(texts)
        } else {
            guard case .judge(let judgeSpec)? = context.pipeline.stage(id: spec.input)?.kind else {
                throw RunError.unknownStage(spec.input, suggestion: nil)
            }
            let (pairs, skipped) = try TrainingData.preferences(judge: spec.input, store: context.store, gate: judgeSpec.gate,
                                                                revisionStage: judgeSpec.pairs == .originalVsRevision ? judgeSpec.input : nil)
            if pairs.isEmpty {
                if try context.store.outputs(stage: spec.input).isEmpty { throw RunError.missingInput(stage: stage.id, input: spec.input) }
                throw RunError.training(stage: stage.id, message: "no usable preference pairs in `\(spec.input)` (\(skipped) below min_confidence\(judgeSpec.gate ? ", not endorsing the revision" : "") or empty)")
            }
            if skipped > 0 {
                context.reporter?.message("\(stage.id): \(skipped) pairs below min_confidence\(judgeSpec.gate ? ", not endorsing the revision (gate)" : "") or empty are left out")
            }
            input = .preferences(pairs)
        }
        // Training needs the memory the generation models hold.
        context.releaseBackends()
        let (url, fingerprint, hfName) = try baseModel(model, context: context)
        let system = generationSystem(context.pipeline)
        let job = TrainingJob(name: stage.id, kind: kind, spec: spec, rewardModel: rewardModel, dpo: dpo, modelURL: url,
                              modelFingerprint: fingerprint, huggingFaceBase: hfName, promptStyle: model.effectivePromptStyle,
                              system: system, seed: context.pipeline.seed, directory: directory.appendingPathComponent(stage.id))
        let stop = context.stop
        let outcome: TrainingOutcome
        do {
            outcome = try job.run(input, progress: { context.reporter?.message("\(stage.id): \($0)") }, stop: { stop.isRequested })
        } catch TrainingError.interrupted(let step) {
            context.reporter?.message("\(stage.id): stopped after step \(step); checkpoint saved, a rerun resumes from it")
            throw RunError.interrupted(completedBatches: context.batchesDone)
        }
        let shown = outcome.eval.isEmpty ? outcome.train : outcome.eval
        let keys = kind == .dpo ? ["rewards/accuracies", "rewards/margins", "loss"] : kind == .rm ? ["accuracy", "loss"] : ["loss", "perplexity"]
        let text = keys.compactMap { k in shown[k].map { String(format: "%@ %.3f", k, $0) } }.joined(separator: ", ")
        context.reporter?.message("\(stage.id): \(outcome.upToDate ? "up to date" : String(format: "trained in %.0f s", outcome.seconds)); "
                                  + "\(outcome.trainExamples) train / \(outcome.evalExamples) held-out; "
                                  + "\(outcome.eval.isEmpty ? "train" : "held-out") \(text)")
        for w in outcome.warnings { context.reporter?.message("warning: \(stage.id): \(w)") }
    }
}

extension TrainingStage {
    /// The ppo stage: PPO or RLOO on the pipeline's prompts against a reward model trained by an
    /// earlier `reward_model` stage (or a reward model directory).
    static func runPPO(_ spec: PPOSpec, stage: Stage, context: RunContext, directory: URL) throws {
        // An sft/dpo stage as the policy: its merged model is both the start and the KL reference
        // (RL after SL-CAI, as in the CAI paper §4).
        guard let model = try startingModel(spec.policy, stage: stage, context: context, directory: directory), model.source.isLocal else {
            throw RunError.training(stage: stage.id, message: "policy `\(spec.policy)` is neither an sft/dpo stage nor a local model in `models:`")
        }
        let rewardModel: URL
        if case .rewardModel? = context.pipeline.stage(id: spec.rewardModel)?.kind {
            rewardModel = directory.appendingPathComponent(spec.rewardModel)
        } else {
            rewardModel = URL(fileURLWithPath: spec.rewardModel, relativeTo: URL(fileURLWithPath: context.pipeline.file).deletingLastPathComponent())
        }
        guard TrainedDirectory(rewardModel).hasAdapter else {
            throw RunError.missingInput(stage: stage.id, input: spec.rewardModel)
        }
        context.releaseBackends()
        let (url, fingerprint, hfName) = try baseModel(model, context: context)
        let system = generationSystem(context.pipeline)
        let job = PPOJob(name: stage.id, spec: spec, modelURL: url, modelFingerprint: fingerprint, huggingFaceBase: hfName,
                         promptStyle: model.effectivePromptStyle, system: system, rewardModel: rewardModel, seed: context.pipeline.seed,
                         directory: directory.appendingPathComponent(stage.id), prompts: context.records.map { ($0.id, $0.prompt) })
        let stop = context.stop
        let outcome: TrainingOutcome
        do {
            outcome = try job.run(progress: { context.reporter?.message("\(stage.id): \($0)") }, stop: { stop.isRequested })
        } catch TrainingError.interrupted(let step) {
            context.reporter?.message("\(stage.id): stopped after step \(step); checkpoint saved, a rerun resumes from it")
            throw RunError.interrupted(completedBatches: context.batchesDone)
        } catch let error as TrainingError {
            throw RunError.training(stage: stage.id, message: error.localizedDescription)
        }
        let t = outcome.train
        let text = ["objective/scores", "objective/kl", "objective/rlhf_reward"].compactMap { k in t[k].map { String(format: "%@ %.3f", k, $0) } }
            .joined(separator: ", ")
        context.reporter?.message("\(stage.id): \(outcome.upToDate ? "up to date" : String(format: "trained in %.0f s", outcome.seconds)); "
                                  + "\(spec.algorithm.rawValue), \(spec.steps) steps; last step \(text)")
        if outcome.upToDate { for w in outcome.warnings { context.reporter?.message("warning: \(stage.id): \(w)") } }
    }
}
