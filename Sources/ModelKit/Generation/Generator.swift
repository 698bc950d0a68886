import Foundation
import TensorKit

/// Why a sequence stopped.
public enum FinishReason: String, Sendable, Codable {
    /// An end-of-sequence or end-of-turn token.
    case endOfSequence = "eos"
    /// One of the stop strings appeared (it is cut from the text).
    case stopString = "stop"
    /// `maxTokens` were generated: the output may be truncated.
    case length
}

/// One finished sequence.
public struct Generation: Sendable, Equatable {
    /// Generated token ids (an end-of-sequence token is not included; with a stop string the
    /// token that completed it is).
    public var tokens: [Int32]
    public var text: String
    public var finishReason: FinishReason
    public var promptTokens: Int
    /// The end-of-sequence or end-of-turn token that ended it (finish reason `eos`).
    public var stopToken: Int32? = nil
}

/// A prompt to continue, optionally from a cache that already holds a prefix of it.
public struct GenerationRequest {
    public var prompt: [Int32]
    public var parameters: SamplingParameters
    /// A cache holding `prompt[..<prefix.length]` (e.g. a shared few-shot block, or the whole
    /// prompt); copied, not changed.
    public var prefix: KVCache?

    public init(prompt: [Int32], parameters: SamplingParameters, prefix: KVCache? = nil) {
        self.prompt = prompt
        self.parameters = parameters
        self.prefix = prefix
    }
}

/// Batched generation: all prompts are prefilled in one forward pass, then every unfinished
/// sequence advances one token per forward pass, so the projections and the LM head run as
/// GEMMs over the batch. Logits are computed only for each sequence's last position.
public struct Generator {
    public let model: LanguageModel

    public init(model: LanguageModel) { self.model = model }

    /// Fills a cache with `tokens` (for a shared prefix that many requests start from). `int8`
    /// overrides the model's activation setting (a prefix for scoring, which runs Float32).
    public func prefill(_ tokens: [Int32], int8: Bool? = nil, precision: ScoringPrecision = .float32) -> KVCache {
        let cache = model.transformer.makeCache(capacity: tokens.count + 256)
        _ = model.transformer.forward([SequenceInput(cache: cache, tokens: tokens)], int8: int8, precision: precision)
        return cache
    }

    /// Generates for every request. `onToken(sequence, textSoFarDelta)` streams decoded text.
    public func generate(_ requests: [GenerationRequest], onText: ((Int, String) -> Void)? = nil) -> [Generation] {
        let vocab = model.head.vocabSize
        let stopTokens = model.tokenizer.vocabulary.stopTokens
        var caches: [KVCache] = []
        var pending: [[Int32]] = []           // tokens to feed next, per sequence
        for request in requests {
            precondition(!request.prompt.isEmpty, "a prompt needs at least one token")
            if let prefix = request.prefix, prefix.length > 0, prefix.length <= request.prompt.count {
                // A prefix covering the whole prompt still re-feeds the last prompt token: the
                // first sampled token needs that position's hidden state, which the cache lacks.
                let keep = min(prefix.length, request.prompt.count - 1)
                let cache = prefix.copy(reserving: request.prompt.count - keep + request.parameters.maxTokens)
                cache.truncate(to: keep)
                caches.append(cache)
                pending.append(Array(request.prompt[keep...]))
            } else {
                caches.append(model.transformer.makeCache(capacity: request.prompt.count + request.parameters.maxTokens))
                pending.append(request.prompt)
            }
        }
        var samplers = requests.map { Sampler($0.parameters) }
        var decoders = requests.map { _ in StreamingDecoder(tokenizer: model.tokenizer) }
        var tokens = [[Int32]](repeating: [], count: requests.count)
        var texts = [String](repeating: "", count: requests.count)
        var finish = [FinishReason?](repeating: nil, count: requests.count)
        var stopped = [Int32?](repeating: nil, count: requests.count)
        // Text already streamed (held back while it might be the start of a stop string).
        var emitted = [Int](repeating: 0, count: requests.count)

        while true {
            let active = (0..<requests.count).filter { finish[$0] == nil }
            if active.isEmpty { break }
            let hidden = model.transformer.forward(active.map { SequenceInput(cache: caches[$0], tokens: pending[$0]) })
            // Gather each active sequence's last row: logits for those rows only.
            let last = Tensor(shape: [active.count, model.config.hidden])
            var row = 0
            for (k, s) in active.enumerated() {
                row += pending[s].count
                (last.data + k * model.config.hidden).update(from: hidden.row(row - 1), count: model.config.hidden)
            }
            let logits = model.head.logits(last.data, rows: active.count)
            // Each sequence's draw reads only its own logits row and sampler: the rows on all cores.
            var nexts = [Int32](repeating: 0, count: active.count)
            withExtendedLifetime((hidden, last, logits)) {
                samplers.withUnsafeMutableBufferPointer { samplers in
                    nexts.withUnsafeMutableBufferPointer { nexts in
                        Parallel.chunks(active.count) { range in
                            for k in range { nexts[k] = samplers[active[k]].sample(logits.data + k * vocab, count: vocab) }
                        }
                    }
                }
            }
            for (k, s) in active.enumerated() {
                let next = nexts[k]
                let parameters = requests[s].parameters
                if stopTokens.contains(next) && !parameters.ignoreEOS {
                    finish[s] = .endOfSequence
                    stopped[s] = next
                    texts[s] += decoders[s].flush()
                } else {
                    tokens[s].append(next)
                    texts[s] += decoders[s].append(next)
                    if let cut = Self.firstStop(in: texts[s], stops: parameters.stop) {
                        texts[s] = String(texts[s][..<cut])
                        finish[s] = .stopString
                    } else if tokens[s].count >= parameters.maxTokens {
                        texts[s] += decoders[s].flush()
                        finish[s] = .length
                    }
                }
                pending[s] = [next]
                if let onText {
                    let safe = finish[s] != nil ? texts[s].count : Self.safeLength(texts[s], stops: parameters.stop)
                    if safe > emitted[s] {
                        let start = texts[s].index(texts[s].startIndex, offsetBy: emitted[s])
                        let end = texts[s].index(texts[s].startIndex, offsetBy: safe)
                        onText(s, String(texts[s][start..<end]))
                        emitted[s] = safe
                    }
                }
            }
        }
        return (0..<requests.count).map {
            Generation(tokens: tokens[$0], text: texts[$0], finishReason: finish[$0]!, promptTokens: requests[$0].prompt.count,
                       stopToken: stopped[$0])
        }
    }

    /// Where the earliest stop string starts, if any occurs.
    static func firstStop(in text: String, stops: [String]) -> String.Index? {
        stops.compactMap { stop in stop.isEmpty ? nil : text.range(of: stop)?.lowerBound }.min()
    }

    /// Characters that can be shown without risking part of a stop string.
    static func safeLength(_ text: String, stops: [String]) -> Int {
        let longest = stops.map(\.count).max() ?? 0
        return max(0, text.count - max(0, longest - 1))
    }
}
