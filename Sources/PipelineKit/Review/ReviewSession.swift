import Foundation
import ModelKit

/// What the browser review app (`precept review RUN`) shows and writes, apart from HTTP: the
/// run's reviewable items as JSON and the reviewer's actions as rows of the run's
/// `human_labels` table (see `HumanLabel`). The store is reopened for every call, so records a
/// running `precept run` adds show up on reload, and every action is written at once.
///
/// An item is either a revision (the last revise stage's chain: A is the revision, B the
/// original) or a judged pair of another judge stage (A is candidate 0, B candidate 1). A
/// revision's verdicts go to the judge stage that compares its original and revision when there
/// is one (where exports look first), else to the revise stage.
public final class ReviewSession: @unchecked Sendable {
    /// Why an action was refused (the server answers 400 with the message).
    public struct Refused: Error, Sendable {
        public var message: String
        /// The text the reviewer saw has changed in the store since the page loaded.
        public var conflict = false
        public init(_ message: String, conflict: Bool = false) {
            self.message = message
            self.conflict = conflict
        }
    }

    public let directory: URL
    public let reviewer: String
    public let readOnly: Bool
    private let lock = NSLock()
    /// Label rows this session wrote, by id: only those can be undone here.
    private var written: [Int64: (stage: String, record: String, sample: Int)] = [:]

    public init(directory: URL, reviewer: String, readOnly: Bool) throws {
        self.directory = directory
        self.reviewer = reviewer
        self.readOnly = readOnly
        _ = try RunView(directory: directory)
    }

    /// Everything the page shows: `{run, reviewer, read_only, judge, agreement, principles, items}`.
    public func state() throws -> [String: Any] {
        let view = try RunView(directory: directory)
        let items = try Self.items(view: view)
        var agreement: Any = NSNull()
        if let judge = view.judgeStage, case .judge(let spec) = judge.kind,
           let a = try HumanAgreement.load(stage: judge.id, store: view.store,
                                           revisionStage: spec.pairs == .originalVsRevision ? spec.input : nil) {
            agreement = ["stage": judge.id, "pairs": a.pairs, "accuracy": a.accuracy, "kappa": a.kappa, "confusion": a.confusion]
        }
        return ["run": view.pipeline.name, "reviewer": reviewer, "read_only": readOnly, "agreement": agreement,
                "principles": view.constitution.principles.map(\.id), "items": items]
    }

    /// Applies one action: `{stage, record, sample, subject, choice: a|b|tie, edited_revision,
    /// note}` (at least one of the last three). `subject` is the item's subject as the page
    /// showed it: when the store's text has changed since, the action is refused (`conflict`), so
    /// a verdict never lands on text the reviewer did not see. Returns `{id, item}`: the label
    /// row written, for undo, and the item as it now stands.
    public func act(_ body: [String: Any]) throws -> [String: Any] {
        guard !readOnly else { throw Refused("this review is read-only (--read-only)") }
        let view = try RunView(directory: directory)
        let targets = try HumanLabelsFile.Targets(view: view)
        guard let stage = body["stage"] as? String, let record = body["record"] as? String else {
            throw Refused("`stage` and `record` are required strings")
        }
        var object: [String: Any] = ["stage": stage, "record": record, "sample": body["sample"] ?? 0, "reviewer": reviewer]
        for key in ["edited_revision", "note"] where body[key] != nil { object[key] = body[key] }
        if let choice = body["choice"] {
            guard let choice = choice as? String, ["a", "b", "tie"].contains(choice) else { throw Refused("`choice` is a, b or tie") }
            object["verdict"] = try Self.verdict(choice: choice, stage: stage, view: view)
        }
        if let edited = body["edited_revision"] as? String, edited.allSatisfy(\.isWhitespace) {
            throw Refused("an edited revision cannot be empty")
        }
        let label: HumanLabel
        do { label = try targets.label(object, reviewer: reviewer) } catch let problem as HumanLabelsFile.Problem {
            throw Refused(problem.message)
        }
        guard let shown = body["subject"] as? String else { throw Refused("`subject` (the text the page showed) is required") }
        guard shown == label.subject else {
            throw Refused("the texts of \(record) changed in the run since this page loaded; reload to see them", conflict: true)
        }
        // `view.store` is opened read-only; writes open the store for writing, as an import does.
        let id = try RunStore(directory: directory).saveHumanLabels([label])[0]
        lock.withLock { written[id] = (label.stage, label.record, label.sample) }
        // The same view reads the new row: each read is its own transaction.
        return ["id": id, "item": try Self.item(in: view, stage: label.stage, record: label.record, sample: label.sample) ?? NSNull()]
    }

    /// Takes back a label row this session wrote. Returns `{item}` as it now stands.
    public func undo(id: Int64) throws -> [String: Any] {
        guard !readOnly else { throw Refused("this review is read-only (--read-only)") }
        guard let target = lock.withLock({ written[id] }) else { throw Refused("label \(id) was not written by this review session") }
        try RunStore(directory: directory).deleteHumanLabels(ids: [id])
        lock.withLock { _ = written.removeValue(forKey: id) }
        return ["item": try item(stage: target.stage, record: target.record, sample: target.sample) ?? NSNull()]
    }

    /// The item a label of `stage` is about: a revision item is labelled on its judge stage or,
    /// before the judge reached it, on the revise stage.
    func item(stage: String, record: String, sample: Int) throws -> [String: Any]? {
        try Self.item(in: RunView(directory: directory), stage: stage, record: record, sample: sample)
    }

    static func item(in view: RunView, stage: String, record: String, sample: Int) throws -> [String: Any]? {
        try items(view: view).first {
            $0["record"] as? String == record && $0["sample"] as? Int == sample
                && ($0["stage"] as? String == stage || $0["revise_stage"] as? String == stage)
        }
    }

    /// The verdict text of an import row for choice a/b/tie on `stage` (see the type's comment):
    /// on the judge that compares the revision stage A is the revision; on any other judge stage
    /// A is candidate 0.
    static func verdict(choice: String, stage: String, view: RunView) throws -> String {
        switch view.pipeline.stage(id: stage)?.kind {
        case .judge?:
            if let revisionStage = view.revisionStage?.id, HumanOverride.judge(comparing: revisionStage, in: view.pipeline) == stage {
                return ["a": "revision", "b": "original", "tie": "tie"][choice]!
            }
            return ["a": "candidate_0", "b": "candidate_1", "tie": "tie"][choice]!
        case .revise?, .critiqueRevise?:
            guard choice != "tie" else { throw Refused("a revision without a judge is accepted (a) or rejected (b)") }
            return choice == "a" ? "accept" : "reject"
        default:
            throw Refused("`\(TerminalText.excerpt(stage))` is not a judge or revise stage of this run")
        }
    }

    /// The run's reviewable items in record order (see the type's comment).
    static func items(view: RunView) throws -> [[String: Any]] {
        var out: [[String: Any]] = []
        let revisionStage = view.revisionStage?.id
        let comparing = revisionStage.flatMap { HumanOverride.judge(comparing: $0, in: view.pipeline) }
        let prompts = Dictionary(view.records.map { ($0.id, $0.prompt) }, uniquingKeysWith: { a, _ in a })
        var judgeLabels: [String: [String: (row: OutputRow, label: PairLabel)]] = [:]
        var humanLabels: [String: [String: HumanLabel]] = [:]
        for stage in view.pipeline.stages {
            if case .judge = stage.kind {
                judgeLabels[stage.id] = Dictionary(try JudgeStage.labels(stage: stage.id, store: view.store).map {
                    ("\($0.row.record)\u{1F}\($0.row.sample)", $0)
                }, uniquingKeysWith: { a, _ in a })
            }
        }
        for label in try view.store.humanLabels() {
            humanLabels[label.stage, default: [:]]["\(label.record)\u{1F}\(label.sample)"] = label
        }

        if let revisionStage {
            for chain in try view.chains(stage: revisionStage) {
                let key = "\(chain.record)\u{1F}\(chain.sample)"
                let pair = comparing.flatMap { judgeLabels[$0]?[key] }
                let stage = pair != nil ? comparing! : revisionStage
                // Candidate index of the revision in the judged pair; A is the revision.
                let ri = pair?.row.revisionCandidate ?? 0
                let subject = pair.map { HumanLabel.subject($0.label.candidates[0], $0.label.candidates[1]) }
                    ?? HumanLabel.subject(chain.original, chain.revision)
                // The judge-stage label first, else one given on the revise stage (the order
                // `HumanOverride.resolve` applies them in).
                let critiquedText = HumanLabel.subject(chain.original, chain.revision)
                var human = humanLabels[stage]?[key], humanSubject = subject, humanOnJudge = pair != nil
                if human == nil, stage != revisionStage, let earlier = humanLabels[revisionStage]?[key] {
                    (human, humanSubject, humanOnJudge) = (earlier, critiquedText, false)
                }
                let revision = human?.subject == humanSubject ? (human?.edited ?? chain.revision) : chain.revision
                var item: [String: Any] = [
                    "kind": "revision", "stage": stage, "revise_stage": revisionStage, "subject": subject,
                    "record": chain.record, "sample": chain.sample, "prompt": chain.prompt,
                    "principle": chain.principle ?? NSNull(), "flags": chain.flags, "critique": chain.critique,
                    "original": chain.original, "revision": chain.revision, "a": revision, "b": chain.original,
                    "a_label": "Revision", "b_label": "Original", "diff": diffPieces(chain.original, revision),
                    "editable": true,
                ]
                item["judge"] = pair.map { judgeJSON($0.label, stage: stage, aIndex: ri) } ?? NSNull()
                item["human"] = humanJSON(human, subject: humanSubject, aIndex: ri, onJudge: humanOnJudge)
                out.append(item)
            }
        }
        for stage in view.pipeline.stages where stage.id != comparing {
            guard case .judge = stage.kind, let labels = judgeLabels[stage.id] else { continue }
            for (row, label) in labels.values.sorted(by: { ($0.row.record, $0.row.sample) < ($1.row.record, $1.row.sample) })
            where label.candidates.count == 2 {
                let key = "\(row.record)\u{1F}\(row.sample)"
                let ri = row.revisionCandidate
                let subject = HumanLabel.subject(label.candidates[0], label.candidates[1])
                let human = humanLabels[stage.id]?[key]
                var item: [String: Any] = [
                    "kind": "pair", "stage": stage.id, "subject": subject, "record": row.record, "sample": row.sample,
                    "prompt": prompts[row.record] ?? "", "principle": label.principles.count == 1 ? label.principles[0] : NSNull(),
                    "flags": [String](), "a": label.candidates[0], "b": label.candidates[1],
                    "a_label": ri == 0 ? "Revision" : (ri == 1 ? "Original" : "Response A"),
                    "b_label": ri == 1 ? "Revision" : (ri == 0 ? "Original" : "Response B"), "editable": false,
                ]
                if let human, human.subject == subject, let edited = human.edited, let ri {
                    item[ri == 0 ? "a" : "b"] = edited
                }
                item["judge"] = judgeJSON(label, stage: stage.id, aIndex: 0)
                item["human"] = humanJSON(human, subject: subject, aIndex: 0, onJudge: true)
                out.append(item)
            }
        }
        return out
    }

    /// `[["=", words], ["-", words], ["+", words]]` from `WordDiff` (rendered as text by the page).
    static func diffPieces(_ old: String, _ new: String) -> [[String]] {
        WordDiff.diff(old, new).map {
            switch $0 {
            case .same(let s): return ["=", s]
            case .removed(let s): return ["-", s]
            case .added(let s): return ["+", s]
            }
        }
    }

    /// The judge's label in A/B terms: P(A better) overall and per principle and order.
    static func judgeJSON(_ label: PairLabel, stage: String, aIndex: Int) -> [String: Any] {
        func a(_ p: Double) -> Double { aIndex == 0 ? p : 1 - p }
        return ["stage": stage, "p_a": a(label.probability), "method": label.method ?? "pairwise",
                "below_confidence": label.belowConfidence,
                "per_principle": zip(label.principles, label.probabilities).map { ["principle": $0.0, "orders": $0.1.map(a)] },
                "models": label.models ?? []]
    }

    /// The human label in force in A/B terms: `{choice, edited, note, reviewer, time, stale}` or null.
    static func humanJSON(_ label: HumanLabel?, subject: String, aIndex: Int, onJudge: Bool) -> Any {
        guard let label else { return NSNull() }
        var choice: Any = NSNull()
        if let p = label.preference {
            // preference 1: candidate 0 (or the accepted revision on a revise stage) is better.
            let aBetter = onJudge ? (aIndex == 0 ? p : -p) : p
            choice = aBetter > 0 ? "a" : (aBetter < 0 ? "b" : "tie")
        }
        return ["choice": choice, "edited": label.edited ?? NSNull(), "note": label.note ?? NSNull(),
                "reviewer": label.reviewer, "time": label.time, "stale": label.subject != subject]
    }
}
