import Foundation

/// Calibration fitted on a labelled pairs file: P = σ(a · z + b), z the judge's log-odds that
/// response a is better (temperature scaling when b = 0, Platt scaling otherwise; Guo et al. 2017,
/// Platt 1999). Stored in the run store and in every export's provenance.json.
public struct FittedCalibration: Sendable, Equatable, Codable {
    public var fit: CalibrationFit
    public var a: Double
    public var b: Double
    /// The labelled file it was fitted on, and how many pairs it had.
    public var file: String
    public var pairs: Int
    /// Mean log-loss on that file before and after.
    public var logLossBefore: Double
    public var logLossAfter: Double

    enum CodingKeys: String, CodingKey {
        case fit, a, b, file, pairs, logLossBefore = "log_loss_before", logLossAfter = "log_loss_after"
    }

    public init(fit: CalibrationFit, a: Double, b: Double, file: String, pairs: Int, logLossBefore: Double, logLossAfter: Double) {
        self.fit = fit
        self.a = a
        self.b = b
        self.file = file
        self.pairs = pairs
        self.logLossBefore = logLossBefore
        self.logLossAfter = logLossAfter
    }

    /// The calibrated probability for a raw one.
    public func apply(_ p: Double) -> Double { sigmoid(a * logit(p) + b) }

    /// Fits a (and b for Platt) by Newton's method on the mean log-loss of `outcomes` (1: a
    /// better, 0: b better) given raw probabilities, with a weak L2 penalty (1e-4) so separable
    /// data gives a finite slope.
    public static func fit(_ kind: CalibrationFit, probabilities: [Double], outcomes: [Double], file: String) -> FittedCalibration {
        let z = probabilities.map(logit)
        let n = Double(max(z.count, 1))
        let lambda = 1e-4
        func loss(_ a: Double, _ b: Double) -> Double {
            zip(z, outcomes).reduce(0) { acc, e in acc + logLoss(sigmoid(a * e.0 + b), e.1) } / n + lambda / 2 * (a * a + b * b)
        }
        var (a, b) = (1.0, 0.0)
        for _ in 0..<100 {
            // Gradient and Hessian of the mean log-loss in (a, b).
            var (ga, gb, haa, hab, hbb) = (lambda * a, lambda * b, lambda, 0.0, lambda)
            for (zi, yi) in zip(z, outcomes) {
                let p = sigmoid(a * zi + b), w = p * (1 - p)
                ga += (p - yi) * zi / n
                gb += (p - yi) / n
                haa += w * zi * zi / n
                hab += w * zi / n
                hbb += w / n
            }
            var (da, db) = (0.0, 0.0)
            if kind == .temperature {
                da = ga / haa
            } else {
                let det = haa * hbb - hab * hab
                guard det > 1e-18 else { break }
                da = (hbb * ga - hab * gb) / det
                db = (haa * gb - hab * ga) / det
            }
            // Step halving keeps each step a descent step.
            var step = 1.0
            let current = loss(a, b)
            while step > 1e-6 && loss(a - step * da, b - step * db) > current { step /= 2 }
            a -= step * da
            b -= step * db
            if abs(step * da) < 1e-10 && abs(step * db) < 1e-10 { break }
        }
        let before = zip(probabilities, outcomes).reduce(0) { $0 + logLoss($1.0, $1.1) } / n
        let after = zip(z, outcomes).reduce(0) { $0 + logLoss(sigmoid(a * $1.0 + b), $1.1) } / n
        return FittedCalibration(fit: kind, a: a, b: b, file: file, pairs: z.count, logLossBefore: before, logLossAfter: after)
    }
}

func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }

/// log(p / (1 − p)), with p kept inside [1e-9, 1 − 1e-9].
func logit(_ p: Double) -> Double {
    let q = min(max(p, 1e-9), 1 - 1e-9)
    return log(q / (1 - q))
}

func logLoss(_ p: Double, _ y: Double) -> Double {
    let q = min(max(p, 1e-12), 1 - 1e-12)
    return -(y * log(q) + (1 - y) * log(1 - q))
}

extension FittedCalibration {
    /// One line of JSON with sorted keys (the run store's meta value, provenance.json's entry).
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}
