import Foundation
import ModelKit

/// A place in a configuration file: 1-based line and column, as editors count them.
public struct SourceLocation: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }
}

/// Every way a constitution, pipeline or prompt file can be wrong.
///
/// Each case carries the location and, where it applies, the key path (`stages[2].judge.orders`),
/// so the CLI can print `file:line:column: error: at stages[2].judge.orders: …`.
public enum ConfigError: LocalizedError, Sendable, Equatable {
    case fileNotFound(path: String, referencedFrom: SourceLocation?, keyPath: String?)
    case unreadable(path: String, reason: String)
    case emptyDocument(file: String)
    case invalidUTF8(file: String, byteOffset: Int, line: Int, column: Int)
    case syntax(SourceLocation, message: String)
    case tooDeep(SourceLocation, limit: Int)
    case aliasExpansion(SourceLocation, limit: Int)
    case multipleDocuments(SourceLocation)
    case typeMismatch(SourceLocation, keyPath: String, expected: String, found: String)
    case missingKey(SourceLocation, keyPath: String, key: String)
    case unknownKey(SourceLocation, keyPath: String, key: String, suggestion: String?)
    case duplicateKey(SourceLocation, keyPath: String, key: String, firstLine: Int)
    case invalidValue(SourceLocation, keyPath: String, message: String)
    case unsupportedVersion(SourceLocation, found: String, supported: Int)
    case jsonl(file: String, line: Int, byteOffset: Int, message: String)

    /// The location the error points at, when it has one.
    public var location: SourceLocation? {
        switch self {
        case .fileNotFound(_, let from, _): return from
        case .unreadable, .emptyDocument, .jsonl: return nil
        case .invalidUTF8(let file, _, let line, let column):
            return SourceLocation(file: file, line: line, column: column)
        case .syntax(let l, _), .tooDeep(let l, _), .aliasExpansion(let l, _), .multipleDocuments(let l),
             .typeMismatch(let l, _, _, _), .missingKey(let l, _, _), .unknownKey(let l, _, _, _),
             .duplicateKey(let l, _, _, _), .invalidValue(let l, _, _), .unsupportedVersion(let l, _, _):
            return l
        }
    }

    public var errorDescription: String? {
        switch self {
        case .fileNotFound(let path, let from, let keyPath):
            if let from {
                let at = keyPath.map { "at \($0): " } ?? ""
                return "\(from): error: \(at)file not found: \(path)"
            }
            return "\(path): error: file not found"
        case .unreadable(let path, let reason):
            return "\(path): error: cannot read file: \(reason)"
        case .emptyDocument(let file):
            return "\(file):1:1: error: the file is empty; expected a YAML mapping starting with `version: 1`"
        case .invalidUTF8(let file, let offset, let line, let column):
            return "\(file):\(line):\(column): error: invalid UTF-8 at byte offset \(offset); files must be UTF-8 text"
        case .syntax(let l, let message):
            return "\(l): error: YAML syntax: \(message)"
        case .tooDeep(let l, let limit):
            return "\(l): error: the document nests more than \(limit) levels deep"
        case .aliasExpansion(let l, let limit):
            return "\(l): error: aliases expand the document to more than \(limit) nodes (an alias bomb?)"
        case .multipleDocuments(let l):
            return "\(l): error: expected a single YAML document, found another one here"
        case .typeMismatch(let l, let keyPath, let expected, let found):
            return "\(l): error: at \(keyPath): expected \(expected), found \(found)"
        case .missingKey(let l, let keyPath, let key):
            return "\(l): error: at \(keyPath): missing required key `\(key)`"
        case .unknownKey(let l, let keyPath, let key, let suggestion):
            let hint = suggestion.map { "; did you mean `\($0)`?" } ?? ""
            return "\(l): error: at \(keyPath): unknown key `\(key)`\(hint)"
        case .duplicateKey(let l, let keyPath, let key, let firstLine):
            return "\(l): error: at \(keyPath): duplicate key `\(key)` (first given on line \(firstLine))"
        case .invalidValue(let l, let keyPath, let message):
            return "\(l): error: at \(keyPath): \(message)"
        case .unsupportedVersion(let l, let found, let supported):
            return "\(l): error: at version: unsupported version \(found); this precept reads version \(supported)"
        case .jsonl(let file, let line, let offset, let message):
            return "\(file):\(line): error: (byte offset \(offset)) \(message)"
        }
    }
}

/// The closest candidate within a small edit distance, for "did you mean" hints.
func closestMatch(to word: String, in candidates: [String]) -> String? {
    let scored = candidates.map { ($0, editDistance(word.lowercased(), $0.lowercased())) }
    guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
    let budget = max(2, word.count / 3)
    return best.1 <= budget ? best.0 : nil
}

/// Levenshtein distance (insert, delete, substitute all cost 1).
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}

/// Reads a file named by a configuration, as a `ConfigError` when it is missing or unreadable.
func readConfigFile(path: String, displayName: String) throws -> Data {
    switch FileKind.of(path) {
    case .regular: break
    case .missing: throw ConfigError.fileNotFound(path: displayName, referencedFrom: nil, keyPath: nil)
    case let kind: throw ConfigError.unreadable(path: displayName, reason: "it is \(kind.phrase), not a regular file")
    }
    do { return try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
        throw ConfigError.unreadable(path: displayName, reason: FileProblem.describe(error))
    }
}
