import Foundation
import Testing
@testable import ModelKit

/// Generation and scoring agree with the forward pass and with themselves across batching,
/// prefixes and seeds (on the real default model, 8-bit activations: bit for bit).
@Suite(.serialized, .enabled(if: TestModels.available(TestModels.gemmaName), "gemma-3-270m is not in the model cache (`precept model pull gemma-3-270m` fetches it; scripts/test.sh runs it)"))
struct GenerationTests {
    var model: LanguageModel { get throws { try LoadedModels.model(TestModels.gemmaName, int8: true) } }

    @Test func scoringEqualsForwardLogSoftmax() throws {
        let model = try model
        let prompt = model.tokenizer.encode("The capital of France is")
        let continuation = model.tokenizer.encode(" Paris, a city", addBOS: false, parseSpecial: false)
        let score = Scorer(model: model).score([ScoringRequest(prompt: prompt, continuation: continuation)], topK: 5)[0]
        let all = prompt + continuation
        // Scoring keeps Float32 activations (Scorer.int8Activations).
        let hidden = model.transformer.forward([SequenceInput(cache: model.transformer.makeCache(), tokens: all)], int8: false)
        let logits = model.head.logits(hidden.data, rows: all.count, int8: false)
        let vocab = model.head.vocabSize
        for (j, token) in continuation.enumerated() {
            let row = prompt.count - 1 + j
            var maxLogit = -Float.infinity
            for i in 0..<vocab { maxLogit = max(maxLogit, logits[row * vocab + i]) }
            var sum: Double = 0
            for i in 0..<vocab { sum += exp(Double(logits[row * vocab + i] - maxLogit)) }
            let expected = Double(logits[row * vocab + Int(token)] - maxLogit) - log(sum)
            #expect(abs(Double(score.tokenLogProbs[j]) - expected) < 1e-3)
            #expect(score.positions[j].top.count == 5)
            #expect(score.positions[j].top[0].logit == score.positions[j].top.map(\.logit).max())
        }
        #expect(score.sum < 0)
    }

    @Test func batchedAndPrefixedScoringAgreeWithSingle() throws {
        let model = try model
        let shared = model.tokenizer.encode("Human: Is it safe to mix bleach and ammonia?\nAssistant:")
        let a = model.tokenizer.encode(" No. It releases toxic gas.", addBOS: false, parseSpecial: false)
        let b = model.tokenizer.encode(" Sure, mix them in a bucket.", addBOS: false, parseSpecial: false)
        var prefix = model.transformer.makeCache()
        for int8 in [true, false] {
            let scorer = Scorer(model: model, int8Activations: int8)
            let single = [a, b].map { scorer.score([ScoringRequest(prompt: shared, continuation: $0)])[0].sum }
            let batched = scorer.score([a, b].map { ScoringRequest(prompt: shared, continuation: $0) }).map(\.sum)
            prefix = model.transformer.makeCache()
            _ = model.transformer.forward([SequenceInput(cache: prefix, tokens: shared)], int8: int8)
            let prefixed = scorer.score([a, b].map { ScoringRequest(prompt: shared, continuation: $0, prefix: prefix) }).map(\.sum)
            if int8 {
                // Every row's products and attention are computed in one fixed order
                // (WeightMatrix.apply, pq_attention), so batching and a cached prefix give the same bits.
                #expect(batched == single)
                #expect(prefixed == single)
            } else {
                // Float32 activations: the kernels below and above the GEMM threshold sum in
                // different orders.
                for i in 0..<2 {
                    #expect(abs(batched[i] - single[i]) < 1e-3)
                    #expect(abs(prefixed[i] - single[i]) < 1e-3)
                }
            }
        }
        #expect(prefix.length == shared.count, "the prefix cache is copied, not changed")
    }

    @Test func seededSamplingIsReproducibleAndBatchIndependent() throws {
        let model = try model
        let generator = Generator(model: model)
        let prompt = model.tokenizer.encode("Once upon a time")
        let p = SamplingParameters(temperature: 0.9, topK: 40, topP: 0.95, seed: 42, maxTokens: 12)
        let first = generator.generate([GenerationRequest(prompt: prompt, parameters: p)])[0]
        let again = generator.generate([GenerationRequest(prompt: prompt, parameters: p)])[0]
        #expect(first == again)
        // The same request inside a batch with another prompt gives the same tokens.
        let other = GenerationRequest(prompt: model.tokenizer.encode("def main():"), parameters: p)
        let inBatch = generator.generate([other, GenerationRequest(prompt: prompt, parameters: p)])[1]
        #expect(inBatch.tokens == first.tokens)
        var q = p
        q.seed = 43
        #expect(generator.generate([GenerationRequest(prompt: prompt, parameters: q)])[0].tokens != first.tokens)
    }

    @Test func stopStringsAndLengthLimits() throws {
        let model = try model
        let generator = Generator(model: model)
        let prompt = model.tokenizer.encode("Human: Name three colours.\nAssistant:")
        let free = generator.generate([GenerationRequest(prompt: prompt, parameters: SamplingParameters(maxTokens: 40))])[0]
        // Stop at the first word the free run produced after its first character.
        let words = free.text.split(separator: " ")
        let stop = String(try #require(words.dropFirst().first))
        let stopped = generator.generate([GenerationRequest(prompt: prompt, parameters: SamplingParameters(maxTokens: 40, stop: [stop]))])[0]
        #expect(stopped.finishReason == .stopString)
        #expect(!stopped.text.contains(stop))
        #expect(free.text.hasPrefix(stopped.text))
        let short = generator.generate([GenerationRequest(prompt: prompt, parameters: SamplingParameters(maxTokens: 3))])[0]
        #expect(short.tokens.count == 3 && short.finishReason == .length)
    }

    /// Batched decode over long contexts takes the split attention path (sequence × head pairs
    /// across the cores); each sequence's hidden state equals its decode step alone (one caller).
    @Test func batchedDecodeAttentionMatchesSingleSequences() throws {
        let model = try model
        let t = model.transformer
        var prompts: [[Int32]] = []
        for s in 0..<8 {
            var prompt: [Int32] = []
            for i in 0..<160 { prompt.append(Int32(1000 + (i * 31 + s * 977) % 50_000)) }
            prompts.append(prompt)
        }
        func prefilled() -> [KVCache] {
            prompts.map { p in
                let cache = t.makeCache(capacity: 170)
                _ = t.forward([SequenceInput(cache: cache, tokens: p)])
                return cache
            }
        }
        let next: [Int32] = [2000, 2001, 2002, 2003, 2004, 2005, 2006, 2007]
        // Σ context × heads × headDim = 8 · 161 · 4 · 256 ≥ 2^16: attention split across the cores.
        let batched = t.forward(zip(prefilled(), next).map { SequenceInput(cache: $0, tokens: [$1]) })
        let caches = prefilled()
        var worst: Float = 0, largest: Float = 0
        for s in 0..<8 {
            let alone = t.forward([SequenceInput(cache: caches[s], tokens: [next[s]])])
            for j in 0..<model.config.hidden {
                worst = max(worst, abs(alone.row(0)[j] - batched.row(s)[j]))
                largest = max(largest, abs(alone.row(0)[j]))
            }
        }
        #expect(worst == 0, "batched vs single decode differ by \(worst) (largest \(largest))")
    }

    /// A prompt prefilled in one pass, in two chunks (a cached prefix, then the rest) and one token
    /// at a time gives the same hidden states bit for bit.
    @Test func chunkedPrefillAndDecodeGiveTheSameBits() throws {
        let model = try model
        let t = model.transformer
        let ids = model.tokenizer.encode("Human: Name three primary colours.\nAssistant: Red, yellow and blue.")
        let hidden = model.config.hidden
        let whole = t.forward([SequenceInput(cache: t.makeCache(), tokens: ids)])
        let cache = t.makeCache()
        _ = t.forward([SequenceInput(cache: cache, tokens: Array(ids[..<7]))])
        let rest = t.forward([SequenceInput(cache: cache, tokens: Array(ids[7...]))])
        for r in 7..<ids.count {
            #expect(Array(UnsafeBufferPointer(start: whole.row(r), count: hidden)) == Array(UnsafeBufferPointer(start: rest.row(r - 7), count: hidden)),
                    "position \(r): one pass vs after a cached prefix")
        }
        let stepwise = t.makeCache()
        for (r, id) in ids.enumerated() {
            let one = t.forward([SequenceInput(cache: stepwise, tokens: [id])])
            #expect(Array(UnsafeBufferPointer(start: whole.row(r), count: hidden)) == Array(UnsafeBufferPointer(start: one.row(0), count: hidden)),
                    "position \(r): one pass vs token by token")
        }
    }
}
