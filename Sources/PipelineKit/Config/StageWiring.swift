import Foundation

/// Checks that every stage refers to models and earlier stages of the right kind.
enum StageWiring {
    /// What a reference may point at.
    private enum Target {
        case model(localOnly: Bool)
        case stage([String])
        case stageOrModel([String])
    }

    private struct Reference {
        let key: String
        let value: String
        let target: Target
    }

    private static let revisionStages = ["revise", "critique_revise"]
    private static let responseStages = ["generate", "revise", "critique_revise"]
    private static let trainedStages = ["sft", "dpo", "ppo"]

    private static func references(of kind: StageKind) -> [Reference] {
        switch kind {
        case .generate(let s):
            return [Reference(key: "model", value: s.model, target: .model(localOnly: false))]
        case .critique(let s), .critiqueRevise(let s):
            return [Reference(key: "model", value: s.model, target: .model(localOnly: false)),
                    Reference(key: "input", value: s.input, target: .stage(responseStages))]
        case .revise(let s):
            return [Reference(key: "model", value: s.model, target: .model(localOnly: false)),
                    Reference(key: "input", value: s.input, target: .stage(s.critique ? ["critique"] : responseStages))]
        case .judge(let s):
            return s.models.map { Reference(key: "model", value: $0, target: .model(localOnly: false)) }
                + (s.harmCheck.map { [Reference(key: "harm_check.model", value: $0.model, target: .model(localOnly: false))] } ?? [])
                + [Reference(key: "input", value: s.input,
                              target: .stage(s.pairs == .sampled ? ["generate"] : revisionStages))]
        case .rewardModel(let s):
            return training(s.training, inputs: ["judge"], baseStages: ["sft"])
        case .dpo(let s):
            return training(s.training, inputs: ["judge"], baseStages: ["sft"])
        case .sft(let s):
            return training(s, inputs: revisionStages) + gate(s.gate)
        case .ppo(let s):
            // The policy starts from a local model or from an earlier sft/dpo stage's merged model.
            return [Reference(key: "policy", value: s.policy, target: .stageOrModel(["sft", "dpo"])),
                    Reference(key: "reward_model", value: s.rewardModel, target: .stage(["reward_model"]))]
        case .evaluate(let s):
            var refs = [Reference(key: "policy", value: s.policy, target: .stageOrModel(trainedStages)),
                        Reference(key: "baseline", value: s.baseline, target: .model(localOnly: false)),
                       ] + s.judges.map { Reference(key: "judge", value: $0, target: .model(localOnly: false)) }
            if let rm = s.rewardModel {
                refs.append(Reference(key: "reward_model", value: rm, target: .stage(["reward_model"])))
            }
            return refs
        case .export(let s):
            return [Reference(key: "input", value: s.input,
                              target: .stage(s.format == .sft ? revisionStages : ["judge"]))] + gate(s.gate)
        }
    }

    private static func gate(_ judge: String?) -> [Reference] {
        judge.map { [Reference(key: "gate", value: $0, target: .stage(["judge"]))] } ?? []
    }

    /// `baseStages`: the kinds of earlier stage whose merged model may be the base (dpo and
    /// reward_model after SL-CAI, as in the CAI paper §4: preference training starts from the
    /// SFT policy).
    private static func training(_ t: TrainingSpec, inputs: [String], baseStages: [String] = []) -> [Reference] {
        [Reference(key: "base", value: t.base, target: baseStages.isEmpty ? .model(localOnly: true) : .stageOrModel(baseStages)),
         Reference(key: "input", value: t.input, target: .stage(inputs))]
    }

    /// `stageReaders` are the entries of `stages:`, in order, for precise error locations.
    static func check(_ pipeline: Pipeline, stageReaders: [NodeReader]) throws {
        let modelNames = pipeline.models.map(\.name)
        for (index, stage) in pipeline.stages.enumerated() {
            let earlier = pipeline.stages[..<index]
            let body = stageReaders[index].child(stage.kind.keyword) ?? stageReaders[index]
            for ref in references(of: stage.kind) {
                // A dotted key ("harm_check.model") names a nested entry.
                let at = ref.key.split(separator: ".").reduce(Optional(body)) { $0?.child(String($1)) } ?? body
                func fail(_ message: String) -> ConfigError { at.invalid(message) }
                let stageTarget = pipeline.stages.first { $0.id == ref.value }
                switch ref.target {
                case .model(let localOnly):
                    guard let model = pipeline.model(named: ref.value) else {
                        throw fail(unknownModel(ref.value, modelNames))
                    }
                    if localOnly && !model.source.isLocal {
                        throw fail("training needs local weights, but model `\(model.name)` is served by an OpenAI-compatible endpoint")
                    }
                case .stage(let kinds), .stageOrModel(let kinds):
                    if case .stageOrModel = ref.target, stageTarget == nil, pipeline.model(named: ref.value) != nil { continue }
                    guard let target = stageTarget else {
                        let names = earlier.map(\.id) + (isModelTarget(ref.target) ? modelNames : [])
                        let hint = closestMatch(to: ref.value, in: names).map { "; did you mean `\($0)`?" } ?? ""
                        throw fail("no stage named `\(ref.value)`\(hint)")
                    }
                    guard earlier.contains(where: { $0.id == target.id }) else {
                        throw fail("stage `\(target.id)` comes later (or is this stage); a stage can only use earlier stages")
                    }
                    guard kinds.contains(target.kind.keyword) else {
                        throw fail("stage `\(target.id)` is a \(target.kind.keyword) stage; expected \(kinds.joined(separator: " or "))")
                    }
                }
            }
            try checkSampledPairs(stage, pipeline: pipeline, body: body)
            try checkGate(stage, pipeline: pipeline, body: body)
        }
    }

    /// A gate's judge must compare the same revisions as original against revision; a ppo
    /// policy, or a dpo/reward_model base, that names a model needs its local weights.
    private static func checkGate(_ stage: Stage, pipeline: Pipeline, body: NodeReader) throws {
        let start: (key: String, name: String)?
        switch stage.kind {
        case .ppo(let s): start = ("policy", s.policy)
        case .dpo(let s): start = ("base", s.training.base)
        case .rewardModel(let s): start = ("base", s.training.base)
        default: start = nil
        }
        if let start, pipeline.stage(id: start.name) == nil, let model = pipeline.model(named: start.name), !model.source.isLocal {
            throw (body.child(start.key) ?? body).invalid(
                "training needs local weights, but model `\(model.name)` is served by an OpenAI-compatible endpoint")
        }
        let gate: String?, input: String
        switch stage.kind {
        case .sft(let s): (gate, input) = (s.gate, s.input)
        case .export(let s): (gate, input) = (s.gate, s.input)
        default: return
        }
        guard let gate, case .judge(let judge)? = pipeline.stage(id: gate)?.kind else { return }
        guard judge.pairs == .originalVsRevision, judge.input == input else {
            throw (body.child("gate") ?? body).invalid(
                "gate `\(gate)` must be a judge stage with `pairs: original_vs_revision` and `input: \(input)`")
        }
    }

    /// `pairs: sampled` compares samples of one prompt, so its generate stage needs two or more.
    private static func checkSampledPairs(_ stage: Stage, pipeline: Pipeline, body: NodeReader) throws {
        guard case .judge(let judge) = stage.kind, judge.pairs == .sampled,
              case .generate(let generate)? = pipeline.stage(id: judge.input)?.kind, generate.samples < 2 else { return }
        throw (body.child("pairs") ?? body).invalid(
            "`pairs: sampled` needs `samples: 2` or more on generate stage `\(judge.input)` (it has \(generate.samples))")
    }

    private static func isModelTarget(_ target: Target) -> Bool {
        if case .stageOrModel = target { return true }
        return false
    }

    private static func unknownModel(_ name: String, _ known: [String]) -> String {
        let hint = closestMatch(to: name, in: known).map { "; did you mean `\($0)`?" }
            ?? " (models: \(known.joined(separator: ", ")))"
        return "no model named `\(name)`\(hint)"
    }
}
