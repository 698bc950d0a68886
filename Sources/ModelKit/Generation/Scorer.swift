import Foundation
import TensorKit

/// Log-probabilities of a continuation after a prompt.
public struct ContinuationScore: Sendable, Equatable {
    /// log p(token_i | prompt, token_<i) for each continuation token.
    public var tokenLogProbs: [Float]
    /// Per continuation position: the target's logit, the log-sum-exp and the top-k.
    public var positions: [PositionScore]

    /// Σ log p: the sequence log-likelihood (DPO's log π(y|x)).
    public var sum: Float { tokenLogProbs.reduce(0, +) }
}

/// A prompt and continuation to score; `prefix` as in `GenerationRequest`.
public struct ScoringRequest {
    public var prompt: [Int32]
    public var continuation: [Int32]
    public var prefix: KVCache?

    public init(prompt: [Int32], continuation: [Int32], prefix: KVCache? = nil) {
        self.prompt = prompt
        self.continuation = continuation
        self.prefix = prefix
    }
}

/// Batched scoring: every request's prompt and continuation go through one forward pass;
/// the LM head runs only at the positions that predict continuation tokens, and the
/// vocabulary is streamed in chunks there (never a (tokens × vocab) matrix).
public struct Scorer {
    public let model: LanguageModel
    /// Whether the forward passes round activations to 8 bits. Off by default: judges and
    /// log-probability comparisons read small differences (a pairwise judge's P(A) sits within
    /// 0.03 of 0.5), which 8-bit rounding noise can flip (docs/performance.md § 8-bit activations
    /// on every path); generation keeps the model's setting.
    public var int8Activations: Bool
    /// How the Float32 activations of the transformer's products meet the weights; the LM head's
    /// few scored rows stay Float32.
    public var precision: ScoringPrecision

    public init(model: LanguageModel, int8Activations: Bool = false, precision: ScoringPrecision = .float32) {
        self.model = model
        self.int8Activations = int8Activations
        self.precision = precision
    }

    public func score(_ requests: [ScoringRequest], topK: Int = 0) -> [ContinuationScore] {
        var inputs: [SequenceInput] = []
        var starts: [Int] = []  // index in the fed tokens of the row that predicts continuation[0]
        for r in requests {
            let (input, skip) = sequence(r.prompt + r.continuation, promptCount: r.prompt.count, prefix: r.prefix)
            inputs.append(input)
            starts.append(r.prompt.count - 1 - skip)
        }
        let hidden = model.transformer.forward(inputs, int8: int8Activations, precision: precision)
        let rows = requests.reduce(0) { $0 + $1.continuation.count }
        let gathered = Tensor(shape: [max(rows, 1), model.config.hidden])
        var targets: [Int32?] = []
        var offset = 0, out = 0
        for (i, r) in requests.enumerated() {
            for j in 0..<r.continuation.count {
                (gathered.data + out * model.config.hidden).update(from: hidden.row(offset + starts[i] + j), count: model.config.hidden)
                targets.append(r.continuation[j])
                out += 1
            }
            offset += inputs[i].tokens.count
        }
        let scores = withExtendedLifetime((hidden, gathered)) {
            rows > 0 ? model.head.score(gathered.data, rows: rows, targets: targets, topK: topK, int8: int8Activations) : []
        }
        return scores.slices(lengths: requests.map(\.continuation.count)).map { slice in
            ContinuationScore(tokenLogProbs: slice.map { $0.logProbability ?? -.infinity }, positions: Array(slice))
        }
    }
}

extension Scorer {
    /// The tokens one request feeds: everything after its cached prefix, and at least the prompt's
    /// last token (whose row predicts what follows), on a copy of the prefix's cache.
    func sequence(_ all: [Int32], promptCount: Int, prefix: KVCache?) -> (input: SequenceInput, skipped: Int) {
        precondition(promptCount > 0, "scoring needs a prompt of at least one token (e.g. BOS)")
        let skip = min(prefix?.length ?? 0, promptCount - 1)
        let cache = prefix.map { $0.copy(reserving: all.count - skip) } ?? model.transformer.makeCache(capacity: all.count)
        cache.truncate(to: skip)
        return (SequenceInput(cache: cache, tokens: Array(all[skip...])), skip)
    }

    /// log p(candidate | prompt) for single-token candidates: one forward pass per prompt, the
    /// last row read once per candidate (a judge's option tokens: "A"/"B", "Yes"/"No", "1"…"5"),
    /// where `score` would run the prompt once per continuation. Equals `score` with each
    /// candidate as a one-token continuation.
    /// `prefixes[i]`, when given, holds a cached prefix of `prompts[i]`.
    public func nextTokenLogProbs(prompts: [[Int32]], candidates: [[Int32]], prefixes: [KVCache?]) -> [[Float]] {
        precondition(prompts.count == candidates.count && prompts.count == prefixes.count)
        let inputs = zip(prompts, prefixes).map { sequence($0, promptCount: $0.count, prefix: $1).input }
        guard !inputs.isEmpty else { return [] }
        let hidden = model.transformer.forward(inputs, int8: int8Activations, precision: precision)
        let rows = candidates.reduce(0) { $0 + $1.count }
        guard rows > 0 else { return candidates.map { _ in [] } }
        let gathered = Tensor(shape: [rows, model.config.hidden])
        var targets: [Int32?] = []
        var offset = 0, out = 0
        for (i, input) in inputs.enumerated() {
            offset += input.tokens.count
            for token in candidates[i] {
                (gathered.data + out * model.config.hidden).update(from: hidden.row(offset - 1), count: model.config.hidden)
                targets.append(token)
                out += 1
            }
        }
        let scores = withExtendedLifetime((hidden, gathered)) { model.head.score(gathered.data, rows: rows, targets: targets, topK: 0, int8: int8Activations) }
        return scores.slices(lengths: candidates.map(\.count)).map { $0.map { $0.logProbability ?? -.infinity } }
    }
}

extension Array {
    /// Consecutive slices of these lengths, in order: the per-request parts of one flat result.
    public func slices(lengths: [Int]) -> [ArraySlice<Element>] {
        var start = 0
        return lengths.map { n in
            defer { start += n }
            return self[start..<(start + n)]
        }
    }
}
