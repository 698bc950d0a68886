import Foundation

/// Two runs of the same prompts compared (two constitution versions, two judge settings): the
/// revisions side by side, label flips, per-principle revision win rates with bootstrap
/// intervals, and what changed in the constitution. `precept compare` prints it.
public struct RunComparison: Sendable {
    /// One (record, sample) present in both runs.
    public struct RecordPair: Sendable {
        public var record: String
        public var sample: Int
        public var prompt: String
        public var principleA: String?
        public var principleB: String?
        public var revisionA: String
        public var revisionB: String
        /// P(revision better) from each run's original_vs_revision judge (or P(candidate 0) otherwise).
        public var probabilityA: Double?
        public var probabilityB: Double?

        /// Both runs labelled the pair and prefer different candidates (a tie counts as its own
        /// verdict).
        public var flipped: Bool {
            guard let a = probabilityA, let b = probabilityB else { return false }
            return RunComparison.verdict(a) != RunComparison.verdict(b)
        }
        public var revisionsDiffer: Bool { GenerationStages.normalized(revisionA) != GenerationStages.normalized(revisionB) }
    }

    /// Per principle (the one that drove each revision): revision win rate and mean judge
    /// probability in each run, with percentile-bootstrap 95 % intervals of the win rate.
    public struct PrincipleRow: Sendable, Equatable {
        public var id: String
        public var nA: Int, nB: Int
        public var winRateA: Double?, winRateB: Double?
        public var ciA: [Double]?, ciB: [Double]?
        public var meanProbabilityA: Double?, meanProbabilityB: Double?
    }

    public var recordsCompared: Int
    public var labelledInBoth: Int
    public var labelFlips: Int
    public var revisionsChanged: Int
    /// Share of labelled pairs whose revision the judge prefers (ties count half), per run.
    public var revisionWinRateA: Double?
    public var revisionWinRateB: Double?
    public var perPrinciple: [PrincipleRow]
    public var principlesAdded: [String], principlesRemoved: [String], principlesEdited: [String]
    /// Line diff of the constitution texts, A → B.
    public var constitutionDiff: [LineDiff.Line]
    public var pairs: [RecordPair]

    /// Compares run `a` with run `b`; throws when they share no (record, sample).
    public static func compare(_ a: RunView, _ b: RunView, resamples: Int = 1000) throws -> RunComparison {
        let chainsA = try a.chains(), chainsB = try b.chains()
        let probabilitiesA = try judgeProbabilities(a), probabilitiesB = try judgeProbabilities(b)
        let byKeyB = Dictionary(chainsB.map { ("\($0.record)\u{1F}\($0.sample)", $0) }, uniquingKeysWith: { x, _ in x })
        var pairs: [RecordPair] = []
        for c in chainsA {
            let key = "\(c.record)\u{1F}\(c.sample)"
            guard let d = byKeyB[key] else { continue }
            pairs.append(RecordPair(record: c.record, sample: c.sample, prompt: c.prompt, principleA: c.principle, principleB: d.principle,
                                    revisionA: c.revision, revisionB: d.revision,
                                    probabilityA: probabilitiesA[key], probabilityB: probabilitiesB[key]))
        }
        guard !pairs.isEmpty else { throw CompareError.noSharedRecords(a: chainsA.count, b: chainsB.count) }

        func win(_ p: Double) -> Double { Double(verdict(p) + 1) / 2 }
        func rate(_ ps: [Double]) -> Double? { ps.isEmpty ? nil : ps.map(win).reduce(0, +) / Double(ps.count) }
        let labelledA = pairs.compactMap(\.probabilityA), labelledB = pairs.compactMap(\.probabilityB)

        var rows: [PrincipleRow] = []
        let ids = Set(pairs.compactMap(\.principleA) + pairs.compactMap(\.principleB)).sorted()
        for id in ids {
            let pa = pairs.filter { $0.principleA == id }.compactMap(\.probabilityA)
            let pb = pairs.filter { $0.principleB == id }.compactMap(\.probabilityB)
            rows.append(PrincipleRow(
                id: id, nA: pairs.filter { $0.principleA == id }.count, nB: pairs.filter { $0.principleB == id }.count,
                winRateA: rate(pa), winRateB: rate(pb),
                ciA: bootstrap(pa.map(win), resamples: resamples), ciB: bootstrap(pb.map(win), resamples: resamples),
                meanProbabilityA: pa.isEmpty ? nil : pa.reduce(0, +) / Double(pa.count),
                meanProbabilityB: pb.isEmpty ? nil : pb.reduce(0, +) / Double(pb.count)))
        }

        let principlesA = Dictionary(a.constitution.principles.map { ($0.id, $0) }, uniquingKeysWith: { x, _ in x })
        let principlesB = Dictionary(b.constitution.principles.map { ($0.id, $0) }, uniquingKeysWith: { x, _ in x })
        func examples(_ c: Constitution, _ id: String) -> [FewShotExample] { c.fewShot.filter { $0.principle == id } }
        let edited = principlesA.keys.filter { id in
            guard let pb = principlesB[id] else { return false }
            return principlesA[id] != pb || examples(a.constitution, id) != examples(b.constitution, id)
        }
        return RunComparison(
            recordsCompared: pairs.count,
            labelledInBoth: pairs.filter { $0.probabilityA != nil && $0.probabilityB != nil }.count,
            labelFlips: pairs.filter(\.flipped).count,
            revisionsChanged: pairs.filter(\.revisionsDiffer).count,
            revisionWinRateA: rate(labelledA), revisionWinRateB: rate(labelledB),
            perPrinciple: rows,
            principlesAdded: principlesB.keys.filter { principlesA[$0] == nil }.sorted(),
            principlesRemoved: principlesA.keys.filter { principlesB[$0] == nil }.sorted(),
            principlesEdited: edited.sorted(),
            constitutionDiff: LineDiff.diff(try constitutionText(a), try constitutionText(b)),
            pairs: pairs)
    }

    /// Probabilities this close to 0.5 are ties: the engine's scores of identical texts differ by
    /// ~1e-5 between batch compositions (float summation order), which must not read as a flip.
    public static let tieTolerance = 1e-4

    /// 1 when candidate 0 (the revision) is preferred, -1 when the other is, 0 for a tie.
    static func verdict(_ p: Double) -> Int { p > 0.5 + tieTolerance ? 1 : (p < 0.5 - tieTolerance ? -1 : 0) }

    /// P(revision better) per "record␟sample" from the last judge stage comparing the run's
    /// originals and revisions (none when no judge does).
    static func judgeProbabilities(_ view: RunView) throws -> [String: Double] {
        // Only a judge of this run's original and revision speaks to its revisions.
        guard let stage = view.revisionStage?.id, let judge = HumanOverride.judge(comparing: stage, in: view.pipeline)
                .flatMap({ view.pipeline.stage(id: $0) }) else { return [:] }
        var out: [String: Double] = [:]
        for (row, label) in try JudgeStage.labels(stage: judge.id, store: view.store) { out["\(row.record)\u{1F}\(row.sample)"] = label.probability }
        return out
    }

    /// The constitution text(s) the run stored, one file after another.
    static func constitutionText(_ view: RunView) throws -> String {
        if let list = try view.store.meta("constitutions"), !list.isEmpty,
           let entries = (try? JSONSerialization.jsonObject(with: Data(list.utf8))) as? [[String: String]] {
            return entries.map { "# \(($0["path"] ?? "") as NSString).lastPathComponent)\n" + ($0["yaml"] ?? "") }.joined(separator: "\n")
        }
        return try view.store.meta("constitution_yaml") ?? ""
    }

    /// Percentile bootstrap 95 % interval of the mean of `values` (Efron & Tibshirani 1993, §13.3).
    /// A fixed seed: the same values always give the same interval, in either run.
    static func bootstrap(_ values: [Double], resamples: Int, seed: UInt64 = 0x5EED) -> [Double]? {
        guard !values.isEmpty else { return nil }
        var rng = SeededRandom(seed: seed)
        var means: [Double] = []
        means.reserveCapacity(resamples)
        for _ in 0..<resamples {
            var sum = 0.0
            for _ in values { sum += values[Int(rng.next() % UInt64(values.count))] }
            means.append(sum / Double(values.count))
        }
        means.sort()
        return [means[Int(0.025 * Double(resamples - 1))], means[Int(0.975 * Double(resamples - 1))]]
    }

    // MARK: Output

    /// The `--json` object: records_compared, label_flips, revision_win_rate, per_principle,
    /// constitution_changed (plus labelled_in_both and revisions_changed).
    public var json: [String: Any] {
        func value(_ x: Double?) -> Any { x.map { ($0 * 10000).rounded() / 10000 } ?? NSNull() }
        func interval(_ x: [Double]?) -> Any { x.map { $0.map { ($0 * 10000).rounded() / 10000 } } ?? NSNull() }
        return [
            "records_compared": recordsCompared,
            "labelled_in_both": labelledInBoth,
            "label_flips": labelFlips,
            "revisions_changed": revisionsChanged,
            "revision_win_rate": ["a": value(revisionWinRateA), "b": value(revisionWinRateB)],
            "per_principle": perPrinciple.map { r -> [String: Any] in
                ["id": r.id, "n_a": r.nA, "n_b": r.nB, "win_rate_a": value(r.winRateA), "win_rate_b": value(r.winRateB),
                 "ci_a": interval(r.ciA), "ci_b": interval(r.ciB),
                 "mean_probability_a": value(r.meanProbabilityA), "mean_probability_b": value(r.meanProbabilityB)]
            },
            "constitution_changed": ["added": principlesAdded, "removed": principlesRemoved, "edited": principlesEdited],
        ]
    }

    /// The summary lines `precept compare` prints.
    public var summaryLines: [String] {
        func pct(_ x: Double?) -> String { x.map { String(format: "%.3f", $0) } ?? "—" }
        func ci(_ x: [Double]?) -> String { x.map { String(format: "[%.2f, %.2f]", $0[0], $0[1]) } ?? "" }
        var lines = [
            "records compared: \(recordsCompared) · revisions that differ: \(revisionsChanged)",
            "labelled in both: \(labelledInBoth) · label flips: \(labelFlips)",
            "revision win rate: A \(pct(revisionWinRateA)) · B \(pct(revisionWinRateB))",
            "constitution: added \(list(principlesAdded)) · removed \(list(principlesRemoved)) · edited \(list(principlesEdited))",
            "per principle (n, revision win rate [95 % bootstrap], mean P(revision better)):",
        ]
        for r in perPrinciple {
            lines.append("  \(r.id): A n=\(r.nA) \(pct(r.winRateA)) \(ci(r.ciA)) p̄=\(pct(r.meanProbabilityA)) · "
                         + "B n=\(r.nB) \(pct(r.winRateB)) \(ci(r.ciB)) p̄=\(pct(r.meanProbabilityB))")
        }
        return lines
    }

    private func list(_ ids: [String]) -> String { ids.isEmpty ? "none" : ids.joined(separator: ", ") }
}

/// Errors of `precept compare`.
public enum CompareError: LocalizedError, Equatable {
    case noSharedRecords(a: Int, b: Int)

    public var errorDescription: String? {
        switch self {
        case .noSharedRecords(let a, let b):
            return "the runs share no record (run A has \(a) revisions, run B \(b)); compare two runs of the same prompts"
        }
    }
}

/// A small deterministic generator (SplitMix64) for the bootstrap.
struct SeededRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Line-level diff (longest common subsequence), for constitution texts.
public enum LineDiff {
    /// `.same`, `.removed` or `.added`, one line each.
    public typealias Line = WordDiff.Piece

    public static func diff(_ old: String, _ new: String) -> [Line] {
        WordDiff.script(old.components(separatedBy: "\n"), new.components(separatedBy: "\n"), removedFirst: false)
    }

    /// `-`/`+` lines with two lines of context around each change; unchanged stretches elided.
    public static func unified(_ lines: [Line], context: Int = 2) -> [String] {
        let changed = lines.indices.filter { if case .same = lines[$0] { return false }; return true }
        guard !changed.isEmpty else { return [] }
        var show = Set<Int>()
        for k in changed { for d in -context...context where lines.indices.contains(k + d) { show.insert(k + d) } }
        var out: [String] = []
        var last = -1
        for k in show.sorted() {
            if last >= 0 && k > last + 1 { out.append("…") }
            switch lines[k] {
            case .same(let s): out.append("  " + s)
            case .removed(let s): out.append("- " + s)
            case .added(let s): out.append("+ " + s)
            }
            last = k
        }
        return out
    }
}
