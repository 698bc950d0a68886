import Foundation

/// How well a judge's labels agree with gold labels: accuracy, Cohen's κ, Brier score, expected
/// calibration error, position and length bias, per category. A label of exactly 0.5 counts as
/// half right (and half a vote for each side in κ).
public struct GoldMetrics: Sendable, Equatable, Codable {
    public struct Category: Sendable, Equatable, Codable {
        public var accuracy: Double
        public var n: Int
    }

    /// One judged pair: P(a better), the gold side, and what the length and position figures need.
    public struct Item: Sendable {
        public var probability: Double
        public var betterIsA: Bool
        public var category: String?
        /// Words in the better and the worse response.
        public var betterWords: Int
        public var worseWords: Int
        /// Per principle and order, P(a better) (order 0 shows a first); pairwise labels only.
        public var orders: [[Double]]
        public var positional: Bool

        public init(probability: Double, betterIsA: Bool, category: String?, betterWords: Int, worseWords: Int,
                    orders: [[Double]], positional: Bool) {
            self.probability = probability
            self.betterIsA = betterIsA
            self.category = category
            self.betterWords = betterWords
            self.worseWords = worseWords
            self.orders = orders
            self.positional = positional
        }
    }

    public var pairs: Int
    public var accuracy: Double
    public var kappa: Double
    public var brier: Double
    /// 10 equal-width bins over [0, 1] of the probability given to the predicted side.
    public var ece: Double
    /// Fraction of (principle, model) judgements whose two orders prefer the same response; nil
    /// when one order was asked or the method has no positions.
    public var orderAgreement: Double?
    /// Mean probability given to whichever response was shown first; nil without positions.
    public var firstPositionRate: Double?
    /// Accuracy on the pairs whose better response is the shorter (longer) one, by words; nil when none.
    public var accuracyBetterShorter: Double?
    public var accuracyBetterLonger: Double?
    public var perCategory: [String: Category]

    enum CodingKeys: String, CodingKey {
        case pairs, accuracy, kappa, brier, ece, orderAgreement = "order_agreement", firstPositionRate = "first_position_rate"
        case accuracyBetterShorter = "accuracy_better_shorter", accuracyBetterLonger = "accuracy_better_longer"
        case perCategory = "per_category"
    }

    /// Every key is written, `null` where a figure does not apply.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(pairs, forKey: .pairs)
        try c.encode(accuracy, forKey: .accuracy)
        try c.encode(kappa, forKey: .kappa)
        try c.encode(brier, forKey: .brier)
        try c.encode(ece, forKey: .ece)
        try c.encode(orderAgreement, forKey: .orderAgreement)
        try c.encode(firstPositionRate, forKey: .firstPositionRate)
        try c.encode(accuracyBetterShorter, forKey: .accuracyBetterShorter)
        try c.encode(accuracyBetterLonger, forKey: .accuracyBetterLonger)
        try c.encode(perCategory, forKey: .perCategory)
    }

    /// 1 when the label prefers the gold side, 0.5 for an exact tie, else 0.
    static func correctness(_ item: Item) -> Double {
        if item.probability == 0.5 { return 0.5 }
        return (item.probability > 0.5) == item.betterIsA ? 1 : 0
    }

    public init(items: [Item]) {
        func mean(_ xs: [Double]) -> Double { xs.isEmpty ? 0 : xs.reduce(0, +) / Double(xs.count) }
        let n = Double(max(items.count, 1))
        pairs = items.count
        let correct = items.map(Self.correctness)
        accuracy = mean(correct)
        // Cohen's κ = (p_o − p_e) / (1 − p_e), p_e from the judge's and gold's marginal rates of "a".
        let predictedA = items.reduce(0.0) { $0 + ($1.probability > 0.5 ? 1 : $1.probability == 0.5 ? 0.5 : 0) } / n
        let goldA = Double(items.filter(\.betterIsA).count) / n
        let expected = predictedA * goldA + (1 - predictedA) * (1 - goldA)
        kappa = expected < 1 ? (accuracy - expected) / (1 - expected) : 0
        brier = mean(items.map { pow($0.probability - ($0.betterIsA ? 1 : 0), 2) })
        // ECE: |accuracy − mean confidence| per bin, weighted by the bin's share of pairs.
        var bins = [[(confidence: Double, correct: Double)]](repeating: [], count: 10)
        for (item, c) in zip(items, correct) {
            let confidence = max(item.probability, 1 - item.probability)
            bins[min(Int(confidence * 10), 9)].append((confidence, c))
        }
        ece = bins.reduce(0) { acc, bin in
            bin.isEmpty ? acc : acc + Double(bin.count) / n * abs(mean(bin.map(\.correct)) - mean(bin.map(\.confidence)))
        }
        (orderAgreement, firstPositionRate) = positionBias(items.filter(\.positional).flatMap(\.orders))
        let shorter = zip(items, correct).filter { $0.0.betterWords < $0.0.worseWords }.map(\.1)
        let longer = zip(items, correct).filter { $0.0.betterWords > $0.0.worseWords }.map(\.1)
        accuracyBetterShorter = shorter.isEmpty ? nil : mean(shorter)
        accuracyBetterLonger = longer.isEmpty ? nil : mean(longer)
        var categories: [String: [Double]] = [:]
        for (item, c) in zip(items, correct) { if let cat = item.category { categories[cat, default: []].append(c) } }
        perCategory = categories.mapValues { Category(accuracy: mean($0), n: $0.count) }
    }

    /// Plain-text lines for the terminal.
    public var text: [String] {
        var lines = [String(format: "pairs: %d   accuracy: %.3f   kappa: %.3f   brier: %.3f   ece: %.3f", pairs, accuracy, kappa, brier, ece)]
        if let a = orderAgreement { lines.append(String(format: "order agreement: %.2f", a)) }
        if let f = firstPositionRate { lines.append(String(format: "first-position probability: %.3f", f)) }
        if orderAgreement == nil && firstPositionRate == nil { lines.append("order agreement / first position: n/a (no positions)") }
        lines.append("accuracy when the better response is shorter / longer: "
                     + [accuracyBetterShorter, accuracyBetterLonger].map { $0.map { String(format: "%.3f", $0) } ?? "n/a" }.joined(separator: " / "))
        for (name, c) in perCategory.sorted(by: { $0.key < $1.key }) {
            lines.append(String(format: "  %@: %.3f (n=%d)", name, c.accuracy, c.n))
        }
        return lines
    }
}

/// Position bias of judgements shown in both orders: `agreement`, the share whose two orders
/// prefer the same response, and `first`, how often the response shown first is preferred (nil
/// when there are none). Each element is [P(c0 better) with c0 shown as (A), the same with c0 as (B)].
func positionBias(_ judgements: [[Double]]) -> (agreement: Double?, first: Double?) {
    var agreements: [Double] = [], first: [Double] = []
    for orders in judgements {
        first.append(orders[0])
        if orders.count > 1 {
            first.append(1 - orders[1])
            agreements.append((orders[0] - 0.5) * (orders[1] - 0.5) > 0 ? 1 : 0)
        }
    }
    func mean(_ xs: [Double]) -> Double? { xs.isEmpty ? nil : xs.reduce(0, +) / Double(xs.count) }
    return (mean(agreements), mean(first))
}
