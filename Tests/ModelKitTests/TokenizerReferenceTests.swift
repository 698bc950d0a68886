import Foundation
import Testing
@testable import ModelKit

/// Token ids equal llama.cpp's for every reference text, with and without BOS and special-token
/// parsing; decoding inverts encoding exactly.
@Suite struct TokenizerReferenceTests {
    static let models = [TestModels.gemmaName, TestModels.qwenName]

    @Test(.enabled(if: TestModels.available(TestModels.gemmaName) && TestModels.available(TestModels.qwenName),
                   "gemma-3-270m or qwen2.5-coder-0.5b-instruct is not in the model cache (`precept model pull gemma-3-270m qwen2.5-coder-0.5b-instruct` fetches both; scripts/test.sh runs it)"),
          arguments: models)
    func idsMatchLlamaCpp(model: String) throws {
        let tokenizer = try TestModels.tokenizer(model)
        let cases = try TestModels.reference(model, "tokens.json", as: [TokenReference].self)
        #expect(cases.count > 30)
        for c in cases {
            #expect(tokenizer.encode(c.text, addBOS: false, parseSpecial: false) == c.ids, "ids: \(c.text.debugDescription)")
            #expect(tokenizer.encode(c.text, addBOS: nil, parseSpecial: false) == c.ids_with_bos, "bos: \(c.text.debugDescription)")
            #expect(tokenizer.encode(c.text, addBOS: false, parseSpecial: true) == c.ids_special, "special: \(c.text.debugDescription)")
            #expect(tokenizer.decode(c.ids) == c.text, "decode: \(c.text.debugDescription)")
            #expect(tokenizer.decode(c.ids_special) == c.text, "decode special: \(c.text.debugDescription)")
        }
    }

    /// Streaming decode of a character split across byte-fallback or byte-level tokens.
    @Test(.enabled(if: TestModels.available(TestModels.gemmaName) && TestModels.available(TestModels.qwenName),
                   "gemma-3-270m or qwen2.5-coder-0.5b-instruct is not in the model cache (`precept model pull gemma-3-270m qwen2.5-coder-0.5b-instruct` fetches both; scripts/test.sh runs it)"),
          arguments: models)
    func streamingHoldsPartialCharacters(model: String) throws {
        let tokenizer = try TestModels.tokenizer(model)
        let text = "Emoji 🤖🧠 and 👩‍👩‍👧 — 日本語 ok"
        let ids = tokenizer.encode(text, addBOS: false, parseSpecial: false)
        var decoder = StreamingDecoder(tokenizer: tokenizer)
        var streamed = ""
        for id in ids {
            let chunk = decoder.append(id)
            #expect(!chunk.contains("\u{FFFD}"), "partial character leaked at token \(id)")
            streamed += chunk
        }
        streamed += decoder.flush()
        #expect(streamed == text)
    }
}
