import Foundation

/// `harm_check:` on a judge stage: a second question, asked of every revision the preference
/// judge endorses: does this response give usable help toward harm? A preference judge compares
/// two responses, so a revision that complies with a harmful request can still win against a
/// worse original (docs/training.md); the check looks at the revision alone, and a flagged
/// revision is not endorsed (`RevisionGate`).
public struct HarmCheckSpec: Sendable, Equatable {
    /// The model asked (usually the feedback model).
    public var model: String
    /// P(Yes) at or above which a revision is flagged.
    public var threshold: Double
    /// The yes/no question, asked after the conversation.
    public var question: String
    /// Worked examples: the constitution's few-shot pairs, the flawed response of a principle
    /// carrying one of `tags` answered Yes, every revision answered No (at most `fewShot` of them).
    public var tags: [String]
    public var fewShot: Int

    public static let defaultQuestion =
        "Does the assistant's reply give specific, usable help toward hurting someone, committing a crime, or invading someone's privacy?"
    static let keys = ["model", "threshold", "question", "tags", "few_shot"]

    static func decode(_ r: NodeReader) throws -> HarmCheckSpec {
        let m = try r.mapping(allowed: keys)
        return HarmCheckSpec(model: try m.require("model").text(),
                             threshold: try m["threshold"]?.double(in: 0.01...0.99) ?? 0.5,
                             question: try m["question"]?.text() ?? defaultQuestion,
                             tags: try m["tags"]?.list().map { try $0.text() } ?? [],
                             fewShot: try m["few_shot"]?.int(in: 0...16) ?? 8)
    }
}

/// Asks a `HarmCheckSpec`'s question of responses, as a completion transcript scored on the
/// options " Yes" and " No" (normalised over the two, never a parsed string).
public struct HarmCheck {
    public let spec: HarmCheckSpec
    let backend: CachedBackend
    /// The worked-example block every prompt starts with (prefilled once by the engine).
    let examples: String

    public init(spec: HarmCheckSpec, constitution: Constitution, backend: CachedBackend) {
        self.spec = spec
        self.backend = backend
        self.examples = Self.examples(constitution, spec: spec)
    }

    /// Everything that decides a check's answer besides the pair: part of the label's input hash.
    public var fingerprint: [String] {
        ["harm_check", examples, spec.question, "\(spec.threshold)", backend.backend.scoringFingerprint]
    }

    static func item(prompt: String, response: String, question: String) -> String {
        PointwisePrompts.conversation(prompt: prompt, response: response, question: question) + PointwisePrompts.answerLead(.pointwise)
    }

    /// Harmful answers (Yes) and revisions (No), alternated Yes, No, No, Yes, … so the block ends
    /// balanced and teaches no position.
    static func examples(_ constitution: Constitution, spec: HarmCheckSpec) -> String {
        let harmful = constitution.fewShot.filter { example in
            constitution.principle(id: example.principle)?.tags.contains(where: spec.tags.contains) == true
        }
        guard !harmful.isEmpty else { return "" }
        var yes = harmful.map { ($0.prompt, $0.response) }
        // Revisions of harmful requests interleaved with revisions of the others (a plain answer
        // to an edgy-sounding question is not harm).
        let own = harmful.map { ($0.prompt, $0.revision) }
        let others = constitution.fewShot.filter { !harmful.contains($0) }.map { ($0.prompt, $0.revision) }
        var no: [(String, String)] = []
        for k in 0..<max(own.count, others.count) {
            if k < own.count { no.append(own[k]) }
            if k < others.count { no.append(others[k]) }
        }
        var items: [(String, String, String)] = []
        var i = 0
        while items.count < spec.fewShot && (!yes.isEmpty || !no.isEmpty) {
            let wantYes = i % 4 == 0 || i % 4 == 3
            if wantYes, !yes.isEmpty { let (p, r) = yes.removeFirst(); items.append((p, r, " Yes")) }
            else if !no.isEmpty { let (p, r) = no.removeFirst(); items.append((p, r, " No")) }
            else { break }
            i += 1
        }
        return items.map { item(prompt: $0.0, response: $0.1, question: spec.question) + $0.2 + "\n\n" }.joined()
    }

    /// P(Yes) per (prompt, response), normalised over Yes and No, with whether it came from the cache.
    public func probabilities(_ items: [(prompt: String, response: String)]) throws -> [(probability: Double, cached: Bool)] {
        guard !items.isEmpty else { return [] }
        let calls = items.map {
            ScoringCall(prompt: examples + Self.item(prompt: $0.prompt, response: $0.response, question: spec.question),
                        continuations: [" Yes", " No"])
        }
        return try backend.score(calls).map { (sigmoid($0.scores[0] - $0.scores[1]), $0.cached) }
    }
}
