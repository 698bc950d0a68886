import Foundation
import ModelKit

/// Errors of the OpenAI-compatible backend. Messages name the endpoint, never the API key.
public enum RemoteError: LocalizedError, Equatable {
    case missingAPIKey(model: String, variable: String)
    case request(endpoint: String, message: String)
    case noLogprobs(endpoint: String, detail: String)

    public var errorDescription: String? {
        switch self {
        case .missingAPIKey(let model, let variable):
            "model `\(model)`: the environment variable \(variable) (api_key_env) is not set"
        case .request(let endpoint, let message): Secrets.redact("\(endpoint): \(message)")
        case .noLogprobs(let endpoint, let detail):
            Secrets.redact("\(endpoint): ") + "the server offers neither chat completions with logprobs/top_logprobs nor completions with echo and logprobs, "
                + "so the judge cannot read option probabilities from it (\(Secrets.redact(detail)))"
        }
    }
}

/// An OpenAI-compatible server (vLLM, llama.cpp's server, Ollama, OpenAI): `/chat/completions`
/// for chat prompts, `/completions` for transcripts. Judging reads the options' log-probabilities
/// from chat `top_logprobs`, falling back to `/completions` with `echo` (exact log-probabilities of
/// the continuation tokens). Calls run concurrently, at most `max_concurrency` per base URL,
/// spread over the base URLs; 429, 5xx, timeouts, dropped connections and malformed replies are
/// retried with exponential backoff and jitter, honouring `Retry-After`, on the next base URL.
/// Each call yields exactly one output, in call order.
public final class OpenAIBackend: ModelBackend, @unchecked Sendable {
    public let endpoint: OpenAIEndpoint
    public let promptStyle: PromptStyle
    public let retry: RetryPolicy
    private let apiKey: String?
    private let client: HTTPClient
    private let slots: [DispatchSemaphore]
    private let lock = NSLock()
    private var next = 0
    private var chatLogprobs = true
    /// Tokens the server reported (prompt, completion), over all calls.
    public private(set) var usage = (prompt: 0, completion: 0)
    /// Requests sent per base URL (load-balancing diagnostics).
    public private(set) var requestsPerURL: [String: Int] = [:]

    public init(endpoint: OpenAIEndpoint, promptStyle: PromptStyle, modelName: String, retry: RetryPolicy = RetryPolicy(),
                environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        self.endpoint = endpoint
        self.promptStyle = promptStyle
        self.retry = retry
        if let variable = endpoint.apiKeyEnv {
            guard let key = environment[variable], !key.isEmpty else { throw RemoteError.missingAPIKey(model: modelName, variable: variable) }
            apiKey = key
        } else {
            apiKey = nil
        }
        client = HTTPClient(timeout: endpoint.timeoutSeconds)
        slots = endpoint.baseURLs.map { _ in DispatchSemaphore(value: endpoint.maxConcurrency) }
    }

    /// Endpoint, model and prompt style: the style decides how a judge prompt is scored (chat
    /// template and `top_logprobs`, or the raw transcript through echo), so cached judgements
    /// of one style must not answer the other.
    /// Never printed or stored as text (the call cache stores its hash), so it keeps the URLs as
    /// given: redacting would change every cached key of such a model.
    public var fingerprint: String { "openai:\(endpoint.model)@\(endpoint.baseURLs.sorted().joined(separator: ","))#\(promptStyle.rawValue)" }

    // MARK: Requests

    /// POSTs to `path` under a base URL, retrying on the next one; returns the parsed reply.
    func request<T>(_ path: String, _ body: [String: Any], parse: ([String: Any]) throws -> T) throws -> T {
        var last = AttemptFailure(message: "no attempt made", retryable: false)
        let first: Int = lock.withLock { defer { next += 1 }; return next }
        for attempt in 0..<max(1, retry.attempts) {
            let u = (first + attempt) % endpoint.baseURLs.count
            let base = endpoint.baseURLs[u].hasSuffix("/") ? String(endpoint.baseURLs[u].dropLast()) : endpoint.baseURLs[u]
            guard let url = URL(string: base + path) else {
                throw RemoteError.request(endpoint: Secrets.redact(base), message: "not a valid URL")
            }
            slots[u].wait()
            lock.withLock { requestsPerURL[base, default: 0] += 1 }
            let outcome = client.post(url, json: body, headers: apiKey.map { ["Authorization": "Bearer \($0)"] } ?? [:])
            slots[u].signal()
            switch outcome {
            case .failure(let f): last = f
            case .success(let r) where (200..<300).contains(r.status):
                guard let object = try? JSONSerialization.jsonObject(with: r.body) as? [String: Any] else {
                    last = AttemptFailure(message: "malformed JSON in the reply: \(String(decoding: r.body.prefix(120), as: UTF8.self))", retryable: true)
                    break
                }
                do { return try parse(object) } catch let f as AttemptFailure { last = f } catch { throw error }
            case .success(let r):
                let text = String(decoding: r.body.prefix(300), as: UTF8.self)
                last = AttemptFailure(message: "HTTP \(r.status) from \(url.absoluteString): \(text)", retryable: RetryPolicy.retryable(r.status),
                                      retryAfter: r.retryAfter)
            }
            guard last.retryable, attempt + 1 < retry.attempts else { break }
            Thread.sleep(forTimeInterval: retry.delay(after: attempt, retryAfter: last.retryAfter))
        }
        // A server may echo the key or the URL's credentials back in its error body.
        throw RemoteError.request(endpoint: Secrets.redact(endpoint.baseURLs.joined(separator: ", ")),
                                  message: Secrets.redact(last.message + (last.retryable ? " (after \(retry.attempts) attempts)" : ""),
                                                          values: [apiKey]))
    }

    /// Runs `body(i)` for every index with up to (max_concurrency × base URLs) in flight; the
    /// first error is thrown after all have finished.
    func concurrently<T>(_ count: Int, _ body: @escaping (Int) throws -> T) throws -> [T] {
        let results = ResultBox<T>(count: count)
        let group = DispatchGroup()
        let workers = min(count, endpoint.maxConcurrency * endpoint.baseURLs.count)
        let cursor = Cursor()
        // Workers block on the network: own threads, not the shared dispatch pool.
        for _ in 0..<workers {
            group.enter()
            Thread {
                while true {
                    let i = cursor.take()
                    if i >= count { break }
                    results.set(i, Result { try body(i) })
                }
                group.leave()
            }.start()
        }
        group.wait()
        return try results.values()
    }

    // MARK: ModelBackend

    /// Samples of one prompt — calls equal but for the seed — go as one request with `n` set to
    /// their number and the first call's seed; choice k answers the group's k-th call. A server
    /// that returns fewer choices (llama.cpp's and Ollama's ignore `n`) gets the rest as single
    /// requests with their own seeds. The request's prompt tokens are counted on its first output.
    public func generate(_ calls: [GenerationCall]) throws -> [GenerationOutput] {
        let groups = Self.sampleGroups(calls)
        let answers = try concurrently(groups.count) { g in try self.generate(group: groups[g].map { calls[$0] }) }
        var outputs = [GenerationOutput?](repeating: nil, count: calls.count)
        for (group, answer) in zip(groups, answers) { for (i, output) in zip(group, answer) { outputs[i] = output } }
        return outputs.map { $0! }
    }

    /// Indices of `calls` grouped by everything but the seed, in first-appearance order.
    static func sampleGroups(_ calls: [GenerationCall]) -> [[Int]] {
        struct Key: Hashable { var prompt: String; var parameters: SamplingParameters }
        var groups: [[Int]] = [], index: [Key: Int] = [:]
        for (i, call) in calls.enumerated() {
            var key = Key(prompt: call.prompt.canonical, parameters: call.parameters)
            key.parameters.seed = 0
            if let g = index[key] { groups[g].append(i) } else { index[key] = groups.count; groups.append([i]) }
        }
        return groups
    }

    /// One request for a group of samples (see `generate(_:)`); one output per call, in order.
    func generate(group: [GenerationCall]) throws -> [GenerationOutput] {
        let call = group[0], p = call.parameters
        var body: [String: Any] = ["model": endpoint.model, "max_tokens": p.maxTokens, "temperature": Double(p.temperature),
                                   "top_p": Double(p.topP), "seed": Int(p.seed % UInt64(Int32.max)), "n": group.count]
        if !p.stop.isEmpty { body["stop"] = Array(p.stop.prefix(4)) }   // OpenAI accepts up to 4 stop sequences
        if p.topK > 0 { body["top_k"] = p.topK }
        let path: String
        switch call.prompt {
        case .text(let text): path = "/completions"; body["prompt"] = text
        case .chat(let messages):
            path = "/chat/completions"
            body["messages"] = messages.map { ["role": $0.role.rawValue, "content": $0.content] }
        }
        var outputs: [GenerationOutput] = try request(path, body) { object in
            guard let choices = object["choices"] as? [[String: Any]], !choices.isEmpty else {
                throw AttemptFailure(message: "reply has no choices", retryable: true)
            }
            let usage = object["usage"] as? [String: Any]
            let (pt, ct) = (usage?["prompt_tokens"] as? Int ?? 0, usage?["completion_tokens"] as? Int ?? 0)
            let ordered = choices.enumerated().sorted { ($0.element["index"] as? Int ?? $0.offset) < ($1.element["index"] as? Int ?? $1.offset) }
            var out: [GenerationOutput] = []
            for (k, (_, choice)) in ordered.prefix(group.count).enumerated() {
                guard let text = (choice["text"] as? String) ?? ((choice["message"] as? [String: Any])?["content"] as? String) else {
                    throw AttemptFailure(message: "reply has no choices[\(k)].text or message.content", retryable: true)
                }
                var cut = text
                if let end = p.stop.compactMap({ cut.range(of: $0)?.lowerBound }).min() { cut = String(cut[..<end]) }
                let finish: FinishReason = (choice["finish_reason"] as? String) == "length" ? .length : .endOfSequence
                // Completion tokens are reported per request: split evenly, the remainder on the first.
                let n = min(group.count, ordered.count), share = ct / n + (k == 0 ? ct % n : 0)
                out.append(GenerationOutput(text: cut, finishReason: finish, promptTokens: k == 0 ? pt : 0, completionTokens: share))
            }
            self.lock.withLock { self.usage.prompt += pt; self.usage.completion += ct }
            return out
        }
        for rest in group.dropFirst(outputs.count) { outputs += try generate(group: [rest]) }
        return outputs
    }

    public func score(_ calls: [ScoringCall]) throws -> [[Double]] {
        try concurrently(calls.count) { i in
            let call = calls[i]
            if self.promptStyle == .chat, self.lock.withLock({ self.chatLogprobs }), let scores = try self.chatScores(call) { return scores }
            return try call.continuations.map { try self.echoScore(prompt: call.prompt, continuation: $0) }
        }
    }

    /// Option log-probabilities from the first generated token's `top_logprobs`; nil when an
    /// option is not among them or the model ended its turn at once (echo is used for that
    /// call), or when the server returns no log-probabilities (echo is used from then on).
    func chatScores(_ call: ScoringCall) throws -> [Double]? {
        let body: [String: Any] = ["model": endpoint.model, "messages": [["role": "user", "content": call.prompt]], "max_tokens": 1,
                                   "temperature": 0, "logprobs": true, "top_logprobs": 20]
        enum Reply { case unsupported, noToken, top([(String, Double)]) }
        let reply: Reply = try request("/chat/completions", body) { object in
            guard let choice = (object["choices"] as? [[String: Any]])?.first else {
                throw AttemptFailure(message: "reply has no choices", retryable: true)
            }
            guard let logprobs = choice["logprobs"] as? [String: Any], let content = logprobs["content"] as? [[String: Any]] else {
                return .unsupported
            }
            guard let list = content.first?["top_logprobs"] as? [[String: Any]] else { return .noToken }
            return .top(list.compactMap { e in (e["token"] as? String).flatMap { t in (e["logprob"] as? NSNumber).map { (t, $0.doubleValue) } } })
        }
        let top: [(String, Double)]
        switch reply {
        case .unsupported: lock.withLock { chatLogprobs = false }; return nil
        case .noToken: return nil
        case .top(let t): top = t
        }
        var scores: [Double] = []
        for c in call.continuations {
            let matches = top.filter { $0.0.trimmingCharacters(in: .whitespaces) == c }.map(\.1)
            guard let m = matches.max() else { return nil }
            scores.append(matches.count == 1 ? m : m + log(matches.reduce(0) { $0 + exp($1 - m) }))
        }
        return scores
    }

    /// Σ log p of the continuation's tokens: `/completions` with `echo` returns the prompt's own
    /// token log-probabilities; the tokens starting at or after the prompt's end are summed.
    func echoScore(prompt: String, continuation: String) throws -> Double {
        let body: [String: Any] = ["model": endpoint.model, "prompt": prompt + continuation, "max_tokens": 1, "temperature": 0,
                                   "echo": true, "logprobs": 1]
        let start = prompt.unicodeScalars.count, end = start + continuation.unicodeScalars.count
        let total: Double?
        do {
            total = try request("/completions", body) { object in
                guard let choice = (object["choices"] as? [[String: Any]])?.first,
                      let lp = choice["logprobs"] as? [String: Any], let offsets = lp["text_offset"] as? [Int],
                      let values = lp["token_logprobs"] as? [Any] else { return nil }
                var sum = 0.0, found = false
                for (k, offset) in offsets.enumerated() where offset >= start && offset < end && k < values.count {
                    guard let v = values[k] as? NSNumber else { continue }
                    sum += v.doubleValue
                    found = true
                }
                return found ? sum : nil
            }
        } catch RemoteError.request(let place, let message) where message.hasPrefix("HTTP 4") {
            throw RemoteError.noLogprobs(endpoint: place, detail: message)
        }
        guard let total else {
            throw RemoteError.noLogprobs(endpoint: endpoint.baseURLs.joined(separator: ", "), detail: "the completions reply carries no token log-probabilities")
        }
        return total
    }
}

/// The next index for concurrent workers.
final class Cursor: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func take() -> Int { lock.withLock { defer { value += 1 }; return value } }
}

/// Results filled by concurrent workers, each index once.
final class ResultBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Result<T, Error>?]

    init(count: Int) { items = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Result<T, Error>) { lock.withLock { items[i] = r } }
    func values() throws -> [T] { try lock.withLock { items }.map { try $0!.get() } }
}
