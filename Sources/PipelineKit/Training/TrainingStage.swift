import Foundation
import ModelKit
import TrainKit

/// The sft, reward_model and dpo stages: training data from an earlier stage of the run, the
/// base model from `models:`, outputs in `<run>/<stage id>/`. A finished stage is not rerun for
/// the same inputs; an interrupted one resumes from its last checkpoint.
enum TrainingStage {
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

    /// A training stage: its data from the store (ppo: the run's prompts and a reward model), then
    /// one `TrainingJob`.
    static func run(_ method: TrainingMethod, stage: Stage, context: RunContext, directory: URL) throws {
        let input: TrainingInput, model: ModelSpec
        if case .ppo(let spec) = method {
            // An sft/dpo stage as the policy: its merged model is both the start and the KL reference
            // (RL after SL-CAI, as in the CAI paper §4).
            guard let policy = try startingModel(spec.policy, stage: stage, context: context, directory: directory), policy.source.isLocal else {
                throw RunError.training(stage: stage.id, message: "policy `\(spec.policy)` is neither an sft/dpo stage nor a local model in `models:`")
            }
            model = policy
            input = .prompts(context.records.map { ($0.id, $0.prompt) }, rewardModel: try rewardModel(spec, stage: stage, context: context, directory: directory))
        } else {
            guard case let (kind, spec, _, _)? = method.supervised else { return }
            // dpo and reward_model may start from an earlier sft stage's merged model, which is then
            // also DPO's reference (SL-CAI before preference training, as in the CAI paper §4).
            guard let base = try startingModel(spec.base, stage: stage, context: context, directory: directory) else {
                throw RunError.training(stage: stage.id, message: "base model `\(spec.base)` is not in `models:`")
            }
            model = base
            input = kind == .sft ? try revisions(spec, stage: stage, context: context) : try preferences(spec, stage: stage, context: context)
        }
        // Training needs the memory the generation models hold.
        context.releaseBackends()
        let job = TrainingJob(name: stage.id, method: method, base: try TrainingBase(model, reporter: context.reporter),
                              system: generationSystem(context.pipeline), seed: context.pipeline.seed,
                              directory: directory.appendingPathComponent(stage.id))
        let stop = context.stop
        let outcome: TrainingOutcome
        do {
            outcome = try job.run(input, progress: { context.reporter?.message("\(stage.id): \($0)") }, stop: { stop.isRequested })
        } catch TrainingError.interrupted(let step) {
            context.reporter?.message("\(stage.id): stopped after step \(step); checkpoint saved, a rerun resumes from it")
            throw RunError.interrupted(completedBatches: context.batchesDone)
        } catch let error as TrainingError {
            throw RunError.training(stage: stage.id, message: error.localizedDescription)
        }
        context.reporter?.message("\(stage.id): \(job.headline(outcome))")
        for w in job.unshownWarnings(outcome) { context.reporter?.message("warning: \(stage.id): \(w)") }
    }

    /// sft: the revisions the gate (and human labels) keep.
    static func revisions(_ spec: TrainingSpec, stage: Stage, context: RunContext) throws -> TrainingInput {
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
        return .sft(texts)
    }

    /// rm and dpo: the judge stage's usable pairs.
    static func preferences(_ spec: TrainingSpec, stage: Stage, context: RunContext) throws -> TrainingInput {
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
        return .preferences(pairs)
    }

    /// ppo: an earlier reward_model stage's directory, or a directory relative to the pipeline file.
    static func rewardModel(_ spec: PPOSpec, stage: Stage, context: RunContext, directory: URL) throws -> URL {
        let url = if case .rewardModel? = context.pipeline.stage(id: spec.rewardModel)?.kind {
            directory.appendingPathComponent(spec.rewardModel)
        } else {
            URL(fileURLWithPath: spec.rewardModel, relativeTo: URL(fileURLWithPath: context.pipeline.file).deletingLastPathComponent())
        }
        guard TrainedDirectory(url).hasAdapter else { throw RunError.missingInput(stage: stage.id, input: spec.rewardModel) }
        return url
    }
}
