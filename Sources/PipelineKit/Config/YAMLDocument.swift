import CYaml
import Foundation

/// A YAML node that remembers where it came from.
///
/// Built from LibYAML's event stream (the copy Yams embeds) rather than Yams' composer, because
/// the composer recurses once per nesting level and hashes whole keys: a deeply nested or
/// alias-bomb document would exhaust the stack or the CPU. Here nesting depth and the size of
/// the document with every alias expanded are bounded while parsing, and an alias shares its
/// anchor's node instead of copying it.
public final class YAMLNode: @unchecked Sendable {
    public enum Kind {
        /// A scalar's text; `plain` is false for quoted and block scalars, which are always strings.
        case scalar(String, plain: Bool, tag: String?)
        case sequence([YAMLNode])
        case mapping([(key: YAMLNode, value: YAMLNode)])
    }

    public fileprivate(set) var kind: Kind
    /// 1-based line and column of the node's first character.
    public let line: Int
    public let column: Int
    /// Nodes in this subtree with aliases expanded (for the expansion budget).
    fileprivate var expandedSize: Int = 1
    /// Levels below this node (for the depth budget when an alias is reused deeper).
    fileprivate var height: Int = 0

    init(kind: Kind, line: Int, column: Int) {
        self.kind = kind
        self.line = line
        self.column = column
    }

    /// A short description of the node's type, for "expected X, found Y" messages.
    public var typeName: String {
        switch kind {
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        case .scalar(let text, let plain, _):
            guard plain else { return "a string" }
            switch YAMLScalar.resolve(text) {
            case .null: return "null"
            case .bool: return "a boolean"
            case .int: return "an integer"
            case .double: return "a number"
            case .string: return "a string"
            }
        }
    }
}

/// Core-schema resolution of plain scalars (YAML 1.2 §10.3.2).
enum YAMLScalar: Equatable {
    case null, bool(Bool), int(Int), double(Double), string(String)

    static func resolve(_ text: String) -> YAMLScalar {
        switch text {
        case "", "~", "null", "Null", "NULL": return .null
        case "true", "True", "TRUE": return .bool(true)
        case "false", "False", "FALSE": return .bool(false)
        case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF": return .double(.infinity)
        case "-.inf", "-.Inf", "-.INF": return .double(-.infinity)
        case ".nan", ".NaN", ".NAN": return .double(.nan)
        default: break
        }
        if let value = Int(text) { return .int(value) }
        if text.hasPrefix("0x"), let value = Int(text.dropFirst(2), radix: 16) { return .int(value) }
        if text.hasPrefix("0o"), let value = Int(text.dropFirst(2), radix: 8) { return .int(value) }
        let numeric = text.allSatisfy { "0123456789.eE+-".contains($0) } && text.contains(where: \.isNumber)
        if numeric, let value = Double(text) { return .double(value) }
        return .string(text)
    }
}

/// Parses YAML text into a single located root node.
public enum YAMLDocument {
    /// Nesting deeper than this is rejected (pipelines and constitutions need fewer than 10).
    public static let maxDepth = 64
    /// Nodes after alias expansion; far above any real configuration file.
    public static let maxExpandedNodes = 200_000

    /// Reads and parses a file; `displayName` is what error messages call it.
    public static func load(path: String, displayName: String? = nil) throws -> YAMLNode {
        let name = displayName ?? path
        return try parse(data: try readConfigFile(path: path, displayName: name), file: name)
    }

    /// Parses bytes: checks UTF-8 first (naming the byte offset), then YAML.
    public static func parse(data: Data, file: String) throws -> YAMLNode {
        let bytes = [UInt8](data)
        if let bad = firstInvalidUTF8(bytes) {
            let (line, column) = lineAndColumn(of: bad, in: bytes)
            throw ConfigError.invalidUTF8(file: file, byteOffset: bad, line: line, column: column)
        }
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            throw ConfigError.emptyDocument(file: file)
        }
        return try bytes.withUnsafeBufferPointer { buffer in
            var builder = Builder(file: file)
            return try builder.run(buffer)
        }
    }

    /// Byte offset of the first byte that does not belong to a valid UTF-8 sequence.
    static func firstInvalidUTF8(_ bytes: [UInt8]) -> Int? {
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            let length: Int
            switch b {
            case 0x00...0x7F: length = 1
            case 0xC2...0xDF: length = 2
            case 0xE0...0xEF: length = 3
            case 0xF0...0xF4: length = 4
            default: return i
            }
            if i + length > bytes.count { return i }
            for k in 1..<length where bytes[i + k] & 0xC0 != 0x80 { return i + k }
            // Overlong and surrogate forms (RFC 3629 table).
            if length == 3 {
                let b1 = bytes[i + 1]
                if (b == 0xE0 && b1 < 0xA0) || (b == 0xED && b1 > 0x9F) { return i }
            } else if length == 4 {
                let b1 = bytes[i + 1]
                if (b == 0xF0 && b1 < 0x90) || (b == 0xF4 && b1 > 0x8F) { return i }
            }
            i += length
        }
        return nil
    }

    static func lineAndColumn(of offset: Int, in bytes: [UInt8]) -> (Int, Int) {
        var line = 1, column = 1
        for b in bytes[..<min(offset, bytes.count)] {
            if b == 0x0A { line += 1; column = 1 } else { column += 1 }
        }
        return (line, column)
    }
}

/// Turns LibYAML events into nodes with an explicit stack (no recursion).
private struct Builder {
    let file: String
    var anchors: [String: YAMLNode] = [:]

    private struct Frame {
        let node: YAMLNode
        let anchor: String?
        var items: [YAMLNode] = []
    }

    init(file: String) { self.file = file }

    mutating func run(_ buffer: UnsafeBufferPointer<UInt8>) throws -> YAMLNode {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw ConfigError.unreadable(path: file, reason: "LibYAML could not initialise")
        }
        defer { yaml_parser_delete(&parser) }
        // LibYAML's own guard against runaway flow nesting; ours (maxDepth) covers block nesting.
        yaml_set_max_nest_level(Int32(YAMLDocument.maxDepth + 1))
        yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)

        var stack: [Frame] = []
        var root: YAMLNode?
        var documents = 0
        while true {
            var event = yaml_event_t()
            guard yaml_parser_parse(&parser, &event) == 1 else {
                throw syntaxError(parser, buffer)
            }
            defer { yaml_event_delete(&event) }
            let line = Int(event.start_mark.line) + 1
            let column = Int(event.start_mark.column) + 1
            let here = SourceLocation(file: file, line: line, column: column)

            switch event.type {
            case YAML_STREAM_END_EVENT:
                guard let root else { throw ConfigError.emptyDocument(file: file) }
                return root
            case YAML_DOCUMENT_START_EVENT:
                documents += 1
                if documents > 1 {
                    // The start mark sits where the previous document ended; the end mark is at `---`.
                    throw ConfigError.multipleDocuments(SourceLocation(
                        file: file, line: Int(event.end_mark.line) + 1, column: Int(event.end_mark.column) + 1))
                }
                anchors.removeAll()
            case YAML_SCALAR_EVENT:
                let s = event.data.scalar
                let text = string(s.value, length: s.length)
                let tag = s.tag.map { String(cString: $0) }
                let node = YAMLNode(kind: .scalar(text, plain: s.style == YAML_PLAIN_SCALAR_STYLE, tag: tag),
                                    line: line, column: column)
                if let anchor = s.anchor { anchors[String(cString: anchor)] = node }
                try attach(node, to: &stack, root: &root, at: here)
            case YAML_ALIAS_EVENT:
                let name = event.data.alias.anchor.map { String(cString: $0) } ?? ""
                guard let target = anchors[name] else {
                    throw ConfigError.syntax(here, message: "alias *\(name) refers to no earlier anchor &\(name)")
                }
                if stack.count + target.height >= YAMLDocument.maxDepth {
                    throw ConfigError.tooDeep(here, limit: YAMLDocument.maxDepth)
                }
                try attach(target, to: &stack, root: &root, at: here)
            case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                if stack.count >= YAMLDocument.maxDepth {
                    throw ConfigError.tooDeep(here, limit: YAMLDocument.maxDepth)
                }
                let isSequence = event.type == YAML_SEQUENCE_START_EVENT
                let anchorPointer = isSequence ? event.data.sequence_start.anchor : event.data.mapping_start.anchor
                let node = YAMLNode(kind: isSequence ? .sequence([]) : .mapping([]), line: line, column: column)
                stack.append(Frame(node: node, anchor: anchorPointer.map { String(cString: $0) }))
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                let frame = stack.removeLast()
                let node = frame.node
                if case .sequence = node.kind {
                    node.kind = .sequence(frame.items)
                } else {
                    var pairs: [(key: YAMLNode, value: YAMLNode)] = []
                    pairs.reserveCapacity(frame.items.count / 2)
                    var i = 0
                    while i + 1 < frame.items.count {
                        pairs.append((frame.items[i], frame.items[i + 1]))
                        i += 2
                    }
                    node.kind = .mapping(pairs)
                }
                node.expandedSize = 1 + frame.items.reduce(0) { $0 + $1.expandedSize }
                node.height = 1 + (frame.items.map(\.height).max() ?? 0)
                if let anchor = frame.anchor { anchors[anchor] = node }
                try attach(node, to: &stack, root: &root, at: here)
            default:
                break  // stream start, document end
            }
        }
    }

    /// Adds a finished node to its parent (or makes it the root), enforcing the expansion budget.
    private func attach(_ node: YAMLNode, to stack: inout [Frame], root: inout YAMLNode?, at here: SourceLocation) throws {
        if stack.isEmpty {
            root = node
            return
        }
        stack[stack.count - 1].items.append(node)
        // The running total of the open frames bounds the expanded document size.
        var total = node.expandedSize
        for frame in stack { total += frame.items.count }
        if node.expandedSize > YAMLDocument.maxExpandedNodes || total > YAMLDocument.maxExpandedNodes {
            throw ConfigError.aliasExpansion(here, limit: YAMLDocument.maxExpandedNodes)
        }
    }

    private func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?, length: Int) -> String {
        guard let pointer else { return "" }
        return String(decoding: UnsafeBufferPointer(start: pointer, count: length), as: UTF8.self)
    }

    private func syntaxError(_ parser: yaml_parser_t, _ buffer: UnsafeBufferPointer<UInt8>) -> ConfigError {
        let problem = parser.problem.map { String(cString: $0) } ?? "invalid YAML"
        let context = parser.context.map { String(cString: $0) }
        var location: SourceLocation
        if parser.error == YAML_READER_ERROR {
            // Reader errors (control characters, bad encoding) carry a byte offset, not a mark.
            let (line, column) = YAMLDocument.lineAndColumn(of: parser.problem_offset, in: Array(buffer))
            location = SourceLocation(file: file, line: line, column: column)
        } else {
            let mark = parser.problem_mark
            location = SourceLocation(file: file, line: Int(mark.line) + 1, column: Int(mark.column) + 1)
        }
        if problem.hasPrefix("Maximum nesting level") {
            return .tooDeep(location, limit: YAMLDocument.maxDepth)
        }
        let message = context.map { "\(problem) (\($0))" } ?? problem
        return .syntax(location, message: message)
    }
}
