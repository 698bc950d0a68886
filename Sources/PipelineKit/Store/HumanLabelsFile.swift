import Foundation
import ModelKit

/// Human labels made elsewhere, as JSONL, and the labels of a run written back out.
///
/// Import rows: `record` (required), `sample` (default 0), `stage` (default: the run's last judge
/// stage, else its last revise stage), `verdict`, `edited_revision`, `note`, `reviewer` (at least
/// one of the first three). On a judge stage `verdict` is `candidate_0`, `candidate_1` or `tie`,
/// or `revision` / `original` when the pair compares the two; on a revise stage it is `accept` or
/// `reject` (`revision` / `original` also read).
public enum HumanLabelsFile {
    /// Reads and checks every row against the run; nothing is stored unless all rows are good.
    public static func read(path: String, view: RunView, reviewer defaultReviewer: String) throws -> [HumanLabel] {
        let targets = try Targets(view: view)
        var out: [HumanLabel] = []
        try JSONLines.forEachObject(path: path, displayName: path) { _, object, fail in
            do {
                out.append(try targets.label(object, reviewer: defaultReviewer))
            } catch let problem as Problem {
                throw fail(problem.message)
            }
            return true
        }
        if out.isEmpty { throw ConfigError.jsonl(file: path, line: 1, byteOffset: 0, message: "no labels in the file") }
        return out
    }

    /// Whether a decoded JSON value is `true` / `false`. On Linux `0 as NSNumber is Bool` holds,
    /// so the type is asked instead: JSONSerialization's booleans are an NSNumber subclass of
    /// Objective-C type `c`, its numbers plain NSNumber.
    static func isBoolean(_ value: Any) -> Bool {
        if type(of: value) == Bool.self { return true }
        guard let number = value as? NSNumber, type(of: value) != NSNumber.self else { return false }
        return String(cString: number.objCType) == "c"
    }

    /// Why one label row cannot be stored (the caller adds where the row came from).
    public struct Problem: Error, Sendable {
        public var message: String
        init(_ message: String) { self.message = message }
    }

    /// What labels of a run can be about: each judge stage's pairs and each revise stage's
    /// chains, with the subject hash of the text a reviewer sees now.
    public struct Targets {
        /// Per judge stage, per "record␟sample": the stored row and the subject of its two candidates.
        var judges: [String: [String: (row: OutputRow, subject: String)]]
        /// Per revise stage, per "record␟sample": the subject of original and revision.
        var revisers: [String: [String: String]]
        var defaultStage: String?

        public init(view: RunView) throws {
            judges = Dictionary(uniqueKeysWithValues: try view.pipeline.stages.compactMap { stage -> (String, [String: (row: OutputRow, subject: String)])? in
                guard case .judge = stage.kind else { return nil }
                return (stage.id, Dictionary(try JudgeStage.labels(stage: stage.id, store: view.store).compactMap { item in
                    item.label.candidates.count == 2
                        ? ("\(item.row.record)\u{1F}\(item.row.sample)", (row: item.row, subject: HumanLabel.subject(item.label.candidates[0], item.label.candidates[1])))
                        : nil
                }, uniquingKeysWith: { a, _ in a }))
            })
            revisers = Dictionary(uniqueKeysWithValues: try view.pipeline.stages.compactMap { stage -> (String, [String: String])? in
                switch stage.kind {
                case .revise, .critiqueRevise:
                    return (stage.id, Dictionary(try view.chains(stage: stage.id).map {
                        ("\($0.record)\u{1F}\($0.sample)", HumanLabel.subject($0.original, $0.revision))
                    }, uniquingKeysWith: { a, _ in a }))
                default: return nil
                }
            })
            defaultStage = view.judgeStage?.id ?? view.revisionStage?.id
        }

        /// One import row (`record`, `sample`, `stage`, `verdict`, `edited_revision`, `note`,
        /// `reviewer`) checked against the run and turned into a label.
        public func label(_ object: [String: Any], reviewer defaultReviewer: String) throws -> HumanLabel {
            func string(_ key: String) throws -> String? {
                guard let value = object[key], !(value is NSNull) else { return nil }
                guard let text = value as? String else { throw Problem("at key `\(key)`: expected a string") }
                return text
            }
            guard let record = try string("record"), !record.isEmpty else { throw Problem("at key `record`: missing (the record id)") }
            var sample = 0
            if let value = object["sample"] {
                // JSONSerialization gives NSNumber; a caller building the object in Swift gives Int.
                let whole: Int? = isBoolean(value) ? nil : (value as? Int)
                    ?? (value as? NSNumber).flatMap { $0.doubleValue == Double($0.intValue) ? $0.intValue : nil }
                guard let whole, whole >= 0 else { throw Problem("at key `sample`: expected a whole number ≥ 0") }
                sample = whole
            }
            guard let stage = try string("stage") ?? defaultStage else { throw Problem("this run has no judge or revise stage to label") }
            let key = "\(record)\u{1F}\(sample)"
            let verdictText = try string("verdict"), edited = try string("edited_revision"), note = try string("note")
            guard verdictText != nil || edited != nil || note != nil else {
                throw Problem("give at least one of `verdict`, `edited_revision`, `note`")
            }
            var verdict: HumanLabel.Verdict?
            let subject: String
            if let (row, pairSubject) = judges[stage]?[key] {
                subject = pairSubject
                let revisionIndex = row.revisionCandidate
                if let text = verdictText {
                    switch text {
                    case "candidate_0": verdict = .candidate0
                    case "candidate_1": verdict = .candidate1
                    case "tie": verdict = .tie
                    case "revision", "original":
                        guard let i = revisionIndex else { throw Problem("at key `verdict`: `\(text)` needs a pair of original and revision; use candidate_0, candidate_1 or tie") }
                        verdict = (text == "revision") == (i == 0) ? .candidate0 : .candidate1
                    default: throw Problem("at key `verdict`: `\(TerminalText.excerpt(text))` is not candidate_0, candidate_1, tie, revision or original")
                    }
                }
                if edited != nil && revisionIndex == nil { throw Problem("at key `edited_revision`: judge `\(stage)` does not compare original and revision") }
            } else if let critiquedText = revisers[stage]?[key] {
                subject = critiquedText
                if let text = verdictText {
                    switch text {
                    case "accept", "revision": verdict = .accept
                    case "reject", "original": verdict = .reject
                    default: throw Problem("at key `verdict`: `\(TerminalText.excerpt(text))` is not accept or reject (stage `\(stage)` revises)")
                    }
                }
            } else if judges[stage] == nil && revisers[stage] == nil {
                throw Problem("at key `stage`: `\(TerminalText.excerpt(stage))` is not a judge or revise stage of this run")
            } else {
                throw Problem("at key `record`: stage `\(stage)` has no record `\(TerminalText.excerpt(record))` sample \(sample)")
            }
            return HumanLabel(stage: stage, record: record, sample: sample, verdict: verdict, edited: edited, note: note,
                              reviewer: try string("reviewer") ?? defaultReviewer, subject: subject)
        }
    }

    /// The run's human labels in force, one JSON object per line, each with the pair it judges
    /// (`prompt`, `response_a`, `response_b`, `better`: the pairs format `precept judge` and
    /// judge calibration read; `better` is absent for a tie or a label without verdict).
    /// `decidedOnly`: only rows with a pair and a `better` (no ties, notes or stale labels), so
    /// the file serves as a judge's `calibration:` file or `precept judge` gold as it is.
    public static func rows(view: RunView, decidedOnly: Bool = false) throws -> [[String: Any]] {
        let prompts = Dictionary(uniqueKeysWithValues: view.records.map { ($0.id, $0.prompt) })
        var out: [[String: Any]] = []
        // Each stage's stored pairs and chains, read once.
        var pairsOf: [String: [String: (row: OutputRow, label: PairLabel)]] = [:]
        var chainsOf: [String: [String: RevisionChain]] = [:]
        func pairs(_ stage: String) throws -> [String: (row: OutputRow, label: PairLabel)] {
            if let cached = pairsOf[stage] { return cached }
            let read = Dictionary(try JudgeStage.labels(stage: stage, store: view.store).map { ("\($0.row.record)\u{1F}\($0.row.sample)", $0) },
                                  uniquingKeysWith: { a, _ in a })
            pairsOf[stage] = read
            return read
        }
        func chains(_ stage: String) throws -> [String: RevisionChain] {
            if let cached = chainsOf[stage] { return cached }
            let read = Dictionary(try view.chains(stage: stage).map { ("\($0.record)\u{1F}\($0.sample)", $0) }, uniquingKeysWith: { a, _ in a })
            chainsOf[stage] = read
            return read
        }
        for label in try view.store.humanLabels() {
            let key = "\(label.record)\u{1F}\(label.sample)"
            var row: [String: Any] = ["stage": label.stage, "record": label.record, "sample": label.sample,
                                      "reviewer": label.reviewer, "time": label.time]
            if let v = label.verdict { row["verdict"] = v.rawValue }
            if let e = label.edited { row["edited_revision"] = e }
            if let n = label.note { row["note"] = n }
            var pair: (String, String)?
            var current: String?
            if case .judge? = view.pipeline.stage(id: label.stage)?.kind, let item = try pairs(label.stage)[key], item.label.candidates.count == 2 {
                let stored = item.row, candidates = item.label.candidates
                current = HumanLabel.subject(candidates[0], candidates[1])
                var c = candidates
                if let e = label.edited, let i = stored.revisionCandidate { c[i] = e }
                pair = (c[0], c[1])
            } else if let chain = try chains(label.stage)[key] {
                current = HumanLabel.subject(chain.original, chain.revision)
                pair = (label.edited ?? chain.revision, chain.original)
            }
            if current != label.subject {
                // About a text that has changed since (or is gone): kept, marked, without a pair.
                row["stale"] = true
                pair = nil
            }
            if let (a, b) = pair {
                row["prompt"] = prompts[label.record] ?? ""
                row["response_a"] = a
                row["response_b"] = b
                if let p = label.preference, p != 0 { row["better"] = p > 0 ? "a" : "b" }
            }
            if decidedOnly && row["better"] == nil { continue }
            out.append(row)
        }
        guard decidedOnly else { return out }
        // One row per record and sample, the judge's pair first (the precedence exports use).
        var seen = Set<String>()
        let judgeFirst = out.filter { if case .judge? = view.pipeline.stage(id: $0["stage"] as? String ?? "")?.kind { return true }; return false }
            + out.filter { if case .judge? = view.pipeline.stage(id: $0["stage"] as? String ?? "")?.kind { return false }; return true }
        return judgeFirst.filter { seen.insert("\($0["record"] ?? "")\u{1F}\($0["sample"] ?? "")").inserted }
    }
}
