import Foundation

/// Distinct-n (Li et al. 2016): unique word n-grams over all n-grams in a set of texts (1 when no
/// text has n words). Words are whitespace-separated and lower-cased.
public func distinctN(_ texts: [String], n: Int) -> Double {
    var seen = Set<[Substring]>(), total = 0
    for text in texts {
        let words = text.lowercased().split(whereSeparator: \.isWhitespace)
        guard words.count >= n else { continue }
        for i in 0...(words.count - n) {
            seen.insert(Array(words[i..<(i + n)]))
            total += 1
        }
    }
    return total == 0 ? 1 : Double(seen.count) / Double(total)
}

/// A failure mode an RL monitor watches for.
public enum MonitorKind: String, Sendable, Codable, CaseIterable {
    /// Mean reward moved more than `rewardDriftSD` standard deviations from the start (reward hacking).
    case rewardDrift = "reward_drift"
    /// Reward standard deviation fell below `varianceFloor` × its start (collapse).
    case rewardCollapse = "reward_collapse"
    /// KL to the reference (per response, summed over tokens) above `maxKL`.
    case kl
    /// Mean response length above `lengthGrowth` × its start (length hacking).
    case lengthGrowth = "length_growth"
    /// Distinct-2 below `distinctDrop` × its start (mode collapse).
    case distinctDrop = "distinct_drop"
    /// Fraction of responses cut at the token limit (no end of sequence) above `maxTruncationRate`.
    case truncation = "truncation"
}

/// Thresholds of the monitors and which of them stop the run.
public struct MonitorConfig: Sendable, Equatable, Codable {
    public var rewardDriftSD = 2.0
    public var varianceFloor = 0.1
    public var maxKL = 10.0
    public var lengthGrowth = 1.5
    public var distinctDrop = 0.5
    public var maxTruncationRate = 0.5
    /// Monitors whose warning stops training (after a checkpoint); the others only warn.
    public var stopOn: [MonitorKind] = []

    public init() {}
}

/// One step's batch statistics the monitors read.
public struct MonitorSample: Sendable, Equatable {
    public var rewardMean: Double
    public var rewardStd: Double
    public var kl: Double
    public var length: Double
    public var distinct2: Double
    /// Fraction of the step's responses that hit the token limit.
    public var truncationRate: Double

    public init(rewardMean: Double, rewardStd: Double, kl: Double, length: Double, distinct2: Double, truncationRate: Double = 0) {
        self.rewardMean = rewardMean
        self.rewardStd = rewardStd
        self.kl = kl
        self.length = length
        self.distinct2 = distinct2
        self.truncationRate = truncationRate
    }
}

/// A monitor's warning, with the numbers that raised it.
public struct MonitorWarning: Sendable, Equatable {
    public var kind: MonitorKind
    public var step: Int
    public var value: Double
    public var threshold: Double
    public var message: String
    public var stops: Bool
}

/// Failure-mode monitors for RL training: each step's statistics against the first step's.
public struct TrainingMonitors: Sendable {
    public let config: MonitorConfig
    /// The first step's statistics (set by the first `check`, or restored on resume).
    public var start: MonitorSample?

    public init(config: MonitorConfig, start: MonitorSample? = nil) {
        self.config = config
        self.start = start
    }

    /// Warnings for one step (the first step only sets the start, except for the KL bound).
    public mutating func check(_ s: MonitorSample, step: Int) -> [MonitorWarning] {
        var out: [MonitorWarning] = []
        func warn(_ kind: MonitorKind, _ value: Double, _ threshold: Double, _ message: String) {
            out.append(MonitorWarning(kind: kind, step: step, value: value, threshold: threshold, message: message,
                                      stops: config.stopOn.contains(kind)))
        }
        if s.kl > config.maxKL {
            warn(.kl, s.kl, config.maxKL, String(format: "KL to the reference %.3f nats per response is above the bound %.3f", s.kl, config.maxKL))
        }
        // An absolute bound, like KL: responses that never end are a failure from the first step.
        if s.truncationRate > config.maxTruncationRate {
            warn(.truncation, s.truncationRate, config.maxTruncationRate,
                 String(format: "%.0f%% of responses hit the token limit without ending (bound %.0f%%); see missing_eos_penalty",
                        100 * s.truncationRate, 100 * config.maxTruncationRate))
        }
        guard let start else { self.start = s; return out }
        let drift = abs(s.rewardMean - start.rewardMean)
        if start.rewardStd > 0, drift > config.rewardDriftSD * start.rewardStd {
            warn(.rewardDrift, s.rewardMean, config.rewardDriftSD * start.rewardStd,
                 String(format: "mean reward %.3f moved %.3f from the start %.3f, more than %.1f start standard deviations (%.3f)",
                        s.rewardMean, drift, start.rewardMean, config.rewardDriftSD, start.rewardStd))
        }
        if start.rewardStd > 0, s.rewardStd < config.varianceFloor * start.rewardStd {
            warn(.rewardCollapse, s.rewardStd, config.varianceFloor * start.rewardStd,
                 String(format: "reward standard deviation %.4f fell below %.0f%% of the start's %.4f", s.rewardStd,
                        100 * config.varianceFloor, start.rewardStd))
        }
        if start.length > 0, s.length > config.lengthGrowth * start.length {
            warn(.lengthGrowth, s.length, config.lengthGrowth * start.length,
                 String(format: "mean response length %.1f tokens is above %.2f× the start's %.1f", s.length, config.lengthGrowth, start.length))
        }
        if s.distinct2 < config.distinctDrop * start.distinct2 {
            warn(.distinctDrop, s.distinct2, config.distinctDrop * start.distinct2,
                 String(format: "distinct-2 %.3f fell below %.0f%% of the start's %.3f (mode collapse)", s.distinct2,
                        100 * config.distinctDrop, start.distinct2))
        }
        return out
    }
}
