import Testing
@testable import ModelKit

/// The sampler's filters on small hand-made distributions.
@Suite struct SamplerTests {
    // logits → probabilities at T = 1: [0.6439, 0.2369, 0.0871, 0.0321] (softmax of 3, 2, 1, 0).
    let logits: [Float] = [3, 2, 1, 0]

    func draws(_ p: SamplingParameters, _ n: Int = 400) -> [Int32: Int] {
        var counts: [Int32: Int] = [:]
        for seed in 0..<UInt64(n) {
            var q = p
            q.seed = seed
            var sampler = Sampler(q)
            counts[sampler.sample(logits, count: logits.count), default: 0] += 1
        }
        return counts
    }

    @Test func greedyAndDegenerateFilters() {
        #expect(draws(SamplingParameters(temperature: 0)) == [0: 400])
        #expect(draws(SamplingParameters(temperature: 1, topK: 1)) == [0: 400])
        #expect(draws(SamplingParameters(temperature: 1, topP: 0.5)) == [0: 400])     // 0.644 ≥ 0.5 alone
        #expect(draws(SamplingParameters(temperature: 1, minP: 0.5)) == [0: 400])     // 0.368 < 0.5 of the top
    }

    @Test func filtersKeepTheRightSets() {
        #expect(Set(draws(SamplingParameters(temperature: 1, topK: 2)).keys) == [0, 1])
        #expect(Set(draws(SamplingParameters(temperature: 1, topP: 0.85)).keys) == [0, 1])   // 0.644 + 0.237 ≥ 0.85
        #expect(Set(draws(SamplingParameters(temperature: 1, minP: 0.1)).keys) == [0, 1, 2]) // e^-2 = 0.135 ≥ 0.1
        #expect(Set(draws(SamplingParameters(temperature: 1)).keys) == [0, 1, 2, 3])
    }

    @Test func frequenciesFollowTheDistribution() {
        let counts = draws(SamplingParameters(temperature: 1), 4000)
        #expect(abs(Double(counts[0] ?? 0) / 4000 - 0.6439) < 0.03)
        #expect(abs(Double(counts[1] ?? 0) / 4000 - 0.2369) < 0.03)
        // Higher temperature flattens: token 3 becomes more frequent.
        let hot = draws(SamplingParameters(temperature: 3), 4000)
        #expect((hot[3] ?? 0) > (counts[3] ?? 0) * 2)
    }
}
