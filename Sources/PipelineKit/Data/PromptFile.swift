import Foundation
import ModelKit

/// One prompt read from a JSONL file.
public struct PromptRecord: Sendable, Equatable, Codable {
    /// Stable id: the `id_field` value, or `line-N`.
    public var id: String
    public var text: String
    /// 1-based line in the source file.
    public var line: Int
    /// The whole JSON object, for fields other stages read (e.g. `false_claim`).
    public var fields: [String: String]
    /// The principle tags of the prompt set it came from (a pipeline's `prompts[].tags`).
    public var tags: [String] = []
}

/// Reads prompt sets (`data/prompts/*.jsonl`): one JSON object per line, blank lines ignored.
public enum PromptFile {
    /// Parses every line; errors name the file, line and byte offset.
    public static func read(path: String, field: String = "prompt", idField: String? = nil,
                            limit: Int? = nil, displayName: String? = nil) throws -> [PromptRecord] {
        let name = displayName ?? path
        var records: [PromptRecord] = []
        var seen: [String: Int] = [:]
        try JSONLines.forEachObject(path: path, displayName: name) { lineNumber, dict, fail in
            guard let value = dict[field] else {
                let hint = closestMatch(to: field, in: Array(dict.keys)).map { "; did you mean `\($0)`?" } ?? ""
                throw fail("missing field `\(field)`\(hint)")
            }
            guard let text = value as? String, !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw fail("field `\(field)` must be a non-empty string")
            }
            var id = "line-\(lineNumber)"
            if let idField {
                guard let raw = dict[idField] else { throw fail("missing id field `\(idField)`") }
                if let s = raw as? String { id = s } else if let n = raw as? NSNumber { id = n.stringValue } else {
                    throw fail("id field `\(idField)` must be a string or number")
                }
            }
            if let first = seen[id] { throw fail("duplicate id `\(id)` (first on line \(first))") }
            seen[id] = lineNumber
            var fields: [String: String] = [:]
            for (k, v) in dict {
                if let s = v as? String { fields[k] = s } else if let n = v as? NSNumber { fields[k] = n.stringValue }
            }
            records.append(PromptRecord(id: id, text: text, line: lineNumber, fields: fields))
            if let limit, records.count >= limit { return false }
            return true
        }
        return records
    }
}

/// The line loop of the JSONL readers: each non-blank line parsed as a JSON object, with errors
/// that name the file, line and byte offset.
enum JSONLines {
    /// Calls `body(line, object, fail)` per object line until it returns false; `fail(message)`
    /// makes the error for that line.
    static func forEachObject(path: String, displayName: String,
                              _ body: (Int, [String: Any], (String) -> ConfigError) throws -> Bool) throws {
        let bytes = [UInt8](try readConfigFile(path: path, displayName: displayName))
        var lineStart = 0
        var lineNumber = 0
        while lineStart < bytes.count {
            lineNumber += 1
            let lineEnd = bytes[lineStart...].firstIndex(of: 0x0A) ?? bytes.count
            defer { lineStart = lineEnd + 1 }
            let lineBytes = Array(bytes[lineStart..<lineEnd])
            if lineBytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            let (line, start) = (lineNumber, lineStart)
            func fail(_ message: String) -> ConfigError { .jsonl(file: displayName, line: line, byteOffset: start, message: message) }
            if let bad = YAMLDocument.firstInvalidUTF8(lineBytes) {
                throw ConfigError.jsonl(file: displayName, line: line, byteOffset: start + bad, message: "invalid UTF-8")
            }
            let object: Any
            do { object = try JSONSerialization.jsonObject(with: Data(lineBytes)) } catch {
                // A short escaped excerpt only: the file may be one that should not be echoed.
                throw fail("not valid JSON (the line starts \"\(TerminalText.excerpt(String(decoding: lineBytes, as: UTF8.self)))\")")
            }
            guard let dict = object as? [String: Any] else { throw fail("expected a JSON object on each line") }
            if try !body(line, dict, fail) { return }
        }
    }
}
