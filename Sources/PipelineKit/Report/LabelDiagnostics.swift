import Foundation

/// Failure-mode numbers for a judge stage's labels: position bias (agreement between the two
/// orders, probability given to position A), ties, length bias, and how often the revision
/// loses to the original (DESIGN.md § Failure-mode monitors).
public struct LabelDiagnostics: Sendable, Equatable, Codable {
    public struct PrincipleStats: Sendable, Equatable, Codable {
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(pairs, forKey: .pairs)
            try c.encode(meanProbability, forKey: .meanProbability)
            try c.encode(revisionWinRate, forKey: .revisionWinRate)
        }

        public var pairs: Int
        /// Mean P(candidate 0 better) under this principle (candidate 0 is the revision for
        /// original_vs_revision pairs).
        public var meanProbability: Double
        public var revisionWinRate: Double?

        enum CodingKeys: String, CodingKey {
            case pairs, meanProbability = "mean_probability", revisionWinRate = "revision_win_rate"
        }
    }

    public var pairs: Int
    /// Fraction of (pair, principle) judgements whose two orders prefer the same response; nil with one order.
    public var orderAgreement: Double?
    /// Mean probability given to whichever response is shown first: 0.5 is unbiased; nil when
    /// the labels come from a method that judges each response alone (no positions).
    public var firstPositionRate: Double?
    /// Fraction of labels within `tieBand` of 0.5.
    public var tieRate: Double
    /// Mean words of the preferred and the other response.
    public var meanLengthChosen: Double
    public var meanLengthRejected: Double
    /// Fraction of original_vs_revision pairs where the revision is preferred; nil for sampled pairs.
    public var revisionWinRate: Double?
    public var perPrinciple: [String: PrincipleStats]
    /// The fitted calibration the stage applied (`calibration:`), set by the caller from the run store.
    public var calibration: FittedCalibration?
    /// The judge against human verdicts on the reviewed pairs; nil when none were reviewed.
    public var humanAgreement: HumanAgreement?

    /// Labels within this distance of 0.5 count as ties.
    public static let tieBand = 0.05

    enum CodingKeys: String, CodingKey {
        case pairs, orderAgreement = "order_agreement", firstPositionRate = "first_position_rate", tieRate = "tie_rate"
        case meanLengthChosen = "mean_length_chosen", meanLengthRejected = "mean_length_rejected"
        case revisionWinRate = "revision_win_rate", perPrinciple = "per_principle", calibration
        case humanAgreement = "human_agreement"
    }

    /// Every key is written, `null` where a figure does not apply.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(pairs, forKey: .pairs)
        try c.encode(orderAgreement, forKey: .orderAgreement)
        try c.encode(firstPositionRate, forKey: .firstPositionRate)
        try c.encode(tieRate, forKey: .tieRate)
        try c.encode(meanLengthChosen, forKey: .meanLengthChosen)
        try c.encode(meanLengthRejected, forKey: .meanLengthRejected)
        try c.encode(revisionWinRate, forKey: .revisionWinRate)
        try c.encode(perPrinciple, forKey: .perPrinciple)
        try c.encodeIfPresent(calibration, forKey: .calibration)
        try c.encodeIfPresent(humanAgreement, forKey: .humanAgreement)
    }

    public init(labels: [(row: OutputRow, label: PairLabel)]) {
        func words(_ s: String) -> Double { Double(s.split(whereSeparator: \.isWhitespace).count) }
        func mean(_ xs: [Double]) -> Double { xs.isEmpty ? 0 : xs.reduce(0, +) / Double(xs.count) }
        var perPrinciple: [String: [Double]] = [:]
        var revisionPairs: [Double] = []
        for (row, label) in labels {
            for (k, orders) in label.probabilities.enumerated() {
                perPrinciple[label.principles[k], default: []].append(mean(orders))
            }
            if row.candidateName(0) == "revision" { revisionPairs.append(label.probability) }
        }
        pairs = labels.count
        // Labels that judged each response alone have no positions to measure.
        (orderAgreement, firstPositionRate) = positionBias(labels.filter { $0.label.isPositional }.flatMap { $0.label.probabilities })
        tieRate = mean(labels.map { abs($0.label.probability - 0.5) < Self.tieBand ? 1 : 0 })
        meanLengthChosen = mean(labels.map { words($0.label.candidates[$0.label.chosen.index]) })
        meanLengthRejected = mean(labels.map { words($0.label.candidates[1 - $0.label.chosen.index]) })
        revisionWinRate = revisionPairs.isEmpty ? nil : mean(revisionPairs.map { $0 > 0.5 ? 1 : 0 })
        self.perPrinciple = perPrinciple.mapValues { ps in
            PrincipleStats(pairs: ps.count, meanProbability: mean(ps),
                           revisionWinRate: revisionPairs.isEmpty ? nil : mean(ps.map { $0 > 0.5 ? 1 : 0 }))
        }
    }

    /// The diagnostics of a stored judge stage, with the calibration it fitted.
    /// `revisionStage`: the revise stage an original_vs_revision judge compares, so accept/reject
    /// labels on its revisions count towards the human agreement.
    public static func load(stage: String, store: RunStore, revisionStage: String? = nil) throws -> LabelDiagnostics {
        var d = LabelDiagnostics(labels: try JudgeStage.labels(stage: stage, store: store))
        d.calibration = try JudgeStage.calibration(stage: stage, store: store)
        d.humanAgreement = try HumanAgreement.load(stage: stage, store: store, revisionStage: revisionStage)
        return d
    }

    /// Plain-text lines, with warnings where the numbers point at a problem.
    public var text: [String] {
        var lines = ["pairs: \(pairs)"]
        if let a = orderAgreement {
            lines.append(String(format: "order agreement: %.2f%@", a, a < 0.6 ? "  ⚠ the judge often flips with the order (position bias)" : ""))
        } else if firstPositionRate == nil {
            lines.append("order agreement / first position: n/a (each response judged alone: no positions)")
        } else {
            lines.append("order agreement: n/a (one order asked; use orders: both to measure position bias)")
        }
        if let f = firstPositionRate {
            lines.append(String(format: "first-position probability: %.3f%@", f,
                                abs(f - 0.5) > 0.1 ? "  ⚠ favours position \(f > 0.5 ? "A" : "B")" : ""))
        }
        if let c = calibration {
            lines.append(String(format: "calibration: %@ fitted on %d labelled pairs (%@): a = %.3f, b = %.3f, log-loss %.3f → %.3f",
                                c.fit.rawValue, c.pairs, URL(fileURLWithPath: c.file).lastPathComponent, c.a, c.b, c.logLossBefore, c.logLossAfter))
        }
        lines.append(String(format: "tie rate (|p − 0.5| < %.2f): %.2f", Self.tieBand, tieRate))
        lines.append(String(format: "mean length chosen / rejected: %.1f / %.1f words%@", meanLengthChosen, meanLengthRejected,
                            meanLengthChosen > 1.5 * max(meanLengthRejected, 1) ? "  ⚠ length bias?" : ""))
        if let w = revisionWinRate {
            lines.append(String(format: "revision preferred over original: %.2f (revision loses in %.2f)", w, 1 - w))
        }
        if let h = humanAgreement {
            lines.append(String(format: "judge vs human on %d reviewed pairs: accuracy %.2f, Cohen's κ %.2f", h.pairs, h.accuracy, h.kappa))
            lines.append("  confusion (rows judge, columns human; candidate_0 / candidate_1 / tie): "
                         + h.confusion.map { $0.map(String.init).joined(separator: " ") }.joined(separator: " | "))
        }
        for (p, s) in perPrinciple.sorted(by: { $0.key < $1.key }) {
            lines.append(String(format: "  %@: %d judgements, mean p %.3f", p, s.pairs, s.meanProbability)
                + (s.revisionWinRate.map { String(format: ", revision wins %.2f", $0) } ?? ""))
        }
        return lines
    }
}

/// How often the judge agrees with human reviewers on the pairs they reviewed: each side's
/// verdict is candidate 0, candidate 1 or a tie (judge probabilities within 1e-4 of 0.5).
public struct HumanAgreement: Sendable, Equatable, Codable {
    public var pairs: Int
    public var accuracy: Double
    /// Cohen's κ over the three verdicts (Cohen 1960): (p_o − p_e) / (1 − p_e).
    public var kappa: Double
    /// confusion[judge][human], verdict order candidate_0, candidate_1, tie.
    public var confusion: [[Int]]

    /// Agreement of judge stage `stage` with the human verdicts in force on its pairs (on the
    /// pair itself, or for original_vs_revision pairs an accept/reject of the revision), in
    /// candidate terms; stale labels (about text that has changed) are not counted. The judge's
    /// verdict is a tie within 1e-4 of 0.5. Nil when no pair was reviewed.
    public static func load(stage: String, store: RunStore, revisionStage: String? = nil) throws -> HumanAgreement? {
        let resolved = try HumanOverride.resolve(store: store, judge: stage, revisionStage: revisionStage).byKey
        guard !resolved.isEmpty else { return nil }
        var pairs: [(judge: Int, human: Int)] = []
        for (row, label) in try JudgeStage.labels(stage: stage, store: store) {
            guard let human = resolved["\(row.record)\u{1F}\(row.sample)"]?.candidatePreference else { continue }
            pairs.append((RunComparison.verdict(label.probability), human))
        }
        return pairs.isEmpty ? nil : HumanAgreement(pairs: pairs)
    }

    init(pairs: [(judge: Int, human: Int)]) {
        // Verdict 1 (candidate 0), -1 (candidate 1), 0 (tie) → rows/columns 0, 1, 2.
        func slot(_ v: Int) -> Int { v == 1 ? 0 : (v == -1 ? 1 : 2) }
        var confusion = [[Int]](repeating: [0, 0, 0], count: 3)
        for p in pairs { confusion[slot(p.judge)][slot(p.human)] += 1 }
        let n = Double(pairs.count)
        let observed = Double((0..<3).map { confusion[$0][$0] }.reduce(0, +)) / n
        let expected = (0..<3).map { k in
            Double(confusion[k].reduce(0, +)) / n * Double((0..<3).map { confusion[$0][k] }.reduce(0, +)) / n
        }.reduce(0, +)
        self.pairs = pairs.count
        accuracy = observed
        kappa = expected < 1 ? (observed - expected) / (1 - expected) : (observed == 1 ? 1 : 0)
        self.confusion = confusion
    }
}
