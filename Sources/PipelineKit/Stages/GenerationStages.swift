import Foundation
import ModelKit

/// One model call a stage wants, with what its output row needs besides the model's text.
struct TextCall {
    var key: OutputKey
    var kind: String
    var principle: String?
    var prompt: PromptInput
    var parameters: SamplingParameters
    /// Stage-specific JSON stored with the row.
    var extra: [String: String]
    /// Text the output is compared with to flag an unchanged revision.
    var original: String?
}

/// The generate → critique → revise stages (SL-CAI, as in the CAI paper §3): each turns its
/// input rows into model calls, skips the ones already stored with the same prompt, and runs
/// the rest in batches, one transaction per batch.
enum GenerationStages {
    /// Runs the items whose stored row has a different (or no) prompt and stores their rows.
    static func run(_ items: [TextCall], stage: Stage, model: String, context: RunContext) throws {
        let stored = try context.store.inputHashes(stage: stage.id)
        let todo = items.filter { stored[$0.key] != SHA256.hex($0.prompt.canonical) }
        let backend = try context.backend(model)
        try context.storeInBatches(todo, total: items.count, size: context.options.batchSize, stage: stage.id) { batch in
            let t0 = Date()
            let results = try backend.generate(batch.map { GenerationCall(prompt: $0.prompt, parameters: $0.parameters) })
            let seconds = Date().timeIntervalSince(t0) / Double(batch.count)
            return zip(batch, results).map { item, result -> OutputRow in
                let (output, cached) = result
                let text = CAIPrompts.clean(output.text)
                var flags: [String] = []
                if text.isEmpty { flags.append("empty") }
                if output.finishReason == .length { flags.append("truncated") }
                if let original = item.original, normalized(original) == normalized(text) { flags.append("unchanged") }
                return OutputRow(stage: stage.id, record: item.key.record, sample: item.key.sample, round: item.key.round,
                                 kind: item.kind, principle: item.principle, input: item.prompt.display,
                                 inputHash: SHA256.hex(item.prompt.canonical), output: text, raw: output.text,
                                 flags: flags.joined(separator: ","), finish: output.finishReason.rawValue,
                                 promptTokens: output.promptTokens, completionTokens: output.completionTokens,
                                 seconds: cached ? 0 : seconds, cached: cached, extra: OutputRow.extraText(item.extra))
            }
        }
    }

    static func normalized(_ text: String) -> String {
        text.lowercased().split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    static func parameters(_ s: SamplingSpec, seed: UInt64, stops: [String]) -> SamplingParameters {
        SamplingParameters(temperature: Float(s.temperature), topK: s.topK, topP: Float(s.topP), seed: seed,
                           maxTokens: s.maxTokens, stop: s.stop.isEmpty ? stops : s.stop)
    }

    // MARK: generate

    static func generate(_ spec: GenerateSpec, stage: Stage, context: RunContext) throws {
        let style = try context.backend(spec.model).backend.promptStyle
        var items: [TextCall] = []
        for record in context.records {
            for sample in 0..<spec.samples {
                let seed = derivedSeed(context.pipeline.seed, record: record.id, stage: stage.id, sample: sample, round: 0)
                items.append(TextCall(key: OutputKey(record: record.id, sample: sample, round: 0), kind: "response", principle: nil,
                                      prompt: CAIPrompts.response(prompt: record.prompt, system: spec.system, style: style),
                                      parameters: parameters(spec.sampling, seed: seed, stops: CAIPrompts.responseStops),
                                      extra: [:], original: nil))
            }
        }
        try run(items, stage: stage, model: spec.model, context: context)
    }

    // MARK: critique and revise

    /// The text being critiqued for each (record, sample): a response or the latest revision.
    struct ChainTip {
        var key: OutputKey
        var prompt: String
        var original: String
        var current: String
    }

    /// The chain tips of an input stage: the final round of each (record, sample).
    static func chainTips(from inputID: String, context: RunContext) throws -> [ChainTip] {
        guard let input = context.pipeline.stage(id: inputID) else { throw RunError.unknownStage(inputID, suggestion: nil) }
        let rows = try context.store.outputs(stage: inputID).filter { context.recordsByID[$0.record] != nil }
        if rows.isEmpty && !context.records.isEmpty { throw RunError.missingInput(stage: inputID, input: inputID) }
        var latest: [String: OutputRow] = [:]
        for row in rows {
            let id = "\(row.record)\u{1F}\(row.sample)"
            if (latest[id]?.round ?? -1) < row.round { latest[id] = row }
        }
        return context.records.flatMap { record in
            latest.values.filter { $0.record == record.id }.sorted { $0.sample < $1.sample }.map { row in
                let original: String
                if case .generate = input.kind { original = row.output } else { original = row.chainOriginal ?? row.output }
                return ChainTip(key: OutputKey(record: row.record, sample: row.sample, round: 0), prompt: record.prompt,
                               original: original, current: row.output)
            }
        }
    }

    /// The principle sampler of each record: one for all under `sample`, one per category under
    /// `match`. A record whose prompt set has `tags` draws among the principles carrying them (and
    /// the stage's `tags`, when both are given and share one) under either mode.
    static func samplers(_ spec: CritiqueSpec, context: RunContext) -> (String) -> PrincipleSampler {
        let all = PrincipleSampler(constitution: context.constitution, tags: spec.tags)
        var byRecord: [String: PrincipleSampler] = [:]
        for record in context.records {
            if let setTags = context.principleTags[record.id] {
                let both = spec.tags.filter(setTags.contains)
                byRecord[record.id] = PrincipleSampler(constitution: context.constitution, tags: both.isEmpty ? setTags : both)
            } else if spec.principles == .match {
                byRecord[record.id] = PrincipleSampler(constitution: context.constitution, tags: spec.tags, category: record.field("category"))
            }
        }
        return { byRecord[$0] ?? all }
    }

    static func critique(_ spec: CritiqueSpec, stage: Stage, context: RunContext) throws {
        let style = try context.backend(spec.model).backend.promptStyle
        let sampler = samplers(spec, context: context)
        let examples = Array(context.constitution.fewShot.prefix(spec.fewShot))
        let items = try chainTips(from: spec.input, context: context).map { subject -> TextCall in
            let principle = sampler(subject.key.record).pick(seed: context.pipeline.seed, record: subject.key.record, stage: stage.id,
                                         sample: subject.key.sample, round: 0)
            let seed = derivedSeed(context.pipeline.seed, record: subject.key.record, stage: stage.id, sample: subject.key.sample, round: 0)
            return TextCall(key: subject.key, kind: "critique", principle: principle.id,
                            prompt: CAIPrompts.critiqueOrRevision(prompt: subject.prompt, response: subject.current, principle: principle,
                                                                  critique: nil, withCritique: true, examples: examples,
                                                                  constitution: context.constitution, style: style),
                            parameters: parameters(spec.sampling, seed: seed, stops: CAIPrompts.critiqueStops),
                            extra: ["original": subject.original, "response": subject.current], original: nil)
        }
        try run(items, stage: stage, model: spec.model, context: context)
    }

    /// Revisions, round by round. With a critique stage as input its critiques serve round 0;
    /// later rounds (and every round of critique_revise) critique the latest revision first.
    static func revise(_ spec: CritiqueSpec, stage: Stage, context: RunContext, critiquesFromInput: Bool) throws {
        let backend = try context.backend(spec.model)
        let style = backend.backend.promptStyle
        let sampler = samplers(spec, context: context)
        let examples = Array(context.constitution.fewShot.prefix(spec.fewShot))
        let seedBase = context.pipeline.seed
        var previous: [OutputKey: (text: String, original: String, prompt: String)] = [:]
        var inputCritiques: [OutputKey: OutputRow] = [:]
        if critiquesFromInput {
            for row in try context.store.outputs(stage: spec.input) where context.recordsByID[row.record] != nil {
                inputCritiques[OutputKey(record: row.record, sample: row.sample, round: 0)] = row
            }
            if inputCritiques.isEmpty && !context.records.isEmpty { throw RunError.missingInput(stage: stage.id, input: spec.input) }
            for (key, row) in inputCritiques {
                let prompt = context.recordsByID[key.record]!.prompt
                previous[key] = (row.critiquedText ?? "", row.chainOriginal ?? "", prompt)
            }
        } else {
            for s in try chainTips(from: spec.input, context: context) { previous[s.key] = (s.current, s.original, s.prompt) }
        }
        let keys = previous.keys.sorted { ($0.record, $0.sample) < ($1.record, $1.sample) }
        for round in 0..<spec.rounds {
            var critiques: [OutputKey: (principle: Principle, text: String?)] = [:]
            if round == 0, critiquesFromInput {
                for key in keys {
                    let row = inputCritiques[key]!
                    guard let principle = context.constitution.principle(id: row.principle ?? "") else { continue }
                    critiques[key] = (principle, row.output)
                }
            } else {
                // Critique the latest text first (none when `critique: false`).
                var critiqueItems: [TextCall] = []
                for key in keys {
                    let principle = sampler(key.record).pick(seed: seedBase, record: key.record, stage: stage.id, sample: key.sample, round: round)
                    critiques[key] = (principle, nil)
                    guard spec.critique, let p = previous[key] else { continue }
                    let seed = derivedSeed(seedBase, record: key.record, stage: stage.id + "/critique", sample: key.sample, round: round)
                    critiqueItems.append(TextCall(
                        key: OutputKey(record: key.record, sample: key.sample, round: round), kind: "critique", principle: principle.id,
                        prompt: CAIPrompts.critiqueOrRevision(prompt: p.prompt, response: p.text, principle: principle, critique: nil,
                                                              withCritique: true, examples: examples,
                                                              constitution: context.constitution, style: style),
                        parameters: parameters(spec.sampling, seed: seed, stops: CAIPrompts.critiqueStops), extra: [:], original: nil))
                }
                if !critiqueItems.isEmpty {
                    // Critiques of later rounds are stored under "<stage>/critique".
                    let critiqueStage = Stage(id: stage.id + "/critique", kind: stage.kind, location: stage.location)
                    try run(critiqueItems, stage: critiqueStage, model: spec.model, context: context)
                    for row in try context.store.outputs(stage: critiqueStage.id) where row.round == round {
                        let key = OutputKey(record: row.record, sample: row.sample, round: 0)
                        if let c = critiques[key] { critiques[key] = (c.principle, row.output) }
                    }
                }
            }
            var items: [TextCall] = []
            for key in keys {
                guard let p = previous[key], let c = critiques[key] else { continue }
                let seed = derivedSeed(seedBase, record: key.record, stage: stage.id, sample: key.sample, round: round)
                items.append(TextCall(
                    key: OutputKey(record: key.record, sample: key.sample, round: round), kind: "revision", principle: c.principle.id,
                    prompt: CAIPrompts.critiqueOrRevision(prompt: p.prompt, response: p.text, principle: c.principle,
                                                          critique: spec.critique ? (c.text ?? "") : nil,
                                                          withCritique: spec.critique, examples: examples,
                                                          constitution: context.constitution, style: style),
                    parameters: parameters(spec.sampling, seed: seed, stops: CAIPrompts.revisionStops(style)),
                    extra: ["original": p.original, "critique": c.text ?? "", "response": p.text], original: p.text))
            }
            try run(items, stage: stage, model: spec.model, context: context)
            for row in try context.store.outputs(stage: stage.id) where row.round == round {
                let key = OutputKey(record: row.record, sample: row.sample, round: 0)
                if let p = previous[key] { previous[key] = (row.output, p.original, p.prompt) }
            }
        }
    }
}
