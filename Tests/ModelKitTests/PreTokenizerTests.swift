import Testing
@testable import ModelKit

/// Pre-tokenizer splits per `tokenizer.ggml.pre`, written out by hand from the regexes'
/// definitions (Llama 3 groups digits by three, Qwen2 splits every digit, SmolLM splits
/// digits first and then applies GPT-2's expression).
@Suite struct PreTokenizerTests {
    func split(_ pre: String, _ text: String) throws -> [String] {
        try PreTokenizer(name: pre).split(Array(text.utf8)).map { String(decoding: $0, as: UTF8.self) }
    }

    @Test func llama3() throws {
        #expect(try split("llama-bpe", "Hello world 12345!!") == ["Hello", " world", " ", "123", "45", "!!"])
        #expect(try split("llama-bpe", "I'm here\n\n  ok") == ["I", "'m", " here", "\n\n", " ", " ok"])
    }

    @Test func qwen2() throws {
        #expect(try split("qwen2", "x=12;") == ["x", "=", "1", "2", ";"])
        #expect(try split("qwen2", "Don't STOP") == ["Don", "'t", " STOP"])
    }

    @Test func smollmAndDefault() throws {
        #expect(try split("smollm", "abc 2024 go") == ["abc", " ", "2", "0", "2", "4", " go"])
        #expect(try split("gpt2", "abc 2024 go") == ["abc", " 2024", " go"])
        // Unknown names get llama.cpp's default set (punctuation runs split off first).
        #expect(try split("something-new", "a+b") == ["a", "+", "b"])
    }
}
