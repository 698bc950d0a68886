import Foundation
import ModelKit
import Testing
import PipelineTestSupport
import TestSupport

enum DefaultModel {
    static var cached: Bool { modelAvailable("gemma-3-270m") }
}

/// The engine subcommands through the real binary, on the cached default model.
@Suite(.serialized, .enabled(if: DefaultModel.cached, "needs gemma-3-270m in the cache (scripts/test.sh fetches it)"))
struct EngineCLITests {

    func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func tokenizeMatchesReference() throws {
        let r = try CLI.run(["tokenize", "--model", "gemma-3-270m", "--text", "Hello world", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try json(r.stdout)["ids"] as? [Int] == [2, 9259, 1902])
    }

    @Test func generatePrintsTheReferenceContinuation() throws {
        let r = try CLI.run(["generate", "--model", "gemma-3-270m", "--prompt", "The capital of France is", "--max-tokens", "12"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix(" the capital of the country of France."))
        #expect(r.stderr.contains("finish: length"))
    }

    @Test func logitsHaveTheReferenceShape() throws {
        let r = try CLI.run(["logits", "--model", "gemma-3-270m", "--text", "Hello world", "--top-k", "3", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let object = try json(r.stdout)
        #expect(object["ids"] as? [Int] == [2, 9259, 1902])
        let positions = try #require(object["positions"] as? [[String: Any]])
        #expect(positions.count == 3)
        let top = try #require(positions[0]["top"] as? [[Double]])
        #expect(top.count == 3 && Int(top[0][0]) == 184)  // llama.cpp's argmax after BOS
        #expect(abs(top[0][1] - 14.5224) < 2e-2)
        #expect(positions[0]["logsumexp"] is Double)
    }

    @Test func scoreReportsLogProbabilities() throws {
        let r = try CLI.run(["score", "--model", "gemma-3-270m", "--prompt", "The capital of France is",
                             "--continuation", " Paris", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let object = try json(r.stdout)
        let logprobs = try #require(object["token_logprobs"] as? [Double])
        #expect(!logprobs.isEmpty && logprobs.allSatisfy { $0 < 0 })
        #expect(abs((object["sum_logprob"] as? Double ?? 0) - logprobs.reduce(0, +)) < 1e-4)
    }

    @Test func benchPrintsItsKeys() throws {
        let r = try CLI.run(["bench", "--model", "gemma-3-270m", "--batch", "2", "--prompt-tokens", "16", "--new-tokens", "4", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let object = try json(r.stdout)
        for key in ["batch", "prefill_tokens_per_s", "decode_tokens_per_s", "peak_rss_bytes", "scoring_tokens_per_s"] {
            #expect(object[key] != nil, "missing \(key)")
        }
        #expect(object["batch"] as? Int == 2)
    }

    @Test func unknownModelIsAnErrorNotACrash() throws {
        let r = try CLI.run(["generate", "--model", "gemma-9", "--prompt", "x"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("`gemma-9` is neither a catalog model nor a .gguf file"))
        let broken = scratchURL("broken-\(UUID().uuidString).gguf")
        try Data("GGUF not really".utf8).write(to: broken)
        let r2 = try CLI.run(["model", "info", "--model", broken.path])
        #expect(r2.status == 1)
        #expect(r2.stderr.contains("byte offset"))
    }
}
