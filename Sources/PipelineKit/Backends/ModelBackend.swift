import Foundation
import ModelKit

/// What a model is asked: a plain text prompt (a completion transcript for base models) or a
/// conversation rendered with the model's chat template.
public enum PromptInput: Sendable, Equatable {
    case text(String)
    case chat([ChatMessage])

    /// The exact form that identifies the prompt in cache keys.
    public var canonical: String {
        switch self {
        case .text(let text): return "text\n" + text
        case .chat(let messages):
            return "chat\n" + messages.map { "\($0.role.rawValue)\u{1F}\($0.content)" }.joined(separator: "\u{1E}")
        }
    }

    /// Human-readable form, as stored with each output.
    public var display: String {
        switch self {
        case .text(let text): return text
        case .chat(let messages): return messages.map { "[\($0.role.rawValue)]\n\($0.content)" }.joined(separator: "\n\n")
        }
    }
}

/// One generation call.
public struct GenerationCall: Sendable, Equatable {
    public var prompt: PromptInput
    public var parameters: SamplingParameters

    public init(prompt: PromptInput, parameters: SamplingParameters) {
        self.prompt = prompt
        self.parameters = parameters
    }
}

/// What a generation call returned.
public struct GenerationOutput: Sendable, Equatable, Codable {
    public var text: String
    public var finishReason: FinishReason
    public var promptTokens: Int
    public var completionTokens: Int

    public init(text: String, finishReason: FinishReason, promptTokens: Int, completionTokens: Int) {
        self.text = text
        self.finishReason = finishReason
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }
}

/// Log-probabilities of candidate continuations after one prompt (the judge's options).
public struct ScoringCall: Sendable, Equatable {
    public var prompt: String
    public var continuations: [String]

    public init(prompt: String, continuations: [String]) {
        self.prompt = prompt
        self.continuations = continuations
    }
}

/// The backend every stage talks to: the in-process engine or an OpenAI-compatible server.
public protocol ModelBackend: AnyObject, Sendable {
    /// Identifies the weights (file hash, or endpoint + model id): part of every cache key.
    var fingerprint: String { get }
    /// Identifies what decides scores (`fingerprint`, plus the scoring arithmetic where it is not
    /// the default): part of the keys of scoring calls and of judge stages.
    var scoringFingerprint: String { get }
    /// Whether prompts should be chat conversations or completion transcripts.
    var promptStyle: PromptStyle { get }
    /// Generates for a batch of calls, in order.
    func generate(_ calls: [GenerationCall]) throws -> [GenerationOutput]
    /// Σ log p of each continuation after the prompt, per call, in order.
    func score(_ calls: [ScoringCall]) throws -> [[Double]]
}

extension ModelBackend {
    public var scoringFingerprint: String { fingerprint }
}

/// The in-process engine. Calls of one batch run as one batched generation; a token prefix
/// that every prompt of a batch shares (the few-shot block of critique, revision and judge
/// prompts) is prefilled once and kept for later batches that share it too.
public final class LocalBackend: ModelBackend, @unchecked Sendable {
    public let model: LanguageModel
    public let fingerprint: String
    public let scoringFingerprint: String
    public let promptStyle: PromptStyle
    /// Prefixes prefilled for earlier batches, least recently used first: a judge that alternates
    /// between a few long contexts (the `contrast` method's) prefills each once.
    private var sharedPrefixes: [(tokens: [Int32], cache: KVCache, pass: Pass)] = []
    static let keptPrefixes = 8
    private let lock = NSLock()
    /// Shorter shared prefixes are not worth a separate prefill.
    static let minimumSharedPrefix = 32

    /// How scoring passes multiply Float32 activations, where this CPU can (`ModelSpec.scoring`).
    public let scoring: ScoringPrecision

    /// The arithmetic of a forward pass: generation's (8-bit activations, or the model's
    /// setting) or scoring's; a kept prefix serves only passes of its own kind.
    enum Pass: Equatable {
        case generation(int8: Bool)
        case scoring(ScoringPrecision)

        var int8: Bool { if case .generation(let int8) = self { int8 } else { false } }
        var precision: ScoringPrecision { if case .scoring(let precision) = self { precision } else { .float32 } }
    }

    /// `scoring: .bfloat16` takes effect where the CPU has AVX512-BF16; it then joins the scoring
    /// fingerprint, so cached scores of the two arithmetics never mix (generation is unchanged).
    public init(model: LanguageModel, fingerprint: String, promptStyle: PromptStyle, scoring: ScoringPrecision = .float32) {
        self.model = model
        let effective: ScoringPrecision = scoring == .bfloat16 && ScoringPrecision.bfloat16Supported ? .bfloat16 : .float32
        self.scoring = effective
        self.fingerprint = fingerprint
        self.scoringFingerprint = effective == .float32 ? fingerprint : fingerprint + "#scoring=\(effective.rawValue)"
        self.promptStyle = promptStyle
    }

    func tokens(_ prompt: PromptInput) -> [Int32] {
        switch prompt {
        case .text(let text):
            // Transcripts are user data: special-token text in them stays text.
            return model.tokenizer.encode(text, addBOS: nil, parseSpecial: false)
        case .chat(let messages):
            return model.encodeChat(messages)
                ?? model.tokenizer.encode(messages.map(\.content).joined(separator: "\n\n"), addBOS: nil, parseSpecial: false)
        }
    }

    /// A cache for the prefix all `prompts` share, reusing a kept one when it still applies.
    /// `pass`: the arithmetic of the passes that will continue it (generation rounds activations
    /// to 8 bits, scoring keeps Float32), so the cache holds the same numbers a full pass would.
    func prefix(for prompts: [[Int32]], pass: Pass) -> KVCache? {
        guard let first = prompts.first, let shortest = prompts.map(\.count).min() else { return nil }
        var common = shortest - 1  // leave at least one token to feed
        for p in prompts.dropFirst() {
            var i = 0
            while i < common && p[i] == first[i] { i += 1 }
            common = i
        }
        if let index = sharedPrefixes.lastIndex(where: { kept in
            kept.pass == pass && kept.tokens.count <= common && kept.tokens.count >= Self.minimumSharedPrefix
                && Array(first.prefix(kept.tokens.count)) == kept.tokens
        }) {
            let kept = sharedPrefixes.remove(at: index)
            sharedPrefixes.append(kept)  // most recently used last
            return kept.cache
        }
        guard common >= Self.minimumSharedPrefix else { return nil }
        let tokens = Array(first.prefix(common))
        let cache = Generator(model: model).prefill(tokens, int8: pass.int8, precision: pass.precision)
        sharedPrefixes.append((tokens, cache, pass))
        if sharedPrefixes.count > Self.keptPrefixes { sharedPrefixes.removeFirst() }
        return cache
    }

    /// Per prompt (scoring, Float32 activations), the longest cached prefix: runs of consecutive prompts that share at least
    /// `minimumSharedPrefix` tokens beyond the batch's shared prefix (a judge asking one pair under
    /// several principles, the question last) get that stem prefilled once, on top of the shared prefix.
    func groupPrefixes(_ prompts: [[Int32]], shared: KVCache?) -> [KVCache?] {
        let base = shared?.length ?? 0
        var caches = [KVCache?](repeating: shared, count: prompts.count)
        var i = 0
        while i < prompts.count {
            var common = prompts[i].count - 1  // leave at least one token to feed
            var j = i + 1
            while j < prompts.count {
                var c = 0
                let limit = min(common, prompts[j].count - 1)
                while c < limit && prompts[i][c] == prompts[j][c] { c += 1 }
                if c < base + Self.minimumSharedPrefix { break }
                common = c
                j += 1
            }
            if j - i >= 2 {
                let cache = shared?.copy(reserving: common - base) ?? model.transformer.makeCache(capacity: common)
                _ = model.transformer.forward([SequenceInput(cache: cache, tokens: Array(prompts[i][base..<common]))], int8: false,
                                              precision: scoring)
                for k in i..<j { caches[k] = cache }
            }
            i = j
        }
        return caches
    }

    public func generate(_ calls: [GenerationCall]) throws -> [GenerationOutput] {
        lock.lock()
        defer { lock.unlock() }
        let prompts = calls.map { tokens($0.prompt) }
        let shared = prefix(for: prompts, pass: .generation(int8: model.transformer.int8Activations))
        let requests = zip(prompts, calls).map { GenerationRequest(prompt: $0, parameters: $1.parameters, prefix: shared) }
        return Generator(model: model).generate(requests).map {
            GenerationOutput(text: $0.text, finishReason: $0.finishReason, promptTokens: $0.promptTokens,
                             completionTokens: $0.tokens.count)
        }
    }

    public func score(_ calls: [ScoringCall]) throws -> [[Double]] {
        lock.lock()
        defer { lock.unlock() }
        let prompts = calls.map { model.tokenizer.encode($0.prompt, addBOS: nil, parseSpecial: false) }
        let prefixes = groupPrefixes(prompts, shared: prefix(for: prompts, pass: .scoring(scoring)))
        let encoded = calls.map { $0.continuations.map { model.tokenizer.encode($0, addBOS: false, parseSpecial: false) } }
        // Option tokens (every continuation one token): one pass per prompt instead of one per option.
        if encoded.allSatisfy({ $0.allSatisfy { $0.count == 1 } }) {
            return Scorer(model: model, precision: scoring).nextTokenLogProbs(prompts: prompts, candidates: encoded.map { $0.map { $0[0] } }, prefixes: prefixes)
                .map { $0.map(Double.init) }
        }
        var requests: [ScoringRequest] = []
        for (n, (prompt, continuations)) in zip(prompts, encoded).enumerated() {
            for continuation in continuations {
                requests.append(ScoringRequest(prompt: prompt, continuation: continuation, prefix: prefixes[n]))
            }
        }
        let scores = Scorer(model: model, precision: scoring).score(requests).map { Double($0.sum) }
        return scores.slices(lengths: calls.map(\.continuations.count)).map(Array.init)
    }
}
