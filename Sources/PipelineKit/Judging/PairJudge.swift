import Foundation
import ModelKit

/// One pair to label. `record` and `sample` key the seeded principle draw.
public struct JudgePair: Sendable, Equatable {
    public var record: String
    public var sample: Int
    public var prompt: String
    /// Candidate 0 and candidate 1; the label is P(candidate 0 better).
    public var candidates: [String]
    /// The prompt record's `category` (read by `examples: match`).
    public var category: String?

    public init(record: String, sample: Int, prompt: String, candidates: [String], category: String? = nil) {
        self.record = record
        self.sample = sample
        self.prompt = prompt
        self.candidates = candidates
        self.category = category
    }
}

/// A labelled pair with what the store keeps beside the label.
public struct Judgement: Sendable {
    public var label: PairLabel
    /// The first prompt asked (stored as the row's input).
    public var firstPrompt: String
    /// Whether every call came from the call cache.
    public var cached: Bool
}

/// Labels pairs under a judge stage's settings: the method, the principle ensemble, both orders,
/// the panel of judge models, position and fitted calibration. The judge stage and `precept judge`
/// share it, so a pairs file is labelled exactly as a pipeline would label it.
public final class PairJudge {
    public let spec: JudgeSpec
    let constitution: Constitution
    /// One backend per panel model, in `spec.models` order.
    let backends: [CachedBackend]
    let seed: UInt64
    let stage: String
    /// Applied to every label (nil: the raw label is final).
    public var calibration: FittedCalibration?
    /// Asked of every revision the label endorses (`harm_check`).
    public var harmCheck: HarmCheck?
    /// The worked-example block every prompt starts with (prefilled once by the engine); for
    /// `contrast`, the examples its two contexts are built from (part of the fingerprint).
    let examples: String
    /// logit P(A | "N/A", "N/A") per "model index|principle id" (`position_calibration: content_free`).
    private var priors: [String: Double] = [:]

    public init(spec: JudgeSpec, constitution: Constitution, backends: [CachedBackend], seed: UInt64, stage: String) {
        self.spec = spec
        self.constitution = constitution
        self.backends = backends
        self.seed = seed
        self.stage = stage
        switch spec.method {
        case .pairwise:
            examples = JudgePrompts.exampleBlock(constitution, count: spec.fewShot, layout: spec.layout, seed: seed, stage: stage + "/examples")
        case .pointwise, .rating:
            examples = PointwisePrompts.examples(constitution, count: spec.fewShot, method: spec.method)
        case .contrast:
            examples = ContrastPrompts.context(constitution.fewShot, count: spec.fewShot, good: true)
                + ContrastPrompts.context(constitution.fewShot, count: spec.fewShot, good: false)
        }
    }

    /// Everything besides the pair and its principles that decides a label: part of each stored
    /// label's input hash. Settings at their defaults add nothing, so stores written before these
    /// settings existed stay up to date.
    public var fingerprint: [String] {
        var fields = [examples]
        fields += ["\(spec.orders)", "\(spec.layout)", "\(spec.cot)", "\(spec.cotClamp)"] + backends.map(\.backend.scoringFingerprint)
        if spec.method != .pairwise { fields += ["method", spec.method.rawValue, "\(spec.temperature)"] }
        if spec.positionCalibration != .none { fields += ["position", spec.positionCalibration.rawValue] }
        if let c = calibration { fields += ["calibration", c.fit.rawValue, "\(c.a)", "\(c.b)"] }
        if spec.examples == .match { fields += ["examples", "match"] }
        // The gate reads `belowConfidence`, which depends on it: a changed margin relabels (from the call cache).
        if spec.minConfidence != 0 { fields += ["min_confidence", "\(spec.minConfidence)"] }
        if let harmCheck { fields += harmCheck.fingerprint }
        return fields
    }

    /// K distinct preference principles for a pair (seeded, weighted, without replacement).
    public func principles(for pair: JudgePair) -> [Principle] {
        let sampler = spec.examples == .match ? PrincipleSampler(constitution: constitution, tags: [], category: pair.category)
            : PrincipleSampler(constitution: constitution, tags: [])
        var picked: [Principle] = []
        var draw = 0
        let k = spec.principles
        while picked.count < min(k, sampler.candidates.count) && draw < 64 * k {
            let p = sampler.pick(seed: seed, record: pair.record, stage: stage + "/judge", sample: pair.sample, round: draw)
            if !picked.contains(where: { $0.id == p.id }) { picked.append(p) }
            draw += 1
        }
        return picked
    }

    /// Labels a batch of pairs (all their calls go to each model as one batch).
    public func label(_ pairs: [JudgePair]) throws -> [Judgement] {
        let principles = pairs.map(principles(for:))
        var judgements: [Judgement] = []
        switch spec.method {
        case .pairwise:
            var perModel: [[[[Double]]]] = []   // [model][pair][principle][order]
            var rationales: [[[String]]] = []
            var firstPrompts: [String] = []
            var cached = [Bool](repeating: true, count: pairs.count)
            for m in backends.indices {
                let r = try pairwise(model: m, pairs: pairs, principles: principles)
                perModel.append(r.probabilities)
                if m == 0 { rationales = r.rationales; firstPrompts = r.firstPrompts }
                for i in pairs.indices { cached[i] = cached[i] && r.cached[i] }
            }
            for i in pairs.indices {
                let probabilities = combine(perModel.map { $0[i] })
                let flat = probabilities.flatMap { $0 }
                let raw = flat.reduce(0, +) / Double(max(flat.count, 1))
                judgements.append(Judgement(label: finish(pairs[i], principles[i], probabilities: probabilities, raw: raw,
                                                          rationales: spec.cot ? rationales[i] : nil, scores: nil),
                                            firstPrompt: firstPrompts[i], cached: cached[i]))
            }
        case .pointwise, .rating, .contrast:
            var perModel: [[[[Double]]]] = []   // [model][pair][principle][candidate] scores
            var firstPrompts: [String] = []
            var cached = [Bool](repeating: true, count: pairs.count)
            for m in backends.indices {
                let r = spec.method == .contrast ? try contrast(model: m, pairs: pairs, principles: principles)
                    : try pointwise(model: m, pairs: pairs, principles: principles)
                perModel.append(r.scores)
                if m == 0 { firstPrompts = r.firstPrompts }
                for i in pairs.indices { cached[i] = cached[i] && r.cached[i] }
            }
            for i in pairs.indices {
                // Mean score per principle and candidate over the panel; P = σ((s_0 − s_1) / T).
                let scores = principles[i].indices.map { k in
                    (0..<2).map { c in perModel.map { $0[i][k][c] }.reduce(0, +) / Double(perModel.count) }
                }
                let differences = scores.map { ($0[0] - $0[1]) / spec.temperature }
                let raw = sigmoid(differences.reduce(0, +) / Double(max(differences.count, 1)))
                judgements.append(Judgement(label: finish(pairs[i], principles[i], probabilities: differences.map { [sigmoid($0)] },
                                                          raw: raw, rationales: nil, scores: scores),
                                            firstPrompt: firstPrompts[i], cached: cached[i]))
            }
        }
        if let harmCheck {
            // Only what the gate would keep is asked about: candidate 0, the revision.
            let asked = judgements.indices.filter { RevisionGate.endorses(judgements[$0].label) }
            let answers = try harmCheck.probabilities(asked.map { (pairs[$0].prompt, pairs[$0].candidates[0]) })
            for (i, answer) in zip(asked, answers) {
                judgements[i].label.harm = answer.probability
                judgements[i].label.harmful = answer.probability >= harmCheck.spec.threshold
                judgements[i].cached = judgements[i].cached && answer.cached
            }
        }
        return judgements
    }

    private func finish(_ pair: JudgePair, _ principles: [Principle], probabilities: [[Double]], raw: Double,
                        rationales: [[String]]?, scores: [[Double]]?) -> PairLabel {
        let p = calibration?.apply(raw) ?? raw
        var label = PairLabel(candidates: pair.candidates, principles: principles.map(\.id), probabilities: probabilities,
                              rationales: rationales, probability: p, belowConfidence: abs(p - 0.5) < spec.minConfidence)
        if spec.method != .pairwise { label.method = spec.method.rawValue }
        if calibration != nil { label.rawProbability = raw }
        if backends.count > 1 { label.models = spec.models }
        label.scores = scores
        return label
    }

    /// The panel's probabilities per principle and order, averaged over models in log-odds.
    private func combine(_ models: [[[Double]]]) -> [[Double]] {
        guard models.count > 1 else { return models[0] }
        return models[0].indices.map { k in
            models[0][k].indices.map { o in sigmoid(models.map { logit($0[k][o]) }.reduce(0, +) / Double(models.count)) }
        }
    }

    private func pairwise(model m: Int, pairs: [JudgePair], principles: [[Principle]])
        throws -> (probabilities: [[[Double]]], rationales: [[[String]]], firstPrompts: [String], cached: [Bool]) {
        let backend = backends[m]
        let orders = spec.orders == .both ? [0, 1] : [0]
        if spec.positionCalibration == .contentFree { try estimatePriors(model: m, principles: Array(Set(principles.flatMap { $0 }.map(\.id)))) }
        // (pair, principle, order) → (A, B) texts.
        var slots: [(pair: Int, principle: Int, order: Int, a: String, b: String)] = []
        // Ordered pair, order, principle: the principle's question comes last, so the calls of one
        // pair and order share everything before it (the engine prefills that stem once).
        for (i, pair) in pairs.enumerated() {
            for order in orders {
                let (a, b) = order == 0 ? (pair.candidates[0], pair.candidates[1]) : (pair.candidates[1], pair.candidates[0])
                for k in principles[i].indices { slots.append((i, k, order, a, b)) }
            }
        }
        var rationales = [String?](repeating: nil, count: slots.count)
        var cached = [Bool](repeating: true, count: pairs.count)
        if spec.cot {
            let calls = slots.map { slot -> GenerationCall in
                let pair = pairs[slot.pair]
                // The first model keeps the seeds of single-judge stages.
                let seedStage = m == 0 ? stage + "/cot" : stage + "/cot/\(m)"
                let seed = derivedSeed(self.seed, record: pair.record, stage: seedStage, sample: pair.sample,
                                       round: slot.principle * 2 + slot.order)
                return GenerationCall(
                    prompt: .text(JudgePrompts.rationalePrompt(examples: examples, layout: spec.layout, prompt: pair.prompt,
                                                               preference: principles[slot.pair][slot.principle].preference,
                                                               a: slot.a, b: slot.b)),
                    parameters: GenerationStages.parameters(spec.sampling, seed: seed, stops: ["\nThe answer is", "\n\n"]))
            }
            for (n, result) in try backend.generate(calls).enumerated() {
                rationales[n] = CAIPrompts.clean(result.0.text)
                cached[slots[n].pair] = cached[slots[n].pair] && result.cached
            }
        }
        let prompts = slots.enumerated().map { n, slot in
            JudgePrompts.prompt(examples: examples, layout: spec.layout, prompt: pairs[slot.pair].prompt,
                                preference: principles[slot.pair][slot.principle].preference, a: slot.a, b: slot.b,
                                rationale: rationales[n])
        }
        let scored = try backend.score(prompts.map { ScoringCall(prompt: $0, continuations: ["A", "B"]) })
        var probabilities = pairs.indices.map { principles[$0].map { _ in [Double]() } }
        var texts = pairs.indices.map { principles[$0].map { _ in [String]() } }
        var firstPrompts = [String](repeating: "", count: pairs.count)
        for (n, slot) in slots.enumerated() {
            let (logA, logB) = (scored[n].scores[0], scored[n].scores[1])
            cached[slot.pair] = cached[slot.pair] && scored[n].cached
            if firstPrompts[slot.pair].isEmpty { firstPrompts[slot.pair] = prompts[n] }
            // Normalised probability of the option tokens (a soft label, never a parsed string).
            var pA = 1 / (1 + exp(logB - logA))
            if let prior = priors["\(m)|\(principles[slot.pair][slot.principle].id)"] { pA = sigmoid(logit(pA) - prior) }
            if spec.cot { pA = min(max(pA, spec.cotClamp.lowerBound), spec.cotClamp.upperBound) }
            probabilities[slot.pair][slot.principle].append(slot.order == 0 ? pA : 1 - pA)
            if let r = rationales[n] { texts[slot.pair][slot.principle].append(r) }
        }
        return (probabilities, texts, firstPrompts, cached)
    }

    /// The content-free prior of each principle's question ("Calibrate Before Use": "N/A" for
    /// the prompt and both responses), asked once per model and principle (and cached).
    private func estimatePriors(model m: Int, principles ids: [String]) throws {
        let missing = ids.sorted().filter { priors["\(m)|\($0)"] == nil }
        guard !missing.isEmpty else { return }
        let calls = missing.map { id in
            ScoringCall(prompt: JudgePrompts.prompt(examples: examples, layout: spec.layout, prompt: "N/A",
                                                    preference: constitution.principle(id: id)?.preference ?? "",
                                                    a: "N/A", b: "N/A", rationale: nil),
                        continuations: ["A", "B"])
        }
        for (id, result) in zip(missing, try backends[m].score(calls)) {
            priors["\(m)|\(id)"] = result.scores[0] - result.scores[1]
        }
    }

    /// Scores per pair, principle and candidate: log p(r | good context) − log p(r | flawed context).
    /// Every call of one context starts with it, so the engine prefills (and keeps) each once.
    private func contrast(model m: Int, pairs: [JudgePair], principles: [[Principle]])
        throws -> (scores: [[[Double]]], firstPrompts: [String], cached: [Bool]) {
        // Under `examples: match` each pair's contexts come from the examples fitting its category.
        var examplesByPair: [[FewShotExample]] = []
        if spec.examples == .match {
            var byCategory: [String: [FewShotExample]] = [:]
            for pair in pairs {
                let key = pair.category ?? ""
                if byCategory[key] == nil { byCategory[key] = constitution.examples(forCategory: pair.category) }
                examplesByPair.append(byCategory[key]!)
            }
        }
        let passes = [true, false].map { good in
            let shared = ContrastPrompts.context(constitution.fewShot, count: spec.fewShot, good: good)
            let contexts = examplesByPair.map { ContrastPrompts.context($0, count: spec.fewShot, good: good) }
            return (sign: good ? 1.0 : -1.0, call: { (slot: Slot) in
                ContrastPrompts.call(context: contexts.isEmpty ? shared : contexts[slot.pair],
                                     preference: principles[slot.pair][slot.principle].preference,
                                     prompt: pairs[slot.pair].prompt, response: pairs[slot.pair].candidates[slot.candidate])
            })
        }
        return try scoreResponses(model: m, pairs: pairs, principles: principles, passes: passes) { $0[0] }
    }

    /// Scores per pair, principle and candidate from the answer options (`pointwise`, `rating`).
    private func pointwise(model m: Int, pairs: [JudgePair], principles: [[Principle]])
        throws -> (scores: [[[Double]]], firstPrompts: [String], cached: [Bool]) {
        let options = PointwisePrompts.options(spec.method)
        let call = { (slot: Slot) in
            ScoringCall(prompt: PointwisePrompts.prompt(examples: self.examples, method: self.spec.method, prompt: pairs[slot.pair].prompt,
                                                        response: pairs[slot.pair].candidates[slot.candidate],
                                                        preference: principles[slot.pair][slot.principle].preference),
                        continuations: options)
        }
        return try scoreResponses(model: m, pairs: pairs, principles: principles, passes: [(1, call)]) {
            PointwisePrompts.score(self.spec.method, logProbs: $0)
        }
    }

    typealias Slot = (pair: Int, principle: Int, candidate: Int)

    /// Σ over `passes` of sign × score(the call's log-probabilities), per pair, principle and
    /// candidate (0, 1); each pass is one batch of calls to model `m`. Slots go pair, candidate,
    /// principle, so the calls of one response share the prompt up to the question (one stem).
    private func scoreResponses(model m: Int, pairs: [JudgePair], principles: [[Principle]],
                                passes: [(sign: Double, call: (Slot) -> ScoringCall)], score: ([Double]) -> Double)
        throws -> (scores: [[[Double]]], firstPrompts: [String], cached: [Bool]) {
        var slots: [Slot] = []
        for i in pairs.indices {
            for c in 0..<2 { for k in principles[i].indices { slots.append((i, k, c)) } }
        }
        var scores = pairs.indices.map { principles[$0].map { _ in [0.0, 0.0] } }
        var cached = [Bool](repeating: true, count: pairs.count)
        var firstPrompts = [String](repeating: "", count: pairs.count)
        for pass in passes {
            let calls = slots.map(pass.call)
            for (slot, (call, result)) in zip(slots, zip(calls, try backends[m].score(calls))) {
                scores[slot.pair][slot.principle][slot.candidate] += pass.sign * score(result.scores)
                cached[slot.pair] = cached[slot.pair] && result.cached
                if firstPrompts[slot.pair].isEmpty { firstPrompts[slot.pair] = call.prompt }
            }
        }
        return (scores, firstPrompts, cached)
    }
}

extension JudgeSpec {
    /// The constitution the judge asks: its own `constitution:` files merged, else the pipeline's.
    public func constitution(pipeline: Constitution) throws -> Constitution {
        constitutions.isEmpty ? pipeline : try Constitution.merged(paths: constitutions)
    }
}

extension PairJudge {
    /// The stored input hash of a pair's label: the pair, its principles and `fingerprint`, so a
    /// changed setting, principle or model relabels it.
    public func inputHash(_ pair: JudgePair) -> String {
        let fields = fingerprint
        // Under `examples: match` the category's examples are part of every prompt.
        let category = spec.examples == .match
            ? ["category", pair.category ?? ""] + constitution.examples(forCategory: pair.category).map { $0.prompt + "\u{1F}" + $0.principle }
            : []
        return SHA256.hex(fields: [fields[0], pair.prompt] + pair.candidates + principles(for: pair).map(\.preference) + fields.dropFirst() + category)
    }

    /// Labels a gold pairs file with this judge's raw labels (calls cached like any other) and
    /// fits `spec.calibrationFit` on them.
    public func fitCalibration(path: String, batchSize: Int) throws -> FittedCalibration {
        let rows = try PairsFile.read(path: path, requireGold: true)
        let saved = calibration
        calibration = nil
        defer { calibration = saved }
        var raw: [Double] = []
        try label(rows, batchSize: batchSize) { _, judgements in raw += judgements.map(\.label.probability) }
        return FittedCalibration.fit(spec.calibrationFit, probabilities: raw, outcomes: rows.map { $0.better == "a" ? 1 : 0 }, file: path)
    }

    /// Labels the rows of a pairs file, `batchSize` pairs at a time, handing each batch to `body`.
    public func label(_ rows: [PairRow], batchSize: Int, _ body: ([PairRow], [Judgement]) throws -> Void) throws {
        var start = 0
        while start < rows.count {
            let batch = Array(rows[start..<min(start + batchSize, rows.count)])
            try body(batch, try label(batch.map {
                JudgePair(record: $0.id, sample: 0, prompt: $0.prompt, candidates: [$0.responseA, $0.responseB], category: $0.category)
            }))
            start += batch.count
        }
    }
}
