import Foundation

/// The revision gate: training data keeps a revision only when the judge prefers it over its
/// original by at least the judge stage's `min_confidence`, so what the policy learns from is
/// what the judge endorses. SFT data and sft exports name the judge stage (`gate: labels`); a
/// judge stage with `gate: true` leaves its non-endorsed pairs out of DPO, reward-model and
/// preference-export data.
public enum RevisionGate {
    /// Whether a label of an `original_vs_revision` judge endorses its revision (candidate 0):
    /// P(revision better) ≥ 0.5 + min_confidence (the label's `belowConfidence` carries the margin),
    /// and the stage's `harm_check`, if any, did not flag the revision.
    public static func endorses(_ label: PairLabel) -> Bool {
        label.probability > 0.5 && !label.belowConfidence && label.harmful != true
    }

    /// What a judge stage says of the revisions it compared.
    public struct Verdicts: Sendable, Equatable {
        /// "record␟sample" of every endorsed revision.
        public var endorsed: Set<String>
        /// Revisions the judge labelled.
        public var labelled: Int
        /// "record␟sample" of the revisions the judge preferred but the harm check flagged (not endorsed).
        public var harmFlagged: Set<String> = []

        /// "the judge endorses N of M revisions", with the harm check's share when it flagged any.
        public var summary: String {
            "the judge endorses \(endorsed.count) of \(labelled) revisions"
                + (harmFlagged.isEmpty ? "" : " (\(harmFlagged.count) more it preferred were flagged by the harm check)")
        }

        public func endorses(record: String, sample: Int) -> Bool { endorsed.contains("\(record)\u{1F}\(sample)") }
        public func flagged(record: String, sample: Int) -> Bool { harmFlagged.contains("\(record)\u{1F}\(sample)") }
    }

    /// The verdicts of judge stage `judge` (which must compare original and revision).
    public static func verdicts(judge: String, store: RunStore) throws -> Verdicts {
        let labels = try JudgeStage.labels(stage: judge, store: store)
        let endorsed = labels.filter { endorses($0.label) }.map { "\($0.row.record)\u{1F}\($0.row.sample)" }
        return Verdicts(endorsed: Set(endorsed), labelled: labels.count,
                        harmFlagged: Set(labels.filter { $0.label.harmful == true }.map { "\($0.row.record)\u{1F}\($0.row.sample)" }))
    }

    /// What the SFT data keeps of a revise stage's chains: human labels first (edits applied,
    /// rejected revisions out, accepted ones kept whatever the judge says), then the gate.
    public struct Selection {
        public var kept: [RevisionChain]
        /// Left out by the gate alone.
        public var gatedOut: Int
        /// Of those, revisions the judge preferred but the harm check flagged.
        public var harmFlagged: Int = 0
        public var humanRejected: Int
        public var humanEdited: Int
        /// Human labels about a revision that has changed since (not applied).
        public var humanStale: Int

        /// Provenance counts of the human labels used.
        public var provenance: [String: Int] { ["rejected": humanRejected, "edited": humanEdited, "stale": humanStale] }
    }

    /// The chains of `stage` that SFT data keeps; no gate keeps all but the human-rejected.
    public static func apply(_ chains: [RevisionChain], gate: String?, store: RunStore, stage: String, pipeline: Pipeline) throws -> Selection {
        let human = try HumanOverride.chains(chains, stage: stage, judge: gate ?? HumanOverride.judge(comparing: stage, in: pipeline), store: store)
        guard let gate else {
            return Selection(kept: human.kept, gatedOut: 0, humanRejected: human.rejected, humanEdited: human.edited, humanStale: human.stale)
        }
        let verdicts = try verdicts(judge: gate, store: store)
        if verdicts.labelled == 0 && !chains.isEmpty { throw RunError.missingInput(stage: gate, input: gate) }
        let kept = human.kept.filter {
            human.accepted.contains("\($0.record)\u{1F}\($0.sample)") || verdicts.endorses(record: $0.record, sample: $0.sample)
        }
        // A flagged revision is never endorsed, so it is left out unless a human accepted it.
        let flagged = human.kept.filter {
            verdicts.flagged(record: $0.record, sample: $0.sample) && !human.accepted.contains("\($0.record)\u{1F}\($0.sample)")
        }.count
        return Selection(kept: kept, gatedOut: human.kept.count - kept.count, harmFlagged: flagged, humanRejected: human.rejected,
                         humanEdited: human.edited, humanStale: human.stale)
    }
}
