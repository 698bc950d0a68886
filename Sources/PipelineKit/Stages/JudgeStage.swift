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
    /// `pointwise`, `rating` or `contrast`; nil for pairwise labels (and labels written before methods existed).
    public var method: String?
    /// The label before fitted calibration; nil when none was applied.
    public var rawProbability: Double?
    /// The panel of judge models, when more than one.
    public var models: [String]?
    /// Methods that score each response alone: per principle, the score of candidate 0 and of candidate 1.
    public var scores: [[Double]]?
    /// `harm_check`: P(Yes) of its question about candidate 0 (asked only of endorsed revisions).
    public var harm: Double?
    /// Whether `harm` reached the check's threshold (the gate then leaves the revision out).
    public var harmful: Bool?

    public init(candidates: [String], principles: [String], probabilities: [[Double]], rationales: [[String]]?,
                probability: Double, belowConfidence: Bool) {
        self.candidates = candidates
        self.principles = principles
        self.probabilities = probabilities
        self.rationales = rationales
        self.probability = probability
        self.belowConfidence = belowConfidence
    }

    /// Whether the label compared the two responses in one prompt (so positions and orders apply).
    public var isPositional: Bool { method == nil || method == JudgeMethod.pairwise.rawValue }

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
            return try GenerationStages.chainTips(from: spec.input, context: context).map { s in
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

    static func run(_ spec: JudgeSpec, stage: Stage, context: RunContext) throws {
        let judge = PairJudge(spec: spec, constitution: try spec.constitution(pipeline: context.constitution), backends: try spec.models.map { try context.backend($0) },
                              seed: context.pipeline.seed, stage: stage.id)
        if let check = spec.harmCheck {
            judge.harmCheck = HarmCheck(spec: check, constitution: judge.constitution, backend: try context.backend(check.model))
        }
        let perBatch = max(1, context.options.batchSize / max(1, spec.callsPerPair))
        if let file = spec.calibration {
            context.reporter?.message("\(stage.id): fitting \(spec.calibrationFit.rawValue) calibration on \(file)")
            let fitted = try judge.fitCalibration(path: file, batchSize: perBatch)
            judge.calibration = fitted
            try context.store.setMeta([calibrationKey(stage: stage.id): try fitted.json()])
        }
        let all = try pairs(spec, context: context)
        struct Planned { var pair: Pair; var hash: String }
        let planned = all.map { pair -> Planned in
            Planned(pair: pair, hash: judge.inputHash(judgePair(pair, context: context)))
        }
        let stored = try context.store.inputHashes(stage: stage.id)
        let todo = planned.filter { stored[$0.pair.key] != $0.hash }
        try context.storeInBatches(todo, total: all.count, size: perBatch, stage: stage.id) { batch in
            let t0 = Date()
            let judgements = try judge.label(batch.map { judgePair($0.pair, context: context) })
            let seconds = Date().timeIntervalSince(t0) / Double(max(batch.count, 1))
            return try zip(batch, judgements).map { item, judgement in
                let label = judgement.label
                let p = label.probability
                var extra = item.pair.extra
                extra["label"] = String(decoding: try JSONEncoder().encode(label), as: UTF8.self)
                return OutputRow(
                    stage: stage.id, record: item.pair.key.record, sample: item.pair.key.sample, round: 0, kind: "label",
                    principle: label.principles.first, input: judgement.firstPrompt, inputHash: item.hash,
                    output: String(format: "%.4f", p), raw: label.probabilities.flatMap { $0 }.map { String(format: "%.4f", $0) }.joined(separator: " "),
                    flags: label.belowConfidence ? "low-confidence" : "", finish: "scored", promptTokens: 0, completionTokens: 0,
                    seconds: judgement.cached ? 0 : seconds, cached: judgement.cached,
                    extra: OutputRow.extraText(extra))
            }
        }
    }

    static func judgePair(_ pair: Pair, context: RunContext) -> JudgePair {
        JudgePair(record: pair.key.record, sample: pair.key.sample, prompt: pair.prompt, candidates: pair.candidates,
                  category: context.recordsByID[pair.key.record]?.field("category"))
    }

    /// The run store's meta key holding a judge stage's fitted calibration.
    public static func calibrationKey(stage: String) -> String { "calibration/\(stage)" }

    /// The calibration a judge stage fitted, if it used one.
    public static func calibration(stage: String, store: RunStore) throws -> FittedCalibration? {
        guard let json = try store.meta(calibrationKey(stage: stage)) else { return nil }
        return try JSONDecoder().decode(FittedCalibration.self, from: Data(json.utf8))
    }

    /// Stored labels of a judge stage with their pairs. A row whose label is missing, does not
    /// decode, or does not hold together (two candidates, one probability list per principle, every
    /// probability in [0, 1]) is an error naming the row: never skipped, never trusted.
    public static func labels(stage: String, store: RunStore) throws -> [(row: OutputRow, label: PairLabel)] {
        try store.outputs(stage: stage).map { row in
            func bad(_ message: String) -> RunError {
                .badStoredRow(stage: stage, record: row.record, sample: row.sample, message: message)
            }
            guard let json = row.labelJSON else { throw bad("the judge label is missing") }
            let label: PairLabel
            do { label = try JSONDecoder().decode(PairLabel.self, from: Data(json.utf8)) } catch {
                throw bad("the judge label does not decode")
            }
            if let problem = label.problem { throw bad("the judge label \(problem)") }
            return (row, label)
        }
    }
}

extension PairLabel {
    /// What makes a stored label unusable, or nil when it holds together.
    var problem: String? {
        func valid(_ p: Double) -> Bool { p.isFinite && p >= 0 && p <= 1 }
        if candidates.count != 2 { return "has \(candidates.count) candidates (expected 2)" }
        if principles.isEmpty { return "has no principles" }
        if probabilities.count != principles.count {
            return "has \(probabilities.count) probability lists for \(principles.count) principles"
        }
        if probabilities.contains(where: { $0.isEmpty || $0.count > 2 }) { return "has a principle with \(probabilities.first { $0.isEmpty || $0.count > 2 }!.count) probabilities (expected 1 or 2)" }
        if !valid(probability) { return "has probability \(probability) (expected 0 to 1)" }
        if let bad = probabilities.joined().first(where: { !valid($0) }) { return "has a per-principle probability \(bad) (expected 0 to 1)" }
        if let raw = rawProbability, !valid(raw) { return "has raw probability \(raw) (expected 0 to 1)" }
        if let harm, !valid(harm) { return "has harm probability \(harm) (expected 0 to 1)" }
        return nil
    }
}
