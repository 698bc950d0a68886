import Foundation

/// One principle of a constitution: the texts used to critique, revise and judge under it.
public struct Principle: Sendable, Equatable, Codable {
    /// Unique id within the constitution (lowercase kebab-case).
    public var id: String
    /// Critique request shown after a response ("Identify …").
    public var critique: String
    /// Revision request shown after the critique ("Rewrite …").
    public var revision: String
    /// Question the judge answers when comparing two responses under this principle.
    public var preference: String
    public var tags: [String]
    /// Relative sampling weight (> 0).
    public var weight: Double
}

/// A worked critique/revision example shown to the model before the real task.
public struct FewShotExample: Sendable, Equatable, Codable {
    public var prompt: String
    public var response: String
    /// Id of the principle the example demonstrates.
    public var principle: String
    public var critique: String
    public var revision: String
}

/// A constitution file (`constitutions/*.yaml`, version 1). See docs/constitution-format.md.
public struct Constitution: Sendable, Equatable, Codable {
    public static let supportedVersion = 1

    public var name: String
    public var description: String
    public var principles: [Principle]
    public var fewShot: [FewShotExample]
    /// Prompt category → principle tags, for `principles: match` (a prompt record's `category`
    /// picks the principles carrying one of its tags). Every tag is one some principle carries.
    public var categories: [String: [String]] = [:]
    /// For a merged constitution: principle id → index of the file that defines it (empty for one file).
    public var parts: [String: Int] = [:]

    public init(name: String, description: String, principles: [Principle], fewShot: [FewShotExample],
                categories: [String: [String]] = [:]) {
        self.name = name
        self.description = description
        self.principles = principles
        self.fewShot = fewShot
        self.categories = categories
    }

    public func principle(id: String) -> Principle? { principles.first { $0.id == id } }

    /// Every tag used by some principle, sorted.
    public var tags: [String] { Array(Set(principles.flatMap(\.tags))).sorted() }
}

extension Constitution {
    /// Loads and validates a constitution file.
    public static func load(path: String, displayName: String? = nil) throws -> Constitution {
        let name = displayName ?? path
        let root = try YAMLDocument.load(path: path, displayName: name)
        return try decode(NodeReader(node: root, path: "", file: name))
    }

    static let topKeys = ["version", "name", "description", "principles", "few_shot", "categories"]
    static let principleKeys = ["id", "critique", "revision", "preference", "tags", "weight"]
    static let exampleKeys = ["prompt", "response", "principle", "critique", "revision"]

    /// Decodes from a located node; every error names file, line, column and key path.
    public static func decode(_ reader: NodeReader) throws -> Constitution {
        let map = try reader.mapping(allowed: topKeys)
        try checkVersion(map)
        let name = try map.require("name").text()
        let description = try map["description"]?.string() ?? ""

        let principleReaders = try map.require("principles").list()
        guard !principleReaders.isEmpty else {
            throw try map.require("principles").invalid("a constitution needs at least one principle")
        }
        var principles: [Principle] = []
        var firstLine: [String: Int] = [:]
        for item in principleReaders {
            let p = try item.mapping(allowed: principleKeys)
            let idReader = try p.require("id")
            let id = try idReader.text()
            guard id.range(of: #"^[a-z0-9][a-z0-9_-]*$"#, options: .regularExpression) != nil else {
                throw idReader.invalid("principle ids use lowercase letters, digits, '-' and '_' (found `\(id)`)")
            }
            if let line = firstLine[id] {
                throw idReader.invalid("duplicate principle id `\(id)` (first defined on line \(line))")
            }
            firstLine[id] = idReader.node.line
            let weight = try p["weight"]?.double() ?? 1.0
            if weight <= 0, let w = p["weight"] { throw w.invalid("weight must be greater than 0") }
            principles.append(Principle(
                id: id,
                critique: try p.require("critique").text(),
                revision: try p.require("revision").text(),
                preference: try p.require("preference").text(),
                tags: try p["tags"]?.stringList() ?? [],
                weight: weight))
        }

        var examples: [FewShotExample] = []
        for item in try map["few_shot"]?.list() ?? [] {
            let e = try item.mapping(allowed: exampleKeys)
            let principleReader = try e.require("principle")
            let principle = try principleReader.text()
            guard firstLine[principle] != nil else {
                let hint = closestMatch(to: principle, in: principles.map(\.id)).map { "; did you mean `\($0)`?" } ?? ""
                throw principleReader.invalid("no principle has id `\(principle)`\(hint)")
            }
            examples.append(FewShotExample(
                prompt: try e.require("prompt").text(),
                response: try e.require("response").text(),
                principle: principle,
                critique: try e.require("critique").text(),
                revision: try e.require("revision").text()))
        }
        var categories: [String: [String]] = [:]
        if let categoriesReader = map["categories"] {
            guard case .mapping(let pairs) = categoriesReader.node.kind else { throw categoriesReader.mismatch("a mapping of category → tags") }
            let names = pairs.compactMap { pair -> String? in
                if case .scalar(let text, _, _) = pair.key.kind { return text }
                return nil
            }
            let known = Set(principles.flatMap(\.tags))
            let c = try categoriesReader.mapping(allowed: names)
            for category in c.keys {
                let tagsReader = try c.require(category)
                let tags = try tagsReader.oneOrList(empty: "category `\(category)` needs at least one tag").map { try $0.text() }
                for tag in tags where !known.contains(tag) {
                    let hint = closestMatch(to: tag, in: known.sorted()).map { "; did you mean `\($0)`?" } ?? ""
                    throw tagsReader.invalid("no principle has tag `\(tag)`\(hint)")
                }
                categories[category] = tags
            }
        }
        return Constitution(name: name, description: description, principles: principles, fewShot: examples, categories: categories)
    }
}

/// Checks `version:` against the one this build reads (shared by both file formats).
func checkVersion(_ map: MappingReader, supported: Int = 1) throws {
    let reader = try map.require("version")
    guard case .scalar(let text, _, _) = reader.node.kind else { throw reader.mismatch("an integer") }
    guard let version = try? reader.int() else { throw reader.mismatch("an integer") }
    guard version == supported else {
        throw ConfigError.unsupportedVersion(reader.location, found: text, supported: supported)
    }
}

extension Constitution {
    /// Several constitutions as one: their principles in order, their worked examples interleaved
    /// (first of each, then second of each, …) so any `few_shot` prefix draws on all of them.
    /// A principle id used twice is an error naming both files.
    public static func merged(paths: [String]) throws -> Constitution {
        try merged(parts: paths.map { try Constitution.load(path: $0) }, paths: paths)
    }

    /// Merges decoded constitutions (`paths` name them in errors); a category's tags are the
    /// union of every part's.
    public static func merged(parts: [Constitution], paths: [String]) throws -> Constitution {
        guard parts.count > 1 else { return parts[0] }
        var seen: [String: String] = [:]
        for (path, part) in zip(paths, parts) {
            for p in part.principles {
                if let first = seen[p.id] {
                    throw ConfigError.unreadable(path: path, reason: "principle id `\(p.id)` is also in \(first); merged constitutions need distinct ids")
                }
                seen[p.id] = path
            }
        }
        let longest = parts.map(\.fewShot.count).max() ?? 0
        let examples = (0..<longest).flatMap { i in parts.compactMap { i < $0.fewShot.count ? $0.fewShot[i] : nil } }
        var categories: [String: [String]] = [:]
        for part in parts {
            for (category, tags) in part.categories {
                categories[category, default: []] += tags.filter { !(categories[category] ?? []).contains($0) }
            }
        }
        var merged = Constitution(name: parts.map(\.name).joined(separator: "+"), description: parts.map(\.description).joined(separator: " "),
                                  principles: parts.flatMap(\.principles), fewShot: examples, categories: categories)
        for (index, part) in parts.enumerated() { for p in part.principles { merged.parts[p.id] = index } }
        return merged
    }

    /// The worked examples that fit a prompt of `category` (`examples: match` on a judge stage):
    /// those of the principles its category maps to; with fewer than two of those, every example
    /// of the constitution files those principles come from; all examples when the category is
    /// absent or unmapped.
    public func examples(forCategory category: String?) -> [FewShotExample] {
        guard let category, categories[category] != nil else { return fewShot }
        let matched = Set(PrincipleSampler(constitution: self, tags: [], category: category).candidates.map(\.id))
        let own = fewShot.filter { matched.contains($0.principle) }
        if own.count >= 2 { return own }
        let files = Set(matched.map { parts[$0] ?? 0 })
        let sameFiles = fewShot.filter { files.contains(parts[$0.principle] ?? 0) }
        return sameFiles.isEmpty ? fewShot : sameFiles
    }
}
