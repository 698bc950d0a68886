import Foundation
import ModelKit

/// The label of one pair: the probability that candidate 0 is the better response, averaged
/// over the asked orders and sampled preference principles (RL-CAI, CAI paper §4.1).
public struct PairLabel: Sendable, Equatable, Codable {
    /// The two responses compared; for `original_vs_revision` candidate 0 is the revision.
    public var candidates: [String]
    public var principles: [String]
    /// P(candidate 0 better) per principle and order; order 0 shows candidate 0 as (A).
    public var probabilities: [[Double]]
    /// Chain-of-thought rationales per principle and order, when `cot` is on.
    public var rationales: [[String]]?
    /// The averaged soft label: P(candidate 0 better).
    public var probability: Double
    /// Whether |probability − 0.5| is below the stage's `min_confidence` (kept, not exported).
    public var belowConfidence: Bool

    /// Index of the preferred candidate and its probability of being better.
    public var chosen: (index: Int, probability: Double) {
        probability >= 0.5 ? (0, probability) : (1, 1 - probability)
    }
}

/// Prompts of the judge: a few-shot multiple-choice transcript ending in "The answer is: (",
/// for base and instruction-tuned judges alike (DESIGN.md: small instruction-tuned judges were
/// measured to do better this way than under their chat template). The layout of each question
/// is a `JudgeLayout`; docs/judge.md has what each measured with the default judge.
public enum JudgePrompts {
    /// The judge stage's defaults, also used by the evaluate stage's win-rate judgements.
    public static let defaultLayout = JudgeLayout.dialogue
    public static let defaultFewShot = 4
    /// Preference principles sampled and averaged per pair: with one, the default judge preferred
    /// the harmless answer of the clear-cut fixture in 17–21 of 22 pairs over five seeds; with
    /// four, in 20–22 (docs/judge.md). The CAI paper ensembles over principles for the same reason.
    public static let defaultPrinciples = 4

    static func question(_ layout: JudgeLayout, prompt: String, preference: String, a: String, b: String) -> String {
        switch layout {
        case .dialogue:
            return """
            Human: \(prompt)

            Assistant (A): \(a)

            Assistant (B): \(b)

            Question: \(preference)
            """
        case .options:
            return """
            Consider the following conversation between a human and an assistant:
            Human: \(prompt)
            \(preference)
            Options:
            (A) \(a)
            (B) \(b)
            """
        }
    }

    /// Worked examples from the constitution's few-shot pairs (flawed response vs revision), the
    /// better answer placed A, B, B, A, … so the block teaches no position and ends balanced.
    static func examples(_ constitution: Constitution, count: Int, preferences: [Principle], layout: JudgeLayout) -> String {
        constitution.fewShot.prefix(count).enumerated().map { i, example in
            let preference = preferences[i % max(preferences.count, 1)].preference
            let revisionFirst = i % 4 == 0 || i % 4 == 3
            let (a, b, answer) = revisionFirst ? (example.revision, example.response, "A") : (example.response, example.revision, "B")
            return question(layout, prompt: example.prompt, preference: preference, a: a, b: b) + "\nThe answer is: (\(answer))\n\n"
        }.joined()
    }

    /// The worked-example block of a judge: `count` examples whose preference questions are drawn
    /// once (seeded, weighted) under `stage`, independently of the pairs' principles.
    static func exampleBlock(_ constitution: Constitution, count: Int, layout: JudgeLayout, seed: UInt64, stage: String) -> String {
        let sampler = PrincipleSampler(constitution: constitution, tags: [])
        let preferences = (0..<max(count, 1)).map { sampler.pick(seed: seed, record: "", stage: stage, sample: $0, round: 0) }
        return examples(constitution, count: count, preferences: preferences, layout: layout)
    }

    public static func prompt(examples: String, layout: JudgeLayout, prompt: String, preference: String, a: String, b: String,
                              rationale: String?) -> String {
        var text = examples + question(layout, prompt: prompt, preference: preference, a: a, b: b)
        if let rationale { text += "\nLet's think step by step: \(rationale)" }
        return text + "\nThe answer is: ("
    }

    public static func rationalePrompt(examples: String, layout: JudgeLayout, prompt: String, preference: String, a: String, b: String) -> String {
        examples + question(layout, prompt: prompt, preference: preference, a: a, b: b) + "\nLet's think step by step:"
    }
}

public enum JudgeStage {
    struct Pair {
        var key: OutputKey
        var prompt: String
        /// Candidate 0 (the revision, or sample i), candidate 1 (the original, or sample j).
        var candidates: [String]
        var extra: [String: String]
    }

    /// The pairs to label, from the input stage.
    static func pairs(_ spec: JudgeSpec, context: RunContext) throws -> [Pair] {
        switch spec.pairs {
        case .originalVsRevision:
            return try SLCAIStages.subjects(from: spec.input, context: context).map { s in
                Pair(key: s.key, prompt: s.prompt, candidates: [s.current, s.original], extra: ["candidate_0": "revision", "candidate_1": "original"])
            }
        case .sampled:
            let rows = try context.store.outputs(stage: spec.input)
            if rows.isEmpty && !context.records.isEmpty { throw RunError.missingInput(stage: spec.input, input: spec.input) }
            var out: [Pair] = []
            for record in context.records {
                let samples = rows.filter { $0.record == record.id }.sorted { $0.sample < $1.sample }
                var index = 0
                for i in 0..<samples.count {
                    for j in (i + 1)..<samples.count {
                        out.append(Pair(key: OutputKey(record: record.id, sample: index, round: 0), prompt: record.prompt,
                                        candidates: [samples[i].output, samples[j].output],
                                        extra: ["candidate_0": "sample \(samples[i].sample)", "candidate_1": "sample \(samples[j].sample)"]))
                        index += 1
                    }
                }
            }
            return out
        }
    }

    /// K distinct preference principles for a pair (seeded, weighted, without replacement).
    static func principles(_ k: Int, pair: Pair, stage: Stage, context: RunContext) -> [Principle] {
        let sampler = PrincipleSampler(constitution: context.constitution, tags: [])
        var picked: [Principle] = []
        var draw = 0
        while picked.count < min(k, sampler.candidates.count) && draw < 64 * k {
            let p = sampler.pick(seed: context.pipeline.seed, record: pair.key.record, stage: stage.id + "/judge",
                                 sample: pair.key.sample, round: draw)
            if !picked.contains(where: { $0.id == p.id }) { picked.append(p) }
            draw += 1
        }
        return picked
    }

    static func run(_ spec: JudgeSpec, stage: Stage, context: RunContext) throws {
        let backend = try context.backend(spec.model)
        // One few-shot block per stage, its principles drawn independently of the pairs'.
        let examples = JudgePrompts.exampleBlock(context.constitution, count: spec.fewShot, layout: spec.layout,
                                                 seed: context.pipeline.seed, stage: stage.id + "/examples")
        let orders = spec.orders == .both ? [0, 1] : [0]

        let all = try pairs(spec, context: context)
        struct Planned { var pair: Pair; var principles: [Principle]; var hash: String }
        let planned = all.map { pair -> Planned in
            let ps = principles(spec.principles, pair: pair, stage: stage, context: context)
            let hash = SHA256.hex(fields: [examples, pair.prompt] + pair.candidates + ps.map(\.preference)
                                  + ["\(spec.orders)", "\(spec.layout)", "\(spec.cot)", "\(spec.cotClamp)", backend.backend.fingerprint])
            return Planned(pair: pair, principles: ps, hash: hash)
        }
        let stored = try context.store.inputHashes(stage: stage.id)
        let todo = planned.filter { stored[$0.pair.key] != $0.hash }
        var progress = ProgressState(stage: stage.id, done: all.count - todo.count, total: all.count, executed: 0, cached: 0,
                                     generatedTokens: 0, elapsed: 0)
        context.reporter?.progress(progress)
        let started = Date()
        let perBatch = max(1, context.options.batchSize / max(1, orders.count * spec.principles))
        var start = 0
        while start < todo.count {
            let batch = Array(todo[start..<min(start + perBatch, todo.count)])
            let t0 = Date()
            // (pair, principle, order) → (A, B) texts.
            var slots: [(pair: Int, principle: Int, order: Int, a: String, b: String)] = []
            for (i, item) in batch.enumerated() {
                for (k, _) in item.principles.enumerated() {
                    for order in orders {
                        let (a, b) = order == 0 ? (item.pair.candidates[0], item.pair.candidates[1]) : (item.pair.candidates[1], item.pair.candidates[0])
                        slots.append((i, k, order, a, b))
                    }
                }
            }
            var rationales = [String?](repeating: nil, count: slots.count)
            if spec.cot {
                let calls = slots.enumerated().map { n, slot -> GenerationCall in
                    let item = batch[slot.pair]
                    let seed = derivedSeed(context.pipeline.seed, record: item.pair.key.record, stage: stage.id + "/cot",
                                           sample: item.pair.key.sample, round: slot.principle * 2 + slot.order)
                    return GenerationCall(
                        prompt: .text(JudgePrompts.rationalePrompt(examples: examples, layout: spec.layout, prompt: item.pair.prompt,
                                                                   preference: item.principles[slot.principle].preference, a: slot.a, b: slot.b)),
                        parameters: SLCAIStages.parameters(spec.sampling, seed: seed, stops: ["\nThe answer is", "\n\n"]))
                }
                for (n, result) in try backend.generate(calls).enumerated() { rationales[n] = CAIPrompts.clean(result.0.text) }
            }
            let prompts = slots.enumerated().map { n, slot in
                JudgePrompts.prompt(examples: examples, layout: spec.layout, prompt: batch[slot.pair].pair.prompt,
                                    preference: batch[slot.pair].principles[slot.principle].preference, a: slot.a, b: slot.b,
                                    rationale: rationales[n])
            }
            let scored = try backend.score(prompts.map { ScoringCall(prompt: $0, continuations: ["A", "B"]) })
            let seconds = Date().timeIntervalSince(t0) / Double(max(batch.count, 1))
            var rows: [OutputRow] = []
            for (i, item) in batch.enumerated() {
                var probabilities = [[Double]](repeating: [], count: item.principles.count)
                var cotTexts = [[String]](repeating: [], count: item.principles.count)
                var allCached = true
                for (n, slot) in slots.enumerated() where slot.pair == i {
                    let (logA, logB) = (scored[n].scores[0], scored[n].scores[1])
                    allCached = allCached && scored[n].cached
                    // Normalised probability of the option tokens (a soft label, never a parsed string).
                    var pA = 1 / (1 + exp(logB - logA))
                    if spec.cot { pA = min(max(pA, spec.cotClamp.lowerBound), spec.cotClamp.upperBound) }
                    probabilities[slot.principle].append(slot.order == 0 ? pA : 1 - pA)
                    if let r = rationales[n] { cotTexts[slot.principle].append(r) }
                }
                let flat = probabilities.flatMap { $0 }
                let p = flat.reduce(0, +) / Double(max(flat.count, 1))
                let label = PairLabel(candidates: item.pair.candidates, principles: item.principles.map(\.id),
                                      probabilities: probabilities, rationales: spec.cot ? cotTexts : nil, probability: p,
                                      belowConfidence: abs(p - 0.5) < spec.minConfidence)
                var extra = item.pair.extra
                extra["label"] = String(decoding: try JSONEncoder().encode(label), as: UTF8.self)
                let firstPrompt = prompts[slots.firstIndex { $0.pair == i }!]
                rows.append(OutputRow(
                    stage: stage.id, record: item.pair.key.record, sample: item.pair.key.sample, round: 0, kind: "label",
                    principle: item.principles.first?.id, input: firstPrompt, inputHash: item.hash,
                    output: String(format: "%.4f", p), raw: flat.map { String(format: "%.4f", $0) }.joined(separator: " "),
                    flags: label.belowConfidence ? "low-confidence" : "", finish: "scored", promptTokens: 0, completionTokens: 0,
                    seconds: allCached ? 0 : seconds, cached: allCached,
                    extra: String(decoding: try JSONSerialization.data(withJSONObject: extra, options: [.sortedKeys]), as: UTF8.self)))
            }
            try context.store.save(rows)
            start += batch.count
            progress.done += batch.count
            (progress.executed, progress.cached) = context.callCounts
            progress.generatedTokens = context.generatedTokens
            progress.elapsed = Date().timeIntervalSince(started)
            context.reporter?.progress(progress)
            try context.batchCommitted()
        }
    }

    /// Stored labels of a judge stage with their pairs.
    public static func labels(stage: String, store: RunStore) throws -> [(row: OutputRow, label: PairLabel)] {
        try store.outputs(stage: stage).compactMap { row in
            guard let json = SLCAIStages.extraValue(row, "label"),
                  let label = try? JSONDecoder().decode(PairLabel.self, from: Data(json.utf8)) else { return nil }
            return (row, label)
        }
    }
}
