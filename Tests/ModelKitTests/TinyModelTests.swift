import Foundation
import Testing
@testable import ModelKit
import TestSupport

/// Llama-3 specifics (interleaved RoPE with rope_freqs factors, GQA, Q/K/V biases, separate head)
/// and Gemma-3 specifics (sliding window, QK-norm, post-norms, tied head) on tiny random GGUF
/// files, against a float64 forward pass; plus cache and batching invariants.
@Suite struct TinyModelTests {
    static let tokens: [Int32] = [2, 7, 19, 3, 25, 11, 30, 5, 14, 9]

    func load(_ family: TinyModel.Family, seed: UInt64) throws -> (TinyModel, LanguageModel) {
        let tiny = TinyModel(family: family, seed: seed)
        let url = scratchURL("tiny-\(family)-\(UUID().uuidString).gguf")
        try tiny.write(to: url)
        return (tiny, try LanguageModel(path: url.path))
    }

    @Test(arguments: [TinyModel.Family.llama3, .gemma3])
    func logitsMatchFloat64Reference(family: TinyModel.Family) throws {
        let (tiny, model) = try load(family, seed: 7)
        #expect(model.config.architecture == (family == .llama3 ? "llama" : "gemma3"))
        if family == .llama3 {
            #expect(model.config.globalRoPE.frequencyFactors == [1, 2.5])  // 1 + 1.5·i for headDim 4
        } else {
            #expect(model.config.slidingWindow == 3 && model.config.slidingLayers == [true, true, true])
        }
        let expected = tiny.referenceLogits(Self.tokens)
        let hidden = model.transformer.forward([SequenceInput(cache: model.transformer.makeCache(), tokens: Self.tokens)])
        let logits = model.head.logits(hidden.data, rows: Self.tokens.count)
        var worst = 0.0
        for t in 0..<Self.tokens.count {
            for v in 0..<tiny.vocab { worst = max(worst, abs(Double(logits[t * tiny.vocab + v]) - expected[t][v])) }
        }
        #expect(worst < 1e-4, "\(family): worst difference \(worst)")
    }

    @Test(arguments: [TinyModel.Family.llama3, .gemma3])
    func tokenByTokenDecodeEqualsPrefill(family: TinyModel.Family) throws {
        let (_, model) = try load(family, seed: 8)
        let full = model.transformer.forward([SequenceInput(cache: model.transformer.makeCache(), tokens: Self.tokens)])
        let cache = model.transformer.makeCache(capacity: 2)  // forces the cache to grow
        for (t, token) in Self.tokens.enumerated() {
            let step = model.transformer.forward([SequenceInput(cache: cache, tokens: [token])])
            for j in 0..<model.config.hidden {
                #expect(abs(step[j] - full[t * model.config.hidden + j]) < 1e-4, "position \(t)")
            }
        }
        #expect(cache.length == Self.tokens.count)
    }

    @Test func batchOfDifferentLengthsEqualsSeparateRuns() throws {
        let (_, model) = try load(.gemma3, seed: 9)
        let a = Array(Self.tokens.prefix(7)), b = Array(Self.tokens.suffix(4))
        let separate = [a, b].map { model.transformer.forward([SequenceInput(cache: model.transformer.makeCache(), tokens: $0)]) }
        let batched = model.transformer.forward([a, b].map { SequenceInput(cache: model.transformer.makeCache(), tokens: $0) })
        let h = model.config.hidden
        for i in 0..<(a.count * h) { #expect(abs(batched[i] - separate[0][i]) < 1e-5) }
        for i in 0..<(b.count * h) { #expect(abs(batched[a.count * h + i] - separate[1][i]) < 1e-5) }
    }
}
