import ArgumentParser
import Foundation
import ModelKit

extension Precept {
    struct Tokenize: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the token ids of a text (BOS as the model's metadata says, special-token text parsed).")

        @OptionGroup var model: ModelOption
        @Option(name: .shortAndLong, help: "The text to tokenize.") var text: String
        @Flag(help: "Print {\"ids\": [...]}.") var json = false
        @Flag(name: .customLong("no-bos"), help: "Do not add BOS.") var noBOS = false
        @Flag(name: .customLong("no-special"), help: "Treat special-token text as plain text.") var noSpecial = false

        func run() throws {
            try running {
                let file = try GGUFFile(path: try model.resolve().path)
                let tokenizer = try GGUFTokenizer(file: file)
                let ids = tokenizer.encode(text, addBOS: noBOS ? false : nil, parseSpecial: !noSpecial)
                if json {
                    try printJSON(["ids": ids.map(Int.init)])
                } else {
                    for id in ids { print("\(id)\t\(tokenizer.decode([id]).debugDescription)") }
                }
            }
        }
    }

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Continue a prompt, streaming tokens as they come.")

        @OptionGroup var model: ModelOption
        @Option(name: .shortAndLong, help: "The prompt.") var prompt: String
        @Flag(help: "Wrap the prompt in the model's chat template as a user turn.") var chat = false
        @Option(help: "System prompt (with --chat).") var system: String?
        @Option(help: "Tokens to generate at most.") var maxTokens = 128
        @Option(help: "0 is greedy.") var temperature: Float = 0
        @Option(help: "Keep the k most likely tokens (0: off).") var topK = 0
        @Option(help: "Nucleus sampling mass (1: off).") var topP: Float = 1
        @Option(help: "Drop tokens below this fraction of the most likely (0: off).") var minP: Float = 0
        @Option(help: "Sampling seed.") var seed: UInt64 = 0
        @Option(help: "Stop before this string (repeatable).") var stop: [String] = []

        func run() throws {
            try running {
                let lm = try model.load()
                let ids: [Int32]
                if chat {
                    var messages: [ChatMessage] = []
                    if let system { messages.append(.system(system)) }
                    messages.append(.user(prompt))
                    guard let encoded = lm.encodeChat(messages) else {
                        throw ValidationError("\(model.model) has no chat template; drop --chat to use a plain prompt")
                    }
                    ids = encoded
                } else {
                    ids = lm.tokenizer.encode(prompt, addBOS: nil, parseSpecial: true)
                }
                let parameters = SamplingParameters(temperature: temperature, topK: topK, topP: topP, minP: minP,
                                                    seed: seed, maxTokens: maxTokens, stop: stop)
                let start = Date()
                let result = Generator(model: lm).generate([GenerationRequest(prompt: ids, parameters: parameters)]) { _, text in
                    FileHandle.standardOutput.write(Data(text.utf8))
                }[0]
                print("")
                let seconds = Date().timeIntervalSince(start)
                note(String(format: "[%d prompt + %d generated tokens, %.2f s, %.1f tokens/s, finish: %@]",
                            ids.count, result.tokens.count, seconds, Double(result.tokens.count) / seconds,
                            result.finishReason.rawValue))
            }
        }
    }

    struct Score: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Log-probabilities of a continuation after a prompt.")

        @OptionGroup var model: ModelOption
        @Option(name: .shortAndLong, help: "The prompt (BOS added as the model's metadata says).") var prompt: String
        @Option(name: .shortAndLong, help: "The continuation to score.") var continuation: String
        @Option(help: "Alternatives to list per position.") var topK = 0
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            try running {
                let lm = try model.load()
                let promptIDs = lm.tokenizer.encode(prompt, addBOS: nil, parseSpecial: true)
                let continuationIDs = lm.tokenizer.encode(continuation, addBOS: false, parseSpecial: true)
                guard !continuationIDs.isEmpty else { throw ValidationError("the continuation has no tokens") }
                let score = Scorer(model: lm).score([ScoringRequest(prompt: promptIDs, continuation: continuationIDs)], topK: topK)[0]
                if json {
                    try printJSON([
                        "prompt_ids": promptIDs.map(Int.init),
                        "continuation_ids": continuationIDs.map(Int.init),
                        "token_logprobs": score.tokenLogProbs.map(Double.init),
                        "sum_logprob": Double(score.sum),
                        "top": score.positions.map { p in p.top.map { [Int($0.id), Double($0.logit)] as [Any] } },
                    ])
                } else {
                    for (id, lp) in zip(continuationIDs, score.tokenLogProbs) {
                        print(String(format: "%8d  %-20@ %9.4f", id, lm.tokenizer.decode([id]).debugDescription as NSString, lp))
                    }
                    print(String(format: "sum log p = %.4f over %d tokens", score.sum, continuationIDs.count))
                }
            }
        }
    }

    struct Logits: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Top-k logits and log-sum-exp at every position of a text (the reference files' shape).")

        @OptionGroup var model: ModelOption
        @Option(name: .shortAndLong, help: "The text (BOS added as the model's metadata says, special tokens parsed).") var text: String
        @Option(help: "Entries per position.") var topK = 20
        @Flag(help: "Print JSON (the default output is a table).") var json = false

        func run() throws {
            try running {
                let lm = try model.load()
                let ids = lm.tokenizer.encode(text, addBOS: nil, parseSpecial: true)
                guard !ids.isEmpty else { throw ValidationError("the text has no tokens") }
                let hidden = lm.transformer.forward([SequenceInput(cache: lm.transformer.makeCache(), tokens: ids)])
                let scores = withExtendedLifetime(hidden) {
                    lm.head.score(hidden.data, rows: ids.count, targets: [Int32?](repeating: nil, count: ids.count), topK: topK)
                }
                if json {
                    try printJSON([
                        "ids": ids.map(Int.init),
                        "positions": scores.map { s in
                            ["top": s.top.map { [Int($0.id), Double($0.logit)] as [Any] }, "logsumexp": Double(s.logSumExp)] as [String: Any]
                        },
                    ])
                } else {
                    for (p, s) in scores.enumerated() {
                        let top = s.top.prefix(5).map { String(format: "%@ %.3f", lm.tokenizer.decode([$0.id]).debugDescription, $0.logit) }
                        print(String(format: "%4d %8d  lse %.3f  ", p, ids[p], s.logSumExp) + top.joined(separator: ", "))
                    }
                }
            }
        }
    }
}
