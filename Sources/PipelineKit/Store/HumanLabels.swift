import Foundation
import ModelKit
import GRDB

/// A reviewer's verdict on one pair or revision, stored in the run's `human_labels` table
/// (append-only; the latest row per stage, record and sample is the one in force).
public struct HumanLabel: Sendable, Equatable {
    /// On a judge stage: which candidate is better (`candidate_0`, `candidate_1`, `tie`). On a
    /// revise stage: `accept` or `reject` the revision. Nil when the row only edits or notes.
    public enum Verdict: String, Sendable, CaseIterable {
        case candidate0 = "candidate_0", candidate1 = "candidate_1", tie, accept, reject
    }

    public var stage: String
    public var record: String
    public var sample: Int
    public var verdict: Verdict?
    /// The reviewer's own text for the revision (SFT uses it; pairs use it as the revision side).
    public var edited: String?
    public var note: String?
    public var reviewer: String
    public var time: String

    public init(stage: String, record: String, sample: Int, verdict: Verdict?, edited: String?, note: String?, reviewer: String,
                time: String = ISO8601DateFormatter().string(from: Date())) {
        self.stage = stage
        self.record = record
        self.sample = sample
        self.verdict = verdict
        self.edited = edited
        self.note = note
        self.reviewer = reviewer
        self.time = time
    }

    /// Candidate 0 better (1), candidate 1 better (-1), tie (0); for a revise-stage verdict the
    /// revision is candidate 0, as in an original_vs_revision pair. Nil without a verdict.
    public var preference: Int? {
        switch verdict {
        case .candidate0?, .accept?: return 1
        case .candidate1?, .reject?: return -1
        case .tie?: return 0
        case nil: return nil
        }
    }
}

extension RunStore {
    static let humanLabelsSchema = """
        CREATE TABLE IF NOT EXISTS human_labels (
            id INTEGER PRIMARY KEY AUTOINCREMENT, stage TEXT NOT NULL, record TEXT NOT NULL, sample INTEGER NOT NULL,
            verdict TEXT, edited TEXT, note TEXT, reviewer TEXT NOT NULL, time TEXT NOT NULL);
        """

    /// Appends human labels in one transaction (all or nothing).
    public func saveHumanLabels(_ labels: [HumanLabel]) throws {
        try queue.write { db in
            try db.execute(sql: Self.humanLabelsSchema)
            for l in labels {
                try db.execute(sql: "INSERT INTO human_labels (stage, record, sample, verdict, edited, note, reviewer, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               arguments: [l.stage, l.record, l.sample, l.verdict?.rawValue, l.edited.map(StoredText.encode),
                                           l.note.map(StoredText.encode), l.reviewer, l.time])
            }
        }
    }

    /// The labels in force (latest per stage, record and sample), in stage and record order;
    /// empty for runs without the table.
    public func humanLabels(stage: String? = nil) throws -> [HumanLabel] {
        try queue.read { db in
            guard try Bool.fetchOne(db, sql: "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'human_labels'") == true else { return [] }
            let rows = try Row.fetchAll(db, sql: """
                SELECT * FROM human_labels h WHERE id = (SELECT max(id) FROM human_labels g
                    WHERE g.stage = h.stage AND g.record = h.record AND g.sample = h.sample)
                \(stage == nil ? "" : "AND stage = ?") ORDER BY stage, record, sample
                """, arguments: stage.map { [$0] } ?? [])
            return try rows.map { row in
                let verdictText: String? = row["verdict"]
                let verdict = try verdictText.map { text -> HumanLabel.Verdict in
                    guard let v = HumanLabel.Verdict(rawValue: text) else {
                        throw RunError.badStoredRow(stage: row["stage"], record: row["record"], sample: row["sample"],
                                                    message: "human label verdict `\(TerminalText.excerpt(text))` is not one of \(HumanLabel.Verdict.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    return v
                }
                let edited: String? = row["edited"], note: String? = row["note"]
                return HumanLabel(stage: row["stage"], record: row["record"], sample: row["sample"], verdict: verdict,
                                  edited: edited.map(StoredText.decode), note: note.map(StoredText.decode),
                                  reviewer: row["reviewer"], time: row["time"])
            }
        }
    }
}

/// Human labels take precedence over the judge's wherever labels and revisions flow onward:
/// exports, training data and the revision gate.
public enum HumanOverride {
    /// Labels of judge stage `judge` with human verdicts applied: a verdict on the pair (or, for
    /// original_vs_revision pairs, an accept/reject of the revision) sets P(candidate 0) to 1, 0
    /// or 0.5 (a tie, below any confidence bar); an edited revision replaces the revision side.
    /// Returns the labels and how many carry a human verdict.
    public static func labels(_ labels: [(row: OutputRow, label: PairLabel)], judge: String, revisionStage: String?,
                              store: RunStore) throws -> (labels: [(row: OutputRow, label: PairLabel)], human: Int) {
        let byJudge = index(try store.humanLabels(stage: judge))
        let byRevision = try revisionStage.map { index(try store.humanLabels(stage: $0)) } ?? [:]
        var human = 0
        let out = labels.map { item -> (row: OutputRow, label: PairLabel) in
            let key = "\(item.row.record)\u{1F}\(item.row.sample)"
            var label = item.label
            let revisionIndex = (0..<2).first { SLCAIStages.extraValue(item.row, "candidate_\($0)") == "revision" }
            let onPair = byJudge[key], onRevision = revisionIndex != nil ? byRevision[key] : nil
            if let preference = onPair?.preference ?? onRevision?.preference.map({ revisionIndex == 1 ? -$0 : $0 }) {
                label.probability = preference > 0 ? 1 : (preference < 0 ? 0 : 0.5)
                label.belowConfidence = preference == 0
                label.method = "human"
                human += 1
            }
            if let revisionIndex, let edited = onPair?.edited ?? onRevision?.edited, label.candidates.count == 2 {
                label.candidates[revisionIndex] = edited
            }
            return (item.row, label)
        }
        return (out, human)
    }

    /// Revision chains of `stage` with human edits applied and the revisions a human rejected
    /// (on the revise stage, or by preferring the original in `judge`'s pair) left out. `accepted`
    /// holds the "record␟sample" keys a human accepted (they pass any revision gate).
    public static func chains(_ chains: [RevisionChain], stage: String, judge: String?, store: RunStore) throws
        -> (kept: [RevisionChain], rejected: Int, edited: Int, accepted: Set<String>) {
        let byRevision = index(try store.humanLabels(stage: stage))
        var byJudge: [String: HumanLabel] = [:]
        var revisionIndex: [String: Int] = [:]
        if let judge {
            byJudge = index(try store.humanLabels(stage: judge))
            for row in try store.outputs(stage: judge) where byJudge["\(row.record)\u{1F}\(row.sample)"] != nil {
                if let i = (0..<2).first(where: { SLCAIStages.extraValue(row, "candidate_\($0)") == "revision" }) {
                    revisionIndex["\(row.record)\u{1F}\(row.sample)"] = i
                }
            }
        }
        var kept: [RevisionChain] = [], rejected = 0, edited = 0
        var accepted = Set<String>()
        for var chain in chains {
            let key = "\(chain.record)\u{1F}\(chain.sample)"
            var preference = byRevision[key]?.preference
            if preference == nil, let p = byJudge[key]?.preference, let i = revisionIndex[key] { preference = i == 0 ? p : -p }
            if preference == -1 { rejected += 1; continue }
            if preference == 1 { accepted.insert(key) }
            let judgeEdit = revisionIndex[key] != nil ? byJudge[key]?.edited : nil
            if let text = byRevision[key]?.edited ?? judgeEdit {
                chain.revision = text
                edited += 1
            }
            kept.append(chain)
        }
        return (kept, rejected, edited, accepted)
    }

    /// The judge stage whose pairs compare `stage`'s originals and revisions (the last one).
    public static func judge(comparing stage: String, in pipeline: Pipeline) -> String? {
        pipeline.stages.last {
            if case .judge(let j) = $0.kind { return j.input == stage && j.pairs == .originalVsRevision }
            return false
        }?.id
    }

    static func index(_ labels: [HumanLabel]) -> [String: HumanLabel] {
        Dictionary(labels.map { ("\($0.record)\u{1F}\($0.sample)", $0) }, uniquingKeysWith: { _, last in last })
    }
}
