import Foundation
import Testing
import PipelineTestSupport
@testable import PipelineKit

/// The OpenAI-compatible backend against a local fault-injecting server: retries (429 with
/// Retry-After, 500, malformed JSON, timeouts) lose and duplicate nothing, calls spread over
/// several base URLs, judging reads chat top_logprobs or falls back to completions with echo,
/// and the API key never shows in an error.
@Suite(.serialized) struct OpenAIBackendTests {
    final class Counter: @unchecked Sendable {
        let lock = NSLock()
        var counts: [String: Int] = [:]
        var authorizations = Set<String>()
        func next(_ key: String) -> Int { lock.withLock { counts[key, default: 0] += 1; return counts[key]! } }
        func total() -> Int { lock.withLock { counts.values.reduce(0, +) } }
    }

    func endpoint(_ urls: [String], timeout: Double = 5, key: String? = "TEST_KEY") -> OpenAIEndpoint {
        OpenAIEndpoint(baseURLs: urls, model: "m", apiKeyEnv: key, maxConcurrency: 3, timeoutSeconds: timeout)
    }

    static let fast = RetryPolicy(attempts: 4, baseDelay: 0.01, maxDelay: 0.05)

    func completion(_ text: String) -> FaultServer.Reply {
        .json(["choices": [["text": text, "finish_reason": "stop", "index": 0]], "usage": ["prompt_tokens": 3, "completion_tokens": 2]])
    }

    @Test func faultsAreRetriedWithoutLosingOrDuplicatingCalls() throws {
        let counter = Counter()
        let handler: (String, [String: String], [String: Any]) -> FaultServer.Reply = { path, headers, body in
            counter.lock.withLock { _ = counter.authorizations.insert(headers["authorization"] ?? "") }
            let prompt = body["prompt"] as? String ?? ""
            let n = Int(prompt.split(separator: " ").last ?? "") ?? 0
            let attempt = counter.next(prompt)
            if attempt == 1 {
                switch n % 5 {
                case 1: return FaultServer.Reply(status: 429, headers: ["Retry-After": "0.05"], body: Data("{\"error\": \"slow down\"}".utf8))
                case 2: return FaultServer.Reply(status: 500, body: Data("oops".utf8))
                case 3: return FaultServer.Reply(body: Data("{\"choices\": [".utf8))
                case 4: var r = self.completion("late"); r.delay = 2.5; return r
                default: break
                }
            }
            return self.completion("reply to \(prompt)")
        }
        let a = try FaultServer(handler: handler), b = try FaultServer(handler: handler)
        defer { a.stop(); b.stop() }
        let backend = try OpenAIBackend(endpoint: endpoint([a.baseURL, b.baseURL], timeout: 1), promptStyle: .completion, modelName: "policy",
                                        retry: Self.fast, environment: ["TEST_KEY": "sk-secret-123"])
        let calls = (0..<40).map { GenerationCall(prompt: .text("item \($0)"), parameters: .init(maxTokens: 8)) }
        let out = try backend.generate(calls)
        #expect(out.map(\.text) == (0..<40).map { "reply to item \($0)" })
        #expect(out.allSatisfy { $0.promptTokens == 3 && $0.completionTokens == 2 })
        #expect(backend.usage.prompt == 120 && backend.usage.completion == 80)
        // Every faulty first attempt was retried (a healthy one may be too, on a loaded machine).
        let attempts = counter.lock.withLock { counter.counts }
        #expect((0..<40).allSatisfy { attempts["item \($0)"]! >= ($0 % 5 == 0 ? 1 : 2) }, "\(attempts)")
        #expect(backend.requestsPerURL.count == 2 && backend.requestsPerURL.values.allSatisfy { $0 > 10 }, "\(backend.requestsPerURL)")
        #expect(counter.authorizations == ["Bearer sk-secret-123"])
        // The prompt style decides how a judge prompt is scored, so it is part of the cache identity.
        let chat = try OpenAIBackend(endpoint: endpoint([a.baseURL, b.baseURL]), promptStyle: .chat, modelName: "policy",
                                     environment: ["TEST_KEY": "k"])
        #expect(chat.fingerprint != backend.fingerprint)
    }

    /// Samples of one prompt (calls equal but for the seed) go as one request with `n`; a server
    /// that ignores `n` gets the missing samples as single requests with their own seeds. A 500 on
    /// a group's first attempt re-sends the whole group; every call still gets exactly one output.
    @Test func samplesOfOnePromptGoAsOneRequestWithN() throws {
        final class Log: @unchecked Sendable {
            let lock = NSLock()
            var requests: [(prompt: String, n: Int, seed: Int)] = []
        }
        for honoursN in [true, false] {
            let log = Log(), counter = Counter()
            let server = try FaultServer { _, _, body in
                let prompt = body["prompt"] as? String ?? "", n = body["n"] as? Int ?? 1, seed = body["seed"] as? Int ?? -1
                log.lock.withLock { log.requests.append((prompt, n, seed)) }
                if counter.next("\(prompt)/\(seed)") == 1 && n > 1 { return FaultServer.Reply(status: 500, body: Data()) }
                let count = honoursN ? n : 1
                // Choices out of order: the backend must place them by `index`.
                let choices = (0..<count).reversed().map { ["text": "\(prompt) seed \(seed) choice \($0)", "finish_reason": "stop", "index": $0] as [String: Any] }
                return .json(["choices": choices, "usage": ["prompt_tokens": 5, "completion_tokens": 3 * count + 1]])
            }
            defer { server.stop() }
            let backend = try OpenAIBackend(endpoint: endpoint([server.baseURL], key: nil), promptStyle: .completion, modelName: "policy", retry: Self.fast)
            var calls: [GenerationCall] = []
            for prompt in ["p0", "p1", "p2"] {
                for sample in 0..<4 { calls.append(GenerationCall(prompt: .text(prompt), parameters: .init(seed: UInt64(100 * sample + 7), maxTokens: 8))) }
            }
            calls.append(GenerationCall(prompt: .text("p0"), parameters: .init(seed: 7, maxTokens: 9)))   // differs in max_tokens: its own request
            let out = try backend.generate(calls)
            #expect(out.count == calls.count)
            for (i, call) in calls.enumerated() where i < 12 {
                let prompt = ["p0", "p1", "p2"][i / 4], sample = i % 4
                // With `n`, choice k of the group's request (seeded by its first call); without, call k's own request.
                let expected = honoursN ? "\(prompt) seed 7 choice \(sample)" : "\(prompt) seed \(call.parameters.seed) choice 0"
                #expect(out[i].text == expected, "\(honoursN) \(i)")
            }
            #expect(out[12].text == "p0 seed 7 choice 0")
            let requests = log.lock.withLock { log.requests }
            let grouped = requests.filter { $0.n == 4 }
            #expect(grouped.count == 6 && Set(grouped.map(\.seed)) == [7], "each group once failed, once answered")
            #expect(requests.count == (honoursN ? 7 : 7 + 9), "\(requests.map { "\($0.prompt) n\($0.n) s\($0.seed)" })")
            // Token usage: prompt tokens once per answered request, completion tokens as reported.
            let answered = honoursN ? 4 : 4 + 9
            #expect(out.map(\.promptTokens).reduce(0, +) == 5 * answered && backend.usage.prompt == 5 * answered)
            #expect(out.map(\.completionTokens).reduce(0, +) == backend.usage.completion)
            #expect(backend.usage.completion == (honoursN ? 3 * 13 + 4 : 13 * 4))
        }
    }

    @Test func clientErrorsAreNotRetriedAndNeverShowTheKey() throws {
        let counter = Counter()
        let server = try FaultServer { _, _, _ in _ = counter.next("x"); return .json(["error": "bad key"], status: 401) }
        defer { server.stop() }
        let backend = try OpenAIBackend(endpoint: endpoint([server.baseURL]), promptStyle: .completion, modelName: "policy", retry: Self.fast,
                                        environment: ["TEST_KEY": "sk-secret-123"])
        #expect { _ = try backend.generate([GenerationCall(prompt: .text("x"), parameters: .init())]) } throws: { error in
            let message = (error as? LocalizedError)?.errorDescription ?? ""
            return message.contains("HTTP 401") && !message.contains("sk-secret")
        }
        #expect(counter.total() == 1)
        #expect(throws: RemoteError.missingAPIKey(model: "policy", variable: "TEST_KEY")) {
            _ = try OpenAIBackend(endpoint: endpoint([server.baseURL]), promptStyle: .completion, modelName: "policy", environment: [:])
        }
        // Retryable failures give up after the policy's attempts, saying so.
        let down = try FaultServer { _, _, _ in _ = counter.next("down"); return FaultServer.Reply(status: 503, body: Data()) }
        defer { down.stop() }
        let flaky = try OpenAIBackend(endpoint: endpoint([down.baseURL], key: nil), promptStyle: .completion, modelName: "p", retry: Self.fast)
        #expect { _ = try flaky.generate([GenerationCall(prompt: .text("x"), parameters: .init())]) } throws: { error in
            ((error as? LocalizedError)?.errorDescription ?? "").contains("HTTP 503") && ((error as? LocalizedError)?.errorDescription ?? "").contains("after 4 attempts")
        }
    }

    @Test func judgingReadsChatLogprobsOrFallsBackToEcho() throws {
        // Chat with top_logprobs: "A" appears twice (with and without a space) and is summed.
        let chat = try FaultServer { path, _, _ in
            path.hasSuffix("/chat/completions")
                ? .json(["choices": [["message": ["content": "A"], "logprobs": ["content": [["token": "A", "logprob": -0.5,
                    "top_logprobs": [["token": "A", "logprob": -0.5], ["token": " A", "logprob": -2.0],
                                     ["token": "B", "logprob": -1.5]]]]]]]])
                : .json(["error": "no"], status: 404)
        }
        defer { chat.stop() }
        let c = try OpenAIBackend(endpoint: endpoint([chat.baseURL], key: nil), promptStyle: .chat, modelName: "judge", retry: Self.fast)
        let s = try c.score([ScoringCall(prompt: "Q (", continuations: ["A", "B"])])[0]
        #expect(abs(s[0] - (-0.5 + log(1 + exp(-1.5)))) < 1e-9 && abs(s[1] - -1.5) < 1e-12)

        // No logprobs in chat replies: completions with echo, summing the continuation's tokens.
        let echo = try FaultServer { path, _, body in
            if path.hasSuffix("/chat/completions") { return .json(["choices": [["message": ["content": "A"]]]]) }
            let prompt = body["prompt"] as! String
            let last = String(prompt.suffix(1))
            return .json(["choices": [["text": prompt + "x", "logprobs": [
                "tokens": ["Q", " (", last, "x"], "text_offset": [0, 1, 3, 4],
                "token_logprobs": [NSNull(), -0.1, last == "A" ? -0.7 : -2.2, -0.3]]]]])
        }
        defer { echo.stop() }
        let e = try OpenAIBackend(endpoint: endpoint([echo.baseURL], key: nil), promptStyle: .chat, modelName: "judge", retry: Self.fast)
        #expect(try e.score([ScoringCall(prompt: "Q (", continuations: ["A", "B"])])[0] == [-0.7, -2.2])

        // Neither: a clear error.
        let neither = try FaultServer { path, _, _ in
            path.hasSuffix("/chat/completions") ? .json(["choices": [["message": ["content": "A"]]]]) : .json(["error": "not found"], status: 404)
        }
        defer { neither.stop() }
        let n = try OpenAIBackend(endpoint: endpoint([neither.baseURL], key: nil), promptStyle: .chat, modelName: "judge", retry: Self.fast)
        #expect { _ = try n.score([ScoringCall(prompt: "Q (", continuations: ["A", "B"])]) } throws: { error in
            ((error as? LocalizedError)?.errorDescription ?? "").contains("offers neither chat completions with logprobs")
        }
    }

    @Test func aPipelineRunsAgainstAFlakyServerWithOneRowPerCall() throws {
        let counter = Counter()
        let server = try FaultServer { path, _, body in
            let messages = body["messages"] as? [[String: Any]] ?? []
            let key = (messages.last?["content"] as? String ?? "") + path
            if counter.next(key) == 1 && key.hash % 3 == 0 { return FaultServer.Reply(status: 429, headers: ["Retry-After": "0"], body: Data()) }
            if counter.next(key + "#") == 1 && key.hash % 3 == 1 { return FaultServer.Reply(status: 502, body: Data()) }
            if path.hasSuffix("/chat/completions") && body["logprobs"] as? Bool == true {
                return .json(["choices": [["message": ["content": "A"], "logprobs": ["content": [["token": "A", "logprob": -0.4,
                    "top_logprobs": [["token": "A", "logprob": -0.4], ["token": "B", "logprob": -1.2]]]]]]]])
            }
            let last = messages.last?["content"] as? String ?? ""
            return .json(["choices": [["message": ["content": "answer to: \(last.suffix(30))"], "finish_reason": "stop"]],
                          "usage": ["prompt_tokens": 5, "completion_tokens": 4]])
        }
        defer { server.stop() }
        setenv("PRECEPT_TEST_REMOTE_KEY", "sk-never-logged", 1)
        let f = try RunFixture(prompts: (0..<8).map { "remote request \($0)" }, stages: """
          - { id: responses, generate: { model: policy, samples: 1 } }
          - { id: revisions, critique_revise: { model: policy, input: responses, few_shot: 1 } }
          - { id: labels, judge: { model: policy, input: revisions } }
        """)
        let text = try String(contentsOf: f.pipeline, encoding: .utf8).replacingOccurrences(of: "policy: { source: gemma-3-270m }",
            with: "policy: { provider: openai, base_url: \(server.baseURL), model: m, api_key_env: PRECEPT_TEST_REMOTE_KEY, max_concurrency: 4, timeout: 5 }")
        try Data(text.utf8).write(to: f.pipeline)
        let options = RunOptions(output: f.directory.appendingPathComponent("run"), cacheDirectory: f.directory.appendingPathComponent("cache"), batchSize: 4)
        let summary = try PipelineRunner(pipelinePath: f.pipeline.path, options: options).run()
        let rows = try f.rows()
        for (stage, kind) in [("responses", "response"), ("revisions", "revision"), ("labels", "label")] {
            let ids = rows.filter { $0.stage == stage && $0.kind == kind }.map(\.record)
            #expect(ids.count == 8 && Set(ids).count == 8, "\(stage): \(ids)")
        }
        #expect(rows.filter { $0.stage == "responses" }.allSatisfy { $0.output.hasPrefix("answer to:") && $0.promptTokens == 5 })
        #expect(rows.filter { $0.stage == "labels" }.allSatisfy { abs(Double($0.output)! - 0.5) < 1e-9 }, "both orders average out")
        #expect(summary.executedCalls > 0)
        let report = try String(contentsOf: summary.report, encoding: .utf8)
        #expect(!report.contains("sk-never-logged"))
        let again = try PipelineRunner(pipelinePath: f.pipeline.path, options: options).run()
        #expect(again.executedCalls == 0)
    }
}
