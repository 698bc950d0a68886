import Foundation
import ModelKit
import PipelineTestSupport
import Testing
@testable import PipelineKit

/// `scoring: bfloat16` through the engine on the default judge model: a call's scores do not depend
/// on what it is batched with (every pass takes the bfloat16 products, and prefixes are kept per
/// arithmetic), they differ from the Float32 scores, and only slightly.
@Suite(.enabled(if: JudgeModel.cached && ScoringPrecision.bfloat16Supported,
                "needs qwen2.5-coder-0.5b-instruct in the cache and a CPU with AVX512-BF16"))
struct ScoringPrecisionTests {
    @Test func bfloat16ScoresAreBatchInvariantAndNearFloat32() throws {
        let store = ModelStore()
        let url = store.path(for: try #require(ModelCatalog.entry(named: "qwen2.5-coder-0.5b-instruct")))
        let model = try LanguageModel(path: url.path)
        let stem = String(repeating: "A careful assistant answers questions honestly and declines harmful requests. ", count: 4)
        let calls = ["Is the sky green?", "Can I mix bleach and ammonia?", "What is 12 times 12?"].map {
            ScoringCall(prompt: stem + "Question: " + $0 + "\nIs the answer yes? Answer:", continuations: [" Yes", " No"])
        }
        let bf16 = LocalBackend(model: model, fingerprint: "q", promptStyle: .completion, scoring: .bfloat16)
        let batched = try bf16.score(calls)
        let alone = try LocalBackend(model: model, fingerprint: "q", promptStyle: .completion, scoring: .bfloat16).score([calls[1]])
        #expect(alone[0] == batched[1], "alone \(alone[0]) vs batched \(batched[1])")
        #expect(try bf16.score(calls) == batched, "again, from the kept prefix")
        // Generation through the same backend keeps its own (8-bit) prefixes. Its 8-bit products
        // repack the Q8_0 and Q5_0 matrices, and the LM head's Float32 scored rows then sum in
        // another order (about 1e-6; the bfloat16 products read the same values from the repacked
        // copies, BFloat16KernelTests).
        _ = try bf16.generate([GenerationCall(prompt: .text(calls[0].prompt), parameters: SamplingParameters(maxTokens: 2))])
        let after = try bf16.score(calls)
        var moved = 0.0
        for (a, b) in zip(after.joined(), batched.joined()) { moved = max(moved, abs(a - b)) }
        #expect(moved < 1e-4, "scores moved by \(moved) after a generation")
        let f32 = try LocalBackend(model: model, fingerprint: "q", promptStyle: .completion).score(calls)
        var worst = 0.0
        for (a, b) in zip(batched.joined(), f32.joined()) { worst = max(worst, abs(a - b)) }
        print("bfloat16 against Float32 scores: worst log-probability difference \(worst)")
        #expect(worst > 0 && worst < 0.5, "worst difference \(worst)")
    }
}
