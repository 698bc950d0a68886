import Foundation
import GRDB
import ModelKit

/// A reviewer's verdict on one pair or revision, stored in the run's `human_labels` table.
/// Rows are appended (an undo in the review app deletes the row it takes back); per stage, record and sample the labels in force are the newest value of
/// each field among the rows about the same text (`subject`), so a later note does not undo an
/// earlier verdict, and a label about a revision that has since changed no longer applies. The
/// reviewer and time are those of the newest row.
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
    /// SHA-256 of what was reviewed: a judge pair's two candidates, or a chain's original and
    /// revision (`HumanLabel.subject`).
    public var subject: String

    public init(stage: String, record: String, sample: Int, verdict: Verdict?, edited: String?, note: String?, reviewer: String,
                subject: String, time: String = ISO8601DateFormatter().string(from: Date())) {
        self.stage = stage
        self.record = record
        self.sample = sample
        self.verdict = verdict
        self.edited = edited
        self.note = note
        self.reviewer = reviewer
        self.subject = subject
        self.time = time
    }

    /// The subject hash of two texts (candidates 0 and 1, or original and revision).
    public static func subject(_ first: String, _ second: String) -> String { SHA256.hex(fields: [first, second]) }

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
            verdict TEXT, edited TEXT, note TEXT, reviewer TEXT NOT NULL, time TEXT NOT NULL, subject TEXT NOT NULL);
        """

    /// Appends human labels in one transaction (all or nothing); returns their row ids.
    @discardableResult
    public func saveHumanLabels(_ labels: [HumanLabel]) throws -> [Int64] {
        try queue.write { db in
            try db.execute(sql: Self.humanLabelsSchema)
            var ids: [Int64] = []
            for l in labels {
                try db.execute(sql: """
                    INSERT INTO human_labels (stage, record, sample, verdict, edited, note, reviewer, time, subject)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [l.stage, l.record, l.sample, l.verdict?.rawValue, l.edited.map(StoredText.encode),
                                     l.note.map(StoredText.encode), l.reviewer, l.time, l.subject])
                ids.append(db.lastInsertedRowID)
            }
            return ids
        }
    }

    /// Takes back label rows by id (a reviewer's undo: the fold then gives what was in force
    /// before them). Returns how many rows went.
    @discardableResult
    public func deleteHumanLabels(ids: [Int64]) throws -> Int {
        try queue.write { db in
            guard try Bool.fetchOne(db, sql: "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'human_labels'") == true else { return 0 }
            var removed = 0
            for id in ids {
                try db.execute(sql: "DELETE FROM human_labels WHERE id = ?", arguments: [id])
                removed += db.changesCount
            }
            return removed
        }
    }

    /// The labels in force per stage, record and sample (see `HumanLabel`), in stage and record
    /// order; empty for runs without the table.
    public func humanLabels(stage: String? = nil) throws -> [HumanLabel] {
        let rows: [HumanLabel] = try queue.read { db in
            guard try Bool.fetchOne(db, sql: "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'human_labels'") == true else { return [] }
            return try Row.fetchAll(db, sql: "SELECT * FROM human_labels \(stage == nil ? "" : "WHERE stage = ?") ORDER BY id",
                                    arguments: stage.map { [$0] } ?? []).map { row in
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
                                  reviewer: row["reviewer"], subject: row["subject"], time: row["time"])
            }
        }
        // Newest first per key: its subject decides which rows still count; each field takes the
        // newest value given among them.
        var folded: [String: HumanLabel] = [:]
        var order: [String] = []
        for row in rows.reversed() {
            let key = "\(row.stage)\u{1F}\(row.record)\u{1F}\(row.sample)"
            guard var label = folded[key] else {
                folded[key] = row
                order.append(key)
                continue
            }
            guard row.subject == label.subject else { continue }
            label.verdict = label.verdict ?? row.verdict
            label.edited = label.edited ?? row.edited
            label.note = label.note ?? row.note
            folded[key] = label
        }
        return order.compactMap { folded[$0] }.sorted { ($0.stage, $0.record, $0.sample) < ($1.stage, $1.record, $1.sample) }
    }
}

/// Human labels take precedence over the judge's wherever labels and revisions flow onward:
/// exports, training data and the revision gate. One resolution serves all of them.
public enum HumanOverride {
    /// What the humans said about one record and sample, in force and about the current text.
    public struct Resolved: Sendable, Equatable {
        /// In candidate terms: 1 candidate 0 better, -1 candidate 1 better, 0 tie.
        public var candidatePreference: Int?
        /// In revision terms (original_vs_revision pairs and revise stages): 1 revision better,
        /// -1 original better, 0 tie.
        public var revisionPreference: Int?
        public var edited: String?
    }

    /// Resolves the labels of judge stage `judge` (its stored pairs) and of revise stage
    /// `revisionStage` (its chains): a judge-stage verdict or edit comes first, a revise-stage one
    /// second; labels whose subject no longer matches the stored text are stale and ignored.
    public static func resolve(store: RunStore, judge: String?, revisionStage: String?) throws
        -> (byKey: [String: Resolved], stale: Int) {
        var out: [String: Resolved] = [:], stale = 0
        var revisionIndex: [String: Int] = [:]
        if let judge {
            let labels = index(try store.humanLabels(stage: judge))
            if !labels.isEmpty {
                for (row, label) in try JudgeStage.labels(stage: judge, store: store) {
                    let key = "\(row.record)\u{1F}\(row.sample)"
                    let ri = row.revisionCandidate
                    if let ri { revisionIndex[key] = ri }
                    guard let human = labels[key], label.candidates.count == 2 else { continue }
                    guard human.subject == HumanLabel.subject(label.candidates[0], label.candidates[1]) else { stale += 1; continue }
                    var r = out[key] ?? Resolved()
                    r.candidatePreference = human.preference
                    if let p = human.preference, let ri { r.revisionPreference = ri == 0 ? p : -p }
                    if ri != nil { r.edited = human.edited }
                    out[key] = r
                }
            }
        }
        if let revisionStage {
            let labels = index(try store.humanLabels(stage: revisionStage))
            if !labels.isEmpty {
                for chain in try RevisionChain.load(stage: revisionStage, store: store, constitution: nil) {
                    let key = "\(chain.record)\u{1F}\(chain.sample)"
                    guard let human = labels[key] else { continue }
                    guard human.subject == HumanLabel.subject(chain.original, chain.revision) else { stale += 1; continue }
                    var r = out[key] ?? Resolved()
                    r.revisionPreference = r.revisionPreference ?? human.preference
                    if r.candidatePreference == nil, let p = human.preference, let ri = revisionIndex[key] {
                        r.candidatePreference = ri == 0 ? p : -p
                    }
                    r.edited = r.edited ?? human.edited
                    out[key] = r
                }
            }
        }
        return (out, stale)
    }

    /// Labels of judge stage `judge` with human verdicts applied: P(candidate 0) becomes 1, 0 or
    /// 0.5 (a tie, below any confidence bar) and an edited revision replaces the revision side.
    /// Returns the labels and how many carry a human verdict.
    public static func labels(_ labels: [(row: OutputRow, label: PairLabel)], judge: String, revisionStage: String?,
                              store: RunStore) throws -> (labels: [(row: OutputRow, label: PairLabel)], human: Int) {
        apply(try resolve(store: store, judge: judge, revisionStage: revisionStage).byKey, to: labels)
    }

    /// `labels` with already-resolved human labels applied (see `labels(_:judge:revisionStage:store:)`).
    public static func apply(_ resolved: [String: Resolved],
                             to labels: [(row: OutputRow, label: PairLabel)]) -> (labels: [(row: OutputRow, label: PairLabel)], human: Int) {
        var human = 0
        let out = labels.map { item -> (row: OutputRow, label: PairLabel) in
            guard let r = resolved["\(item.row.record)\u{1F}\(item.row.sample)"] else { return item }
            var label = item.label
            if let p = r.candidatePreference {
                label.probability = p > 0 ? 1 : (p < 0 ? 0 : 0.5)
                label.belowConfidence = p == 0
                label.method = "human"
                human += 1
            }
            if let edited = r.edited, label.candidates.count == 2,
               let ri = item.row.revisionCandidate {
                label.candidates[ri] = edited
            }
            return (item.row, label)
        }
        return (out, human)
    }

    /// Revision chains of `stage` with human edits applied and the revisions a human rejected
    /// left out (a human tie neither keeps nor drops: the judge and gate decide). `accepted` holds
    /// the "record␟sample" keys a human accepted (they pass any revision gate).
    public static func chains(_ chains: [RevisionChain], stage: String, judge: String?, store: RunStore) throws
        -> (kept: [RevisionChain], rejected: Int, edited: Int, accepted: Set<String>, stale: Int) {
        let (resolved, stale) = try resolve(store: store, judge: judge, revisionStage: stage)
        var kept: [RevisionChain] = [], rejected = 0, edited = 0
        var accepted = Set<String>()
        for var chain in chains {
            let key = "\(chain.record)\u{1F}\(chain.sample)"
            let r = resolved[key]
            if r?.revisionPreference == -1 { rejected += 1; continue }
            if r?.revisionPreference == 1 { accepted.insert(key) }
            if let text = r?.edited {
                chain.revision = text
                edited += 1
            }
            kept.append(chain)
        }
        return (kept, rejected, edited, accepted, stale)
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
