import Foundation
import ModelKit

/// How prompts are shown to a model: a plain few-shot transcript (base models) or the
/// family's chat template (instruction-tuned models). DESIGN.md § Prompting a base model.
public enum PromptStyle: String, Sendable, Codable, CaseIterable {
    case completion, chat
}

/// An OpenAI-compatible server (vLLM, llama.cpp server, Ollama, OpenAI).
public struct OpenAIEndpoint: Sendable, Equatable, Codable {
    /// One or more base URLs (load-balanced), each ending in `/v1`.
    public var baseURLs: [String]
    public var model: String
    /// Name of the environment variable holding the API key; the key itself is never stored.
    public var apiKeyEnv: String?
    public var maxConcurrency: Int
    public var timeoutSeconds: Double
}

/// Where a model's weights or answers come from.
public enum ModelSource: Sendable, Equatable {
    /// A name from `ModelCatalog` (fetched on first use).
    case catalog(String)
    /// A local `.gguf` file (absolute path, resolved against the pipeline file).
    case file(String)
    case openAI(OpenAIEndpoint)

    public var isLocal: Bool {
        if case .openAI = self { return false }
        return true
    }
}

/// A named model of a pipeline (`models: { policy: {...} }`).
public struct ModelSpec: Sendable, Equatable {
    public var name: String
    public var source: ModelSource
    /// Explicit prompt style; nil means the default for the source (see `effectivePromptStyle`).
    public var promptStyle: PromptStyle?
    public var location: SourceLocation
    /// How a local model's scoring passes (judges, log-probabilities) multiply Float32
    /// activations (`scoring:`; `float32` unless set).
    public var scoring: ScoringPrecision

    public init(name: String, source: ModelSource, promptStyle: PromptStyle?, location: SourceLocation,
                scoring: ScoringPrecision = .float32) {
        self.name = name
        self.source = source
        self.promptStyle = promptStyle
        self.location = location
        self.scoring = scoring
    }

    /// `completion` for base models, `chat` for instruction-tuned and remote ones; the judge
    /// prompt is a completion transcript regardless (DESIGN.md § Prompting a base model).
    public var effectivePromptStyle: PromptStyle {
        if let promptStyle { return promptStyle }
        switch source {
        case .catalog(let name): return ModelCatalog.entry(named: name)?.instructionTuned == true ? .chat : .completion
        case .file: return .completion
        case .openAI: return .chat
        }
    }
}

/// The prompts a pipeline runs on: one JSONL file, one field per line.
public struct PromptSource: Sendable, Equatable {
    /// Absolute path of the JSONL file.
    public var file: String
    /// The field holding the prompt text.
    public var field: String
    /// The field holding a stable record id (line number when absent).
    public var idField: String?
    /// Use only the first `limit` prompts.
    public var limit: Int?
    /// Principle tags for this file's records (`tags:`): critique and revise stages draw only among
    /// principles carrying one of them, in place of what the record's category maps to.
    public var tags: [String] = []
    /// Where `tags` was written (location and key path), for the error when no principle carries one.
    public var tagsLocation: SourceLocation? = nil
    public var tagsKeyPath: String = ""

}

/// A file a pipeline names, kept with where it was named so a missing file is reported there.
public struct FileReference: Sendable, Equatable {
    public var path: String
    public var location: SourceLocation
    public var keyPath: String
}

/// A pipeline file (`pipelines/*.yaml`, version 1). See docs/pipeline-format.md.
public struct Pipeline: Sendable {
    public static let supportedVersion = 1

    public var name: String
    public var description: String
    public var seed: UInt64
    /// Absolute paths of the constitution files (`constitution:` a path or a list), merged in order.
    public var constitutions: [String]
    /// The first constitution file (the only one, for most pipelines).
    public var constitution: String { constitutions[0] }
    public var models: [ModelSpec]
    /// The prompt sets (`prompts:` a mapping or a list of them), read in order; ids are unique across them.
    public var prompts: [PromptSource]
    public var stages: [Stage]
    /// Absolute path of the output (run) directory.
    public var output: String
    /// The pipeline file as named on the command line.
    public var file: String
    /// Every file the pipeline refers to, for existence checks.
    public var fileReferences: [FileReference]

    public func model(named name: String) -> ModelSpec? { models.first { $0.name == name } }

    /// The records of every prompt set in order, each set cut to its `limit` (and to `limit` when
    /// given); an id used in two sets is an error naming both files.
    public func readPrompts(limit: Int? = nil) throws -> [PromptRecord] {
        var out: [PromptRecord] = []
        var firstFile: [String: (file: String, line: Int)] = [:]
        for source in prompts {
            let cut = [limit, source.limit].compactMap { $0 }.min()
            for var record in try PromptFile.read(path: source.file, field: source.field, idField: source.idField, limit: cut) {
                record.tags = source.tags
                if let first = firstFile[record.id] {
                    throw ConfigError.jsonl(file: source.file, line: record.line, byteOffset: 0,
                                            message: "duplicate id `\(record.id)` (first in \(first.file) line \(first.line)); ids must be unique across prompt files")
                }
                firstFile[record.id] = (source.file, record.line)
                out.append(record)
            }
        }
        return out
    }
    public func stage(id: String) -> Stage? { stages.first { $0.id == id } }
}

extension Pipeline {
    static let topKeys = ["version", "name", "description", "seed", "constitution", "models", "prompts", "stages", "output"]
    static let modelKeys = ["source", "provider", "base_url", "model", "api_key_env", "max_concurrency",
                            "timeout", "prompt_style", "scoring"]
    static let promptKeys = ["file", "field", "id_field", "limit", "tags"]

    /// Loads a pipeline file. Relative paths inside it resolve against its directory.
    public static func load(path: String) throws -> Pipeline {
        let root = try YAMLDocument.load(path: path)
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let reader = NodeReader(node: root, path: "", file: path)
        let pipeline = try decode(reader, baseDirectory: directory)
        // Checked on the file only, so runs stored before the rule still read.
        if let nameReader = try reader.mapping(allowed: topKeys)["name"] { try checkName(pipeline.name, nameReader) }
        return pipeline
    }

    /// The name is the default run folder (outputs/<name>) and the run's identity: a plain
    /// folder name, never a path.
    static func checkName(_ name: String, _ nameReader: NodeReader) throws {
        let nameCharacters = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        guard !name.isEmpty, !name.hasPrefix("."), name.unicodeScalars.allSatisfy(nameCharacters.contains) else {
            throw nameReader.invalid("the name must be letters, digits, `.`, `_` or `-` and not start with `.` (it names the run folder outputs/<name>); got `\(TerminalText.excerpt(name, limit: 40))`")
        }
    }

    /// Decodes a pipeline; checks types, keys, stage wiring and model names (not files).
    public static func decode(_ reader: NodeReader, baseDirectory: String) throws -> Pipeline {
        let map = try reader.mapping(allowed: topKeys)
        try checkVersion(map, supported: supportedVersion)
        var references: [FileReference] = []
        func resolve(_ r: NodeReader) throws -> String {
            let raw = try r.text()
            let expanded = (raw as NSString).expandingTildeInPath
            let url = expanded.hasPrefix("/")
                ? URL(fileURLWithPath: expanded)
                : URL(fileURLWithPath: baseDirectory).appendingPathComponent(expanded)
            return url.standardizedFileURL.path
        }
        func fileReference(_ r: NodeReader) throws -> String {
            let path = try resolve(r)
            references.append(FileReference(path: path, location: r.location, keyPath: r.path))
            return path
        }

        let name = try map.require("name").text()
        let seedReader = map["seed"]
        let seed = try seedReader?.int() ?? 0
        if seed < 0, let seedReader { throw seedReader.invalid("seed must be 0 or greater") }
        let constitutions = try map.require("constitution").oneOrList(empty: "name at least one constitution file").map(fileReference)

        let modelsReader = try map.require("models")
        guard case .mapping(let pairs) = modelsReader.node.kind else { throw modelsReader.mismatch("a mapping of model names") }
        let modelNames = pairs.compactMap { pair -> String? in
            if case .scalar(let text, _, _) = pair.key.kind { return text }
            return nil
        }
        let modelsMap = try modelsReader.mapping(allowed: modelNames)
        var models: [ModelSpec] = []
        for modelName in modelsMap.keys {
            let entry = try modelsMap.require(modelName)
            models.append(try decodeModel(name: modelName, entry, resolve: fileReference))
        }
        guard !models.isEmpty else { throw modelsReader.invalid("name at least one model") }

        let promptsReader = try map.require("prompts")
        var prompts: [PromptSource] = []
        for promptReader in try promptsReader.oneOrList(empty: "name at least one prompt file") {
            let p = try promptReader.mapping(allowed: promptKeys)
            prompts.append(PromptSource(
                file: try fileReference(try p.require("file")),
                field: try p["field"]?.text() ?? "prompt",
                idField: try p["id_field"]?.text(),
                limit: try p["limit"]?.int(in: 1...10_000_000),
                tags: try p["tags"]?.stringList() ?? [],
                tagsLocation: p["tags"]?.location,
                tagsKeyPath: p["tags"]?.displayPath ?? ""))
        }

        var stages: [Stage] = []
        let stageReaders = try map.require("stages").list()
        guard !stageReaders.isEmpty else { throw try map.require("stages").invalid("a pipeline needs at least one stage") }
        for stageReader in stageReaders {
            let stage = try Stage.decode(stageReader, resolve: fileReference)
            if let earlier = stages.first(where: { $0.id == stage.id }) {
                throw ConfigError.invalidValue(stage.location, keyPath: "\(stageReader.path).id",
                                               message: "duplicate stage id `\(stage.id)` (first used on line \(earlier.location.line))")
            }
            stages.append(stage)
        }

        let pipeline = Pipeline(
            name: name,
            description: try map["description"]?.string() ?? "",
            seed: UInt64(seed),
            constitutions: constitutions,
            models: models,
            prompts: prompts,
            stages: stages,
            output: try map["output"].map(resolve)
                ?? URL(fileURLWithPath: baseDirectory).appendingPathComponent("../outputs/\(name)").standardizedFileURL.path,
            file: reader.file,
            fileReferences: references)
        try StageWiring.check(pipeline, stageReaders: stageReaders)
        return pipeline
    }

    private static func decodeModel(name: String, _ reader: NodeReader,
                                    resolve: (NodeReader) throws -> String) throws -> ModelSpec {
        let m = try reader.mapping(allowed: modelKeys)
        let style = try m["prompt_style"]?.oneOf(PromptStyle.self)
        if let provider = m["provider"] {
            if m.has("scoring") {
                throw m.invalid("scoring", "`scoring` sets the local engine's arithmetic; a remote server chooses its own")
            }
            guard try provider.string() == "openai" else {
                throw provider.invalid("`\(try provider.string())` is not a known provider; use `openai` for any OpenAI-compatible server")
            }
            if m.has("source") {
                throw m.invalid("source", "a model has either `source` (local) or `provider` (remote), not both")
            }
            let urlReader = try m.require("base_url")
            let urls = try urlReader.oneOrList(empty: "give at least one URL").map { try $0.text() }
            for url in urls where !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
                throw urlReader.invalid("`\(TerminalText.excerpt(Secrets.redact(url), limit: 60))` is not an http:// or https:// URL")
            }
            let endpoint = OpenAIEndpoint(
                baseURLs: urls,
                model: try m.require("model").text(),
                apiKeyEnv: try m["api_key_env"]?.text(),
                maxConcurrency: try m["max_concurrency"]?.int(in: 1...1024) ?? 8,
                timeoutSeconds: try m["timeout"]?.double(in: 1...3600) ?? 120)
            return ModelSpec(name: name, source: .openAI(endpoint), promptStyle: style, location: reader.location)
        }
        for key in ["base_url", "model", "api_key_env", "max_concurrency", "timeout"] where m.has(key) {
            throw m.invalid(key, "`\(key)` applies to remote models; add `provider: openai`")
        }
        let scoring = try m["scoring"]?.oneOf(ScoringPrecision.self) ?? .float32
        let sourceReader = try m.require("source")
        let source = try sourceReader.text()
        if source.hasSuffix(".gguf") {
            return ModelSpec(name: name, source: .file(try resolve(sourceReader)), promptStyle: style, location: reader.location,
                             scoring: scoring)
        }
        guard ModelCatalog.entry(named: source) != nil else {
            let hint = closestMatch(to: source, in: ModelCatalog.names).map { "; did you mean `\($0)`?" }
                ?? " (known: \(ModelCatalog.names.joined(separator: ", ")))"
            throw sourceReader.invalid("`\(source)` is neither a catalog model nor a .gguf path\(hint)")
        }
        return ModelSpec(name: name, source: .catalog(source), promptStyle: style, location: reader.location, scoring: scoring)
    }
}
