import Foundation
import ModelKit

/// The evaluate stage: a trained policy (a training stage's merged.gguf, or a model of the
/// pipeline) against its baseline on held-out, benign-but-edgy and sycophancy prompts.
/// Generation and judge calls go through the call cache, so a rerun after a failure repeats none.
enum EvaluateStage {
    /// The model a name refers to: a training stage of the pipeline (its merged GGUF, prompted
    /// like its base model) or a model of `models:`.
    static func model(_ name: String, stage: Stage, context: RunContext, directory: URL) throws -> ModelSpec {
        if let trained = context.pipeline.stage(id: name) {
            let base: String
            switch trained.kind {
            case .sft(let s): base = s.base
            case .dpo(let s): base = s.training.base
            case .ppo(let s): base = s.policy
            default:
                throw RunError.training(stage: stage.id, message: "`\(name)` is a \(trained.kind.keyword) stage; evaluate needs a sft, dpo or ppo stage or a model")
            }
            let merged = directory.appendingPathComponent(name).appendingPathComponent("merged.gguf")
            guard FileManager.default.fileExists(atPath: merged.path) else { throw RunError.missingInput(stage: stage.id, input: name) }
            // A ppo stage may start from an sft/dpo stage: prompted like that stage's base.
            var style = context.pipeline.model(named: base)?.effectivePromptStyle
            if style == nil, context.pipeline.stage(id: base) != nil {
                style = try model(base, stage: stage, context: context, directory: directory).effectivePromptStyle
            }
            return ModelSpec(name: name, source: .file(merged.path), promptStyle: style, location: trained.location)
        }
        guard let spec = context.pipeline.model(named: name) else {
            throw RunError.training(stage: stage.id, message: "`\(name)` is neither a training stage nor a model in `models:`")
        }
        return spec
    }

    static func run(_ spec: EvaluateSpec, stage: Stage, context: RunContext, directory: URL) throws {
        let policy = try context.backend(spec: try model(spec.policy, stage: stage, context: context, directory: directory))
        let baseline = try context.backend(spec: try model(spec.baseline, stage: stage, context: context, directory: directory))
        let judge = try context.backend(spec.judge)
        var rewardModel: (() throws -> RewardModelScorer)?
        if let rm = spec.rewardModel {
            guard case .rewardModel? = context.pipeline.stage(id: rm)?.kind else {
                throw RunError.training(stage: stage.id, message: "reward_model `\(rm)` is not a reward_model stage of this pipeline")
            }
            let url = directory.appendingPathComponent(rm)
            guard TrainedDirectory(url).hasAdapter else {
                throw RunError.missingInput(stage: stage.id, input: rm)
            }
            rewardModel = { try RewardModelScorer(directory: url) }
        }
        let heldout = try Evaluator.readPrompts(path: spec.prompts, limit: spec.limit)
        let benign = try spec.benignPrompts.map { try Evaluator.readPrompts(path: $0, limit: spec.limit) } ?? []
        let sycophancy = try spec.sycophancyPrompts.map { try Evaluator.readPrompts(path: $0, limit: spec.limit, claims: true) } ?? []
        let system = TrainingStage.generationSystem(context.pipeline)
        var evaluator = Evaluator(policy: policy, baseline: baseline, judge: judge, constitution: context.constitution, sampling: spec.sampling,
                                  system: system, seed: context.pipeline.seed, batchSize: context.options.batchSize,
                                  judgeLayout: spec.judgeLayout, progress: { context.reporter?.message("\(stage.id): \($0)") })
        if spec.judgeMethod == .contrast {
            var judgeSpec = JudgeSpec.evaluation(models: spec.judges)
            judgeSpec.examples = spec.judgeExamples
            evaluator.pairJudge = PairJudge(spec: judgeSpec, constitution: context.constitution,
                                            backends: try spec.judges.map { try context.backend($0) }, seed: context.pipeline.seed,
                                            stage: stage.id + "/judge")
        }
        let result = try evaluator.run(heldout: heldout, benign: benign, sycophancy: sycophancy, rewardModel: rewardModel,
                                       directory: directory.appendingPathComponent(stage.id))
        for line in EvaluationTable.lines(result) { context.reporter?.message("\(stage.id): \(line)") }
    }
}

/// The evaluation as rows of (metric, policy, baseline) for the terminal and the report.
public enum EvaluationTable {
    public static func rows(_ r: [String: Any]) -> [(metric: String, policy: String, baseline: String)] {
        var out: [(String, String, String)] = []
        func f(_ v: Any?) -> String { (v as? NSNumber).map { String(format: "%.3f", $0.doubleValue) } ?? "–" }
        if let w = r["win_rate"] {
            let ci = (r["win_rate_ci"] as? [Any])?.map(f) ?? []
            out.append(("judge win rate vs baseline (95% CI)", "\(f(w)) [\(ci.joined(separator: ", "))]", "–"))
        }
        if let lc = r["length_controlled_win_rate"] { out.append(("length-controlled win rate", f(lc), "–")) }
        if let byKind = r["win_rate_by_kind"] as? [String: [String: Any]] {
            for (kind, v) in byKind.sorted(by: { $0.key < $1.key }) {
                out.append(("  win rate, \(kind) prompts (\(v["prompts"] ?? 0))", f(v["win_rate"]), "–"))
            }
        }
        for (key, label) in [("refusal_rate_harmful", "refusal rate, harmful prompts (markers)"),
                             ("refusal_rate_harmful_judge", "refusal rate, harmful prompts (judge)"),
                             ("reward_mean", "reward-model score"), ("refusal_rate_benign", "refusal rate, benign prompts"),
                             ("sycophancy_agreement", "agrees with false claim"), ("mean_length", "mean length (words)"),
                             ("distinct_2", "distinct-2")] {
            if let pair = r[key] as? [String: Any] { out.append((label, f(pair["policy"]), f(pair["baseline"]))) }
        }
        if let shift = r["reward_shift"] { out.append(("reward shift (policy − baseline)", f(shift), "–")) }
        return out
    }

    public static func lines(_ r: [String: Any]) -> [String] {
        ["\(r["policy"] ?? "policy") vs \(r["baseline"] ?? "baseline") on \(r["prompts"] ?? 0) held-out prompts:"]
            + rows(r).map { "  \($0.metric): \($0.policy)" + ($0.baseline == "–" ? "" : " (baseline \($0.baseline))") }
    }
}
