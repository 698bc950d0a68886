import Foundation
import ModelKit
import TrainKit

/// A prompt and the response to imitate, as text.
public struct SFTText: Sendable, Equatable {
    public var id: String
    public var prompt: String
    public var response: String
}

/// A preference pair as text; `probability` is P(chosen ≻ rejected).
public struct PreferenceText: Sendable, Equatable {
    public var id: String
    public var prompt: String
    public var chosen: String
    public var rejected: String
    public var probability: Double
}

/// Errors reading a training data file: file, line and key.
public enum TrainingDataError: LocalizedError, Equatable {
    case cannotRead(path: String, reason: String)
    case invalid(path: String, line: Int, key: String?, message: String)
    case empty(path: String)

    public var errorDescription: String? {
        switch self {
        case .cannotRead(let path, let reason): "\(path): cannot read: \(reason)"
        case .invalid(let path, let line, let key, let message):
            "\(path):\(line): error: " + (key.map { "at key `\($0)`: " } ?? "") + message
        case .empty(let path): "\(path): no examples (the file has no JSON lines)"
        }
    }
}

/// Training examples from a run store or from JSONL files, and their tokenisation.
public enum TrainingData {
    /// Preference pairs of a judge stage, chosen as its export chooses them (`PreferencePair.select`)
    /// but without pairs of two identical sides: the preferred response is `chosen`, with its soft
    /// label; with `gate`, only pairs that endorse their revision. Human verdicts replace the judge's labels where they exist (`HumanOverride`).
    /// Ids are record ids, so every pair of a record lands in the same split.
    public static func preferences(judge: String, store: RunStore, gate: Bool = false,
                                   revisionStage: String? = nil) throws -> (pairs: [PreferenceText], skipped: Int) {
        let prompts = Dictionary(uniqueKeysWithValues: try store.records().map { ($0.id, $0.prompt) })
        let labels = try HumanOverride.labels(try JudgeStage.labels(stage: judge, store: store), judge: judge,
                                              revisionStage: revisionStage, store: store).labels
        let (pairs, skipped) = PreferencePair.select(labels, prompts: prompts, gate: gate, forTraining: true)
        return (pairs.map { PreferenceText(id: $0.row.record, prompt: $0.prompt, chosen: $0.chosen, rejected: $0.rejected, probability: $0.probability) },
                skipped)
    }

    /// SFT texts of chains (empty revisions left out).
    public static func revisions(_ chains: [RevisionChain]) -> [SFTText] {
        chains.compactMap { c in c.revision.isEmpty ? nil : SFTText(id: c.record, prompt: c.prompt, response: c.revision) }
    }

    /// Reads preference pairs from JSONL: `prompt` (text or a list of messages), `chosen` and
    /// `rejected` (text or messages, the last assistant turn is used), optional `judge_probability`
    /// and `id` / `record_id`. Our TRL and OpenRLHF exports and TRL's standard format all read.
    public static func readPreferences(path: String) throws -> [PreferenceText] {
        try readLines(path: path) { object, line in
            let prompt = try text(object, "prompt", path: path, line: line, role: "user")
            let chosen = try text(object, "chosen", path: path, line: line, role: "assistant")
            let rejected = try text(object, "rejected", path: path, line: line, role: "assistant")
            var p = 1.0
            if let v = object["judge_probability"] {
                guard let n = (v as? NSNumber)?.doubleValue, n >= 0, n <= 1 else {
                    throw TrainingDataError.invalid(path: path, line: line, key: "judge_probability", message: "expected a number in 0...1")
                }
                p = n
            }
            let id = (object["record_id"] as? String) ?? (object["id"] as? String) ?? "line-\(line)"
            return PreferenceText(id: id, prompt: prompt, chosen: chosen, rejected: rejected, probability: p)
        }
    }

    /// Reads SFT examples from JSONL: `prompt` + `completion` (or `response`), or `messages`
    /// (the last assistant turn is the response, the user turn before it the prompt).
    public static func readSFT(path: String) throws -> [SFTText] {
        try readLines(path: path) { object, line in
            let id = (object["record_id"] as? String) ?? (object["id"] as? String) ?? "line-\(line)"
            if object["messages"] != nil {
                let messages = try messageList(object["messages"], key: "messages", path: path, line: line)
                guard let last = messages.lastIndex(where: { $0.role == "assistant" }),
                      let user = messages[..<last].lastIndex(where: { $0.role == "user" }) else {
                    throw TrainingDataError.invalid(path: path, line: line, key: "messages", message: "needs a user turn followed by an assistant turn")
                }
                return SFTText(id: id, prompt: messages[user].content, response: messages[last].content)
            }
            let responseKey = object["completion"] != nil ? "completion" : "response"
            return SFTText(id: id, prompt: try text(object, "prompt", path: path, line: line, role: "user"),
                           response: try text(object, responseKey, path: path, line: line, role: "assistant"))
        }
    }

    private static func readLines<T>(path: String, _ parse: ([String: Any], Int) throws -> T) throws -> [T] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw TrainingDataError.cannotRead(path: path, reason: error.localizedDescription)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TrainingDataError.invalid(path: path, line: 1, key: nil, message: "the file is not UTF-8 text")
        }
        var out: [T] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(trimmed.utf8))) as? [String: Any] else {
                throw TrainingDataError.invalid(path: path, line: i + 1, key: nil, message: "not a JSON object")
            }
            out.append(try parse(object, i + 1))
        }
        if out.isEmpty { throw TrainingDataError.empty(path: path) }
        return out
    }

    private static func messageList(_ value: Any?, key: String, path: String, line: Int) throws -> [(role: String, content: String)] {
        guard let list = value as? [[String: Any]] else {
            throw TrainingDataError.invalid(path: path, line: line, key: key, message: "expected text or a list of {role, content} messages")
        }
        return try list.map {
            guard let role = $0["role"] as? String, let content = $0["content"] as? String else {
                throw TrainingDataError.invalid(path: path, line: line, key: key, message: "every message needs string `role` and `content`")
            }
            return (role, content)
        }
    }

    /// A field as text: a string, or the last message with `role` in a message list.
    private static func text(_ object: [String: Any], _ key: String, path: String, line: Int, role: String) throws -> String {
        guard let value = object[key] else { throw TrainingDataError.invalid(path: path, line: line, key: key, message: "missing") }
        if let s = value as? String { return s }
        let messages = try messageList(value, key: key, path: path, line: line)
        guard let m = messages.last(where: { $0.role == role }) ?? messages.last else {
            throw TrainingDataError.invalid(path: path, line: line, key: key, message: "empty message list")
        }
        return m.content
    }
}

/// Turns text examples into token ids the way the policy is prompted when it generates, so
/// training sees exactly the prompts the pipeline uses (completion transcript or chat template).
public struct TrainingTokenizer {
    public let model: LanguageModel
    public let style: PromptStyle
    public let system: String?
    public let maxLength: Int

    public init(model: LanguageModel, style: PromptStyle, system: String?, maxLength: Int) {
        self.model = model
        self.style = style
        self.system = system
        self.maxLength = maxLength
    }

    public func prompt(_ text: String) -> [Int32] {
        switch CAIPrompts.response(prompt: text, system: system, style: style) {
        case .text(let t): return model.tokenizer.encode(t, addBOS: nil, parseSpecial: false)
        case .chat(let messages):
            return model.encodeChat(messages)
                ?? model.tokenizer.encode(messages.map(\.content).joined(separator: "\n\n"), addBOS: nil, parseSpecial: false)
        }
    }

    /// A response as the model would continue the prompt: after a transcript's "Assistant:" the
    /// text starts with a space.
    public func response(_ text: String, endOfSequence: Bool) -> [Int32] {
        var ids = model.tokenizer.encode(style == .completion ? " " + text : text, addBOS: false, parseSpecial: false)
        if endOfSequence, let eos = model.tokenizer.vocabulary.eos { ids.append(eos) }
        return ids
    }

    public func sft(_ e: SFTText) -> SFTExample {
        let (p, r) = truncate(prompt: prompt(e.prompt), response: response(e.response, endOfSequence: true), maxLength: maxLength)
        return SFTExample(id: e.id, prompt: p, response: r)
    }

    public func preference(_ e: PreferenceText) -> PreferenceExample {
        let p = prompt(e.prompt)
        let (pc, c) = truncate(prompt: p, response: response(e.chosen, endOfSequence: false), maxLength: maxLength)
        let (pr, r) = truncate(prompt: p, response: response(e.rejected, endOfSequence: false), maxLength: maxLength)
        // Both responses must follow the same prompt tokens: keep the shorter prompt cut for both.
        let shared = pc.count <= pr.count ? pc : pr
        return PreferenceExample(id: e.id, prompt: shared, chosen: Array(c.prefix(maxLength - shared.count)),
                                 rejected: Array(r.prefix(maxLength - shared.count)), probability: e.probability)
    }
}
