import Foundation
import ModelKit

/// A YAML node together with its key path and file, with typed accessors that throw
/// `ConfigError`s naming both. Configuration types decode themselves through it.
public struct NodeReader {
    public let node: YAMLNode
    /// Dotted path from the document root, e.g. `stages[2].judge.orders`.
    public let path: String
    public let file: String

    public init(node: YAMLNode, path: String, file: String) {
        self.node = node
        self.path = path
        self.file = file
    }

    public var location: SourceLocation { SourceLocation(file: file, line: node.line, column: node.column) }

    func mismatch(_ expected: String) -> ConfigError {
        .typeMismatch(location, keyPath: displayPath, expected: expected, found: foundDescription)
    }

    func invalid(_ message: String) -> ConfigError {
        .invalidValue(location, keyPath: displayPath, message: message)
    }

    var displayPath: String { path.isEmpty ? "(document)" : path }

    private var foundDescription: String {
        // A whole document that is one scalar is a file that is not YAML at all: quote none of it
        // (it may be a file that should not be echoed); elsewhere a short escaped excerpt.
        if case .scalar(let text, _, _) = node.kind, !path.isEmpty {
            return "\(node.typeName) '\(TerminalText.excerpt(text, limit: 40))'"
        }
        return node.typeName
    }

    private var scalar: (text: String, plain: Bool, tag: String?)? {
        if case .scalar(let text, let plain, let tag) = node.kind { return (text, plain, tag) }
        return nil
    }

    /// True for `~`, `null` and an empty value.
    public var isNull: Bool {
        guard let s = scalar, s.plain, s.tag == nil else { return false }
        return YAMLScalar.resolve(s.text) == .null
    }

    public func string() throws -> String {
        guard let s = scalar else { throw mismatch("a string") }
        if s.plain && s.tag == nil {
            switch YAMLScalar.resolve(s.text) {
            case .string(let text): return text
            case .null: throw mismatch("a string")
            default: throw mismatch("a string (quote it to use \"\(s.text)\" as text)")
            }
        }
        return s.text
    }

    /// A non-empty string after trimming whitespace.
    public func text() throws -> String {
        let value = try string()
        guard !value.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw invalid("must not be empty")
        }
        return value
    }

    public func int() throws -> Int {
        guard let s = scalar, s.plain, case .int(let value) = YAMLScalar.resolve(s.text) else {
            throw mismatch("an integer")
        }
        return value
    }

    public func int(in range: ClosedRange<Int>) throws -> Int {
        let value = try int()
        guard range.contains(value) else {
            throw invalid("\(value) is out of range; expected \(range.lowerBound)…\(range.upperBound)")
        }
        return value
    }

    public func double() throws -> Double {
        guard let s = scalar, s.plain else { throw mismatch("a number") }
        switch YAMLScalar.resolve(s.text) {
        case .int(let value): return Double(value)
        case .double(let value) where value.isFinite: return value
        default: throw mismatch("a number")
        }
    }

    public func double(in range: ClosedRange<Double>) throws -> Double {
        let value = try double()
        guard range.contains(value) else {
            throw invalid("\(value) is out of range; expected \(range.lowerBound)…\(range.upperBound)")
        }
        return value
    }

    public func bool() throws -> Bool {
        guard let s = scalar, s.plain, case .bool(let value) = YAMLScalar.resolve(s.text) else {
            throw mismatch("true or false")
        }
        return value
    }

    /// One of a fixed set of words, with a "did you mean" for near misses.
    public func oneOf<T: RawRepresentable & CaseIterable>(_ type: T.Type) throws -> T where T.RawValue == String {
        try oneOf(T.allCases.map { ($0.rawValue, $0) })
    }

    /// One of these words, each standing for a value; an error lists the words in this order.
    public func oneOf<T>(_ choices: [(word: String, value: T)]) throws -> T {
        let word = try string()
        if let choice = choices.first(where: { $0.word == word }) { return choice.value }
        let names = choices.map(\.word)
        let hint = closestMatch(to: word, in: names).map { "; did you mean `\($0)`?" } ?? ""
        throw invalid("`\(word)` is not one of \(names.joined(separator: ", "))\(hint)")
    }

    public func list() throws -> [NodeReader] {
        guard case .sequence(let items) = node.kind else { throw mismatch("a list") }
        return items.enumerated().map { NodeReader(node: $1, path: "\(path)[\($0)]", file: file) }
    }

    /// The items of a list, or this node alone when it is not a list; an empty list is an error
    /// with `message`.
    func oneOrList(empty message: String) throws -> [NodeReader] {
        guard case .sequence = node.kind else { return [self] }
        let items = try list()
        if items.isEmpty { throw invalid(message) }
        return items
    }

    public func stringList() throws -> [String] {
        try list().map { try $0.text() }
    }

    /// Opens the node as a mapping whose keys must come from `allowed`.
    public func mapping(allowed: [String]) throws -> MappingReader {
        try MappingReader(self, allowed: allowed)
    }
}

/// A mapping's entries by key, after checking for unknown and duplicate keys.
public struct MappingReader {
    public let reader: NodeReader
    private var entries: [String: (key: YAMLNode, value: YAMLNode)] = [:]
    /// Keys in document order.
    public private(set) var keys: [String] = []

    init(_ reader: NodeReader, allowed: [String]) throws {
        self.reader = reader
        guard case .mapping(let pairs) = reader.node.kind else { throw reader.mismatch("a mapping") }
        for (keyNode, value) in pairs {
            let keyReader = NodeReader(node: keyNode, path: reader.path, file: reader.file)
            guard case .scalar(let key, _, _) = keyNode.kind else {
                throw ConfigError.typeMismatch(keyReader.location, keyPath: reader.displayPath,
                                               expected: "a plain key", found: keyNode.typeName)
            }
            if let first = entries[key] {
                throw ConfigError.duplicateKey(keyReader.location, keyPath: reader.displayPath,
                                               key: key, firstLine: first.key.line)
            }
            guard allowed.contains(key) else {
                throw ConfigError.unknownKey(keyReader.location, keyPath: reader.displayPath, key: key,
                                             suggestion: closestMatch(to: key, in: allowed))
            }
            entries[key] = (keyNode, value)
            keys.append(key)
        }
    }

    private func childPath(_ key: String) -> String {
        reader.path.isEmpty ? key : "\(reader.path).\(key)"
    }

    /// The value at `key`, or nil when absent or null.
    public subscript(key: String) -> NodeReader? {
        guard let entry = entries[key] else { return nil }
        let child = NodeReader(node: entry.value, path: childPath(key), file: reader.file)
        return child.isNull ? nil : child
    }

    public func has(_ key: String) -> Bool { self[key] != nil }

    /// The value at `key`, or a `missingKey` error pointing at this mapping.
    public func require(_ key: String) throws -> NodeReader {
        guard let child = self[key] else {
            throw ConfigError.missingKey(reader.location, keyPath: reader.displayPath, key: key)
        }
        return child
    }

    /// An `invalidValue` error pointing at `key`'s entry.
    public func invalid(_ key: String, _ message: String) -> ConfigError {
        .invalidValue(keyLocation(key), keyPath: childPath(key), message: message)
    }

    /// Location of the key itself (for errors about the entry as a whole).
    public func keyLocation(_ key: String) -> SourceLocation {
        guard let entry = entries[key] else { return reader.location }
        return SourceLocation(file: reader.file, line: entry.key.line, column: entry.key.column)
    }
}

extension NodeReader {
    /// The value at `key` if this node is a mapping that has it, without any checks
    /// (used after decoding, to point errors at a specific entry).
    func child(_ key: String) -> NodeReader? {
        guard case .mapping(let pairs) = node.kind else { return nil }
        for (k, v) in pairs {
            if case .scalar(let text, _, _) = k.kind, text == key {
                return NodeReader(node: v, path: path.isEmpty ? key : "\(path).\(key)", file: file)
            }
        }
        return nil
    }
}
