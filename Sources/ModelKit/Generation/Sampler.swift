import CQuant
import Foundation

/// Sampling settings for one sequence (one struct, as in mlx-swift-lm's GenerateParameters).
public struct SamplingParameters: Sendable, Hashable, Codable {
    /// 0 means greedy (argmax).
    public var temperature: Float = 0
    /// Keep the k most likely tokens (0 = off).
    public var topK: Int = 0
    /// Keep the smallest set of tokens whose probability reaches p (1 = off).
    public var topP: Float = 1
    /// Drop tokens less likely than minP × the most likely one (0 = off).
    public var minP: Float = 0
    public var seed: UInt64 = 0
    public var maxTokens: Int = 128
    /// Generation stops before the first occurrence of any of these strings.
    public var stop: [String] = []
    /// Keep going through end-of-sequence tokens (benchmarks that need exactly `maxTokens`).
    public var ignoreEOS = false

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, minP: Float = 0, seed: UInt64 = 0,
                maxTokens: Int = 128, stop: [String] = [], ignoreEOS: Bool = false) {
        self.ignoreEOS = ignoreEOS
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.seed = seed
        self.maxTokens = maxTokens
        self.stop = stop
    }
}

/// xoshiro256** seeded through SplitMix64: fast, and the same stream on every machine.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }

    /// Uniform in [0, 1).
    public mutating func nextUnit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

/// Picks the next token from a row of logits: temperature, then top-k, top-p and min-p
/// filtering (Hugging Face's order), then a draw from what is left.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var rng: SeededGenerator

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        rng = SeededGenerator(seed: parameters.seed)
    }

    public mutating func sample(_ logits: UnsafePointer<Float>, count: Int) -> Int32 {
        let p = parameters
        var best = 0
        for i in 1..<count where logits[i] > logits[best] { best = i }
        if p.temperature <= 0 { return Int32(best) }

        // Probabilities at temperature T (unnormalised: exp((l − max) / T), vectorised).
        var probs = [Float](repeating: 0, count: count)
        let total = probs.withUnsafeMutableBufferPointer {
            pq_temperature_weights(logits, Int64(count), logits[best], p.temperature, $0.baseAddress!)
        }
        // The most likely token has weight 1; min-p keeps weights ≥ minP.
        var threshold: Float = p.minP > 0 ? p.minP : 0
        if p.topK > 0 && p.topK < count {
            threshold = max(threshold, kthLargest(probs, p.topK))
        }
        if p.topP < 1 {
            threshold = max(threshold, nucleusThreshold(probs, total: total, p: Double(p.topP)))
        }
        var kept: Double = 0
        if threshold > 0 {
            for i in 0..<count where probs[i] >= threshold { kept += Double(probs[i]) }
        } else {
            kept = total  // every weight is ≥ 0
        }
        var target = rng.nextUnit() * kept
        for i in 0..<count where probs[i] >= threshold {
            target -= Double(probs[i])
            if target < 0 { return Int32(i) }
        }
        return Int32(best)
    }

    /// The k-th largest weight (ties keep every token at the threshold).
    private func kthLargest(_ probs: [Float], _ k: Int) -> Float {
        var heap = BinaryHeap<Float>(<)
        var size = 0
        for v in probs {
            if size < k { heap.push(v); size += 1 } else if let top = heap.peek, v > top { _ = heap.pop(); heap.push(v) }
        }
        return heap.peek ?? 0
    }

    /// The largest weight t such that the weights ≥ t hold at least p of the mass (bisection on t).
    private func nucleusThreshold(_ probs: [Float], total: Double, p: Double) -> Float {
        var low: Float = 0, high: Float = 1  // mass(≥ 0) = 1 ≥ p; mass(≥ 1) may be < p
        func mass(_ t: Float) -> Double {
            var s: Double = 0
            for v in probs where v >= t { s += Double(v) }
            return s / total
        }
        if mass(high) >= p { return high }
        for _ in 0..<40 {
            let mid = (low + high) / 2
            if mass(mid) >= p { low = mid } else { high = mid }
        }
        return low
    }
}
