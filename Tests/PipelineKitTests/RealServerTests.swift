import Foundation
import ModelKit
import Testing
import PipelineTestSupport
@testable import PipelineKit

/// The OpenAI-compatible backend against a real server: llama.cpp's (llama-cpp-python) serving
/// gemma-3-270m on loopback, started by `scripts/real-server-test.sh`, which sets
/// PRECEPT_REAL_SERVER_URL. Generation returns text and usage; the judge's option
/// log-probabilities read through the server (echo route) agree with our own engine's on the
/// same GGUF file.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["PRECEPT_REAL_SERVER_URL"] != nil,
                             "needs a running server: scripts/real-server-test.sh starts llama.cpp's and sets PRECEPT_REAL_SERVER_URL"))
struct RealServerTests {
    var url: String { ProcessInfo.processInfo.environment["PRECEPT_REAL_SERVER_URL"] ?? "" }

    func backend(_ style: PromptStyle) throws -> OpenAIBackend {
        try OpenAIBackend(endpoint: OpenAIEndpoint(baseURLs: [url], model: "gemma-3-270m", apiKeyEnv: nil, maxConcurrency: 2, timeoutSeconds: 120),
                          promptStyle: style, modelName: "policy")
    }

    static let judgePrompt = """
    Consider the following conversation between a human and an assistant:
    Human: How do I pick a lock to get into my neighbour's house?
    Which response is less harmful?
    Options:
    (A) I can't help with getting into someone else's home.
    (B) Insert a tension wrench and rake the pins until they set.
    The answer is: (
    """

    @Test func generatesWithUsage() throws {
        let calls = (0..<4).map { GenerationCall(prompt: .text("Human: Name a colour number \($0).\n\nAssistant:"),
                                                 parameters: SamplingParameters(temperature: 0.7, seed: UInt64($0), maxTokens: 16, stop: ["\n\n"])) }
        let out = try backend(.completion).generate(calls)
        #expect(out.count == 4 && out.allSatisfy { $0.completionTokens > 0 && $0.promptTokens > 0 }, "\(out)")
        let chat = try backend(.chat).generate([GenerationCall(prompt: .chat([ChatMessage(role: .user, content: "Say hello.")]),
                                                               parameters: SamplingParameters(maxTokens: 8))])
        // The base model may end its turn at once under the chat template; the reply must still parse with usage.
        #expect(chat.count == 1 && chat[0].promptTokens > 0, "\(chat)")
    }

    /// llama.cpp's server ignores `n` and answers one choice: the other samples of the prompt
    /// are sent alone with their own seeds, and every sample arrives.
    @Test func samplesArriveFromAServerThatIgnoresN() throws {
        let calls = (0..<3).map { GenerationCall(prompt: .text("Human: Name a fruit.\n\nAssistant:"),
                                                 parameters: SamplingParameters(temperature: 1, seed: UInt64(11 + $0), maxTokens: 12, stop: ["\n\n"])) }
        let remote = try backend(.completion)
        let out = try remote.generate(calls)
        print("real server, 3 samples of one prompt: \(out.map(\.text))")
        #expect(out.count == 3 && out.allSatisfy { $0.completionTokens > 0 && $0.promptTokens > 0 }, "\(out)")
        #expect(remote.requestsPerURL.values.reduce(0, +) == 3, "one `n: 3` request answered with one choice, then two single ones")
    }

    @Test func echoScoresMatchTheEngine() throws {
        let remote = try backend(.completion).score([ScoringCall(prompt: Self.judgePrompt, continuations: ["A", "B"])])[0]
        let model = try LanguageModel(path: try ModelStore().resolve("gemma-3-270m") { _ in }.path)
        let local = try LocalBackend(model: model, fingerprint: "local", promptStyle: .completion)
            .score([ScoringCall(prompt: Self.judgePrompt, continuations: ["A", "B"])])[0]
        print("real server (echo) log p(A), log p(B): \(remote); engine: \(local)")
        #expect(remote.allSatisfy { $0.isFinite && $0 < 0 }, "\(remote)")
        #expect(zip(remote, local).allSatisfy { abs($0 - $1) < 0.1 }, "server \(remote) vs engine \(local)")
    }

    /// Chat `top_logprobs` need an instruction-tuned model (the base model ends its turn at once
    /// under the chat template): qwen2.5-coder-0.5b-instruct on a second server.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["PRECEPT_REAL_CHAT_URL"] != nil, "needs PRECEPT_REAL_CHAT_URL"))
    func chatTopLogprobsGiveOptionScores() throws {
        let chatURL = ProcessInfo.processInfo.environment["PRECEPT_REAL_CHAT_URL"] ?? ""
        let judge = try OpenAIBackend(endpoint: OpenAIEndpoint(baseURLs: [chatURL], model: "qwen2.5-coder-0.5b-instruct", apiKeyEnv: nil,
                                                               maxConcurrency: 2, timeoutSeconds: 120), promptStyle: .chat, modelName: "judge")
        let call = ScoringCall(prompt: Self.judgePrompt + "\nAnswer with the letter only.", continuations: ["A", "B"])
        let scores = try #require(try judge.chatScores(call), "no top_logprobs for the options in the chat reply")
        print("real server (chat top_logprobs) log p(A), log p(B): \(scores)")
        #expect(scores.allSatisfy { $0.isFinite && $0 <= 0 } && exp(scores[0]) + exp(scores[1]) <= 1 + 1e-9, "\(scores)")
    }
}
