import Foundation

/// One row of a pairs file: a prompt, two responses and, when known, which is better.
public struct PairRow {
    /// 1-based line in the file.
    public var line: Int
    /// The `id` field, or `line-N`: keys the seeded principle draw.
    public var id: String
    public var prompt: String
    public var responseA: String
    public var responseB: String
    /// The gold label, `a` or `b`, when the row has one.
    public var better: String?
    public var category: String?
    /// The row as read, every field passed through to the output.
    public var object: [String: Any]
}

/// Reads the pairs files of `precept judge` and of a judge stage's `calibration:`. Rows are
/// `prompt`, `response_a`, `response_b` (other fields kept), or TRL preference rows
/// (`prompt`/`chosen`/`rejected`, strings or conversations): chosen becomes response a, and the
/// row's own preference counts as gold (`better: a`) unless the row says otherwise.
public enum PairsFile {
    public static func read(path: String, requireGold: Bool = false) throws -> [PairRow] {
        var rows: [PairRow] = []
        var seen: [String: Int] = [:]
        var lastLine = 0
        try JSONLines.forEachObject(path: path, displayName: path) { lineNumber, dict, fail in
            lastLine = lineNumber
            let trl = dict["response_a"] == nil && dict["chosen"] != nil
            func text(_ key: String) throws -> String {
                guard let value = dict[key] else {
                    throw fail(trl ? "missing key `\(key)` (TRL rows need prompt, chosen and rejected)"
                                   : "missing key `\(key)` (rows need prompt, response_a and response_b, or TRL's prompt, chosen and rejected)")
                }
                guard let s = conversationText(value, isPrompt: key == "prompt"),
                      !s.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                    throw fail("key `\(key)`: expected a non-empty string or a list of {role, content} messages")
                }
                return s
            }
            let prompt = try text("prompt")
            let a = try text(trl ? "chosen" : "response_a")
            let b = try text(trl ? "rejected" : "response_b")
            var better: String? = trl ? "a" : nil
            if let raw = dict["better"] {
                guard let s = raw as? String, s == "a" || s == "b" else { throw fail("key `better`: expected \"a\" or \"b\"") }
                better = s
            }
            if requireGold && better == nil { throw fail("missing key `better` (a calibration file needs the better response, \"a\" or \"b\")") }
            var category: String?
            if let raw = dict["category"] {
                guard let s = raw as? String else { throw fail("key `category`: expected a string") }
                category = s
            }
            var id = "line-\(lineNumber)"
            if let raw = dict["id"] {
                if let s = raw as? String { id = s } else if let n = raw as? NSNumber { id = n.stringValue } else {
                    throw fail("key `id`: expected a string or number")
                }
            }
            if let first = seen[id] { throw fail("key `id`: duplicate id `\(id)` (first on line \(first))") }
            seen[id] = lineNumber
            rows.append(PairRow(line: lineNumber, id: id, prompt: prompt, responseA: a, responseB: b, better: better,
                                category: category, object: dict))
            return true
        }
        if rows.isEmpty { throw ConfigError.jsonl(file: path, line: max(lastLine, 1), byteOffset: 0, message: "no pairs in the file") }
        return rows
    }

    /// A string, or a conversation: the prompt's turns as "Role: content" (a lone user turn as its
    /// content), a response's last assistant turn.
    static func conversationText(_ value: Any, isPrompt: Bool) -> String? {
        if let s = value as? String { return s }
        guard let list = value as? [[String: Any]], !list.isEmpty else { return nil }
        var turns: [(role: String, content: String)] = []
        for message in list {
            guard let role = message["role"] as? String, let content = message["content"] as? String else { return nil }
            turns.append((role, content))
        }
        if !isPrompt { return turns.last(where: { $0.role == "assistant" })?.content ?? turns.last?.content }
        if turns.count == 1 { return turns[0].content }
        return turns.map { "\($0.role.prefix(1).uppercased() + $0.role.dropFirst()): \($0.content)" }.joined(separator: "\n\n")
    }
}
