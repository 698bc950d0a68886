import Foundation
import ModelKit

/// What `precept validate` found: the decoded pipeline and everything it references.
public struct ValidationSummary: Sendable {
    public var pipeline: Pipeline
    public var constitution: Constitution
    /// Prompts the run will use (after `limit`).
    public var promptCount: Int
    /// Files named by evaluate stages, with their record counts.
    public var extraPromptFiles: [(path: String, count: Int)]

    /// A short human-readable summary.
    public var text: String {
        var lines: [String] = []
        lines.append("pipeline \(pipeline.name) (\(pipeline.file)): OK")
        lines.append("  constitution: \(constitution.name), \(constitution.principles.count) principles, \(constitution.fewShot.count) few-shot examples")
        let models = pipeline.models.map { model -> String in
            switch model.source {
            case .catalog(let name): return "\(model.name)=\(name)"
            case .file(let path): return "\(model.name)=\(path)"
            case .openAI(let endpoint):
                return "\(model.name)=openai:\(endpoint.model)@\(Secrets.redact(endpoint.baseURLs.joined(separator: ",")))"
            }
        }
        lines.append("  models: \(models.joined(separator: ", "))")
        lines.append("  prompts: \(promptCount) from \(pipeline.prompts.map { "\($0.file) (field `\($0.field)`)" }.joined(separator: ", "))")
        for extra in extraPromptFiles {
            lines.append("  evaluation prompts: \(extra.count) from \(extra.path)")
        }
        lines.append("  stages (\(pipeline.stages.count)): \(pipeline.stages.map { "\($0.id) [\($0.kind.keyword)]" }.joined(separator: " → "))")
        lines.append("  seed: \(pipeline.seed)  output: \(pipeline.output)")
        return lines.joined(separator: "\n")
    }
}

/// Decodes a pipeline and checks every file it names, in the order a run would read them.
public enum PipelineValidator {
    public static func validate(path: String) throws -> ValidationSummary {
        let pipeline = try Pipeline.load(path: path)
        for reference in pipeline.fileReferences {
            // Model files are checked here too: a missing .gguf, or a FIFO, device or folder named
            // as one, is an error before any work starts.
            switch FileKind.of(reference.path) {
            case .regular: continue
            case .missing:
                throw ConfigError.fileNotFound(path: reference.path, referencedFrom: reference.location,
                                               keyPath: reference.keyPath)
            case let kind:
                throw ConfigError.invalidValue(reference.location, keyPath: reference.keyPath,
                                               message: "\(reference.path) is \(kind.phrase), not a regular file")
            }
        }
        let constitution = try Constitution.merged(paths: pipeline.constitutions)
        // Stage and prompt-set `tags` must each name a tag some principle carries.
        func checkTags(_ tags: [String], at location: SourceLocation, keyPath: String, in constitution: Constitution = constitution) throws {
            for tag in tags where !constitution.tags.contains(tag) {
                let hint = closestMatch(to: tag, in: constitution.tags).map { "; did you mean `\($0)`?" } ?? ""
                throw ConfigError.invalidValue(location, keyPath: keyPath,
                                               message: "no principle of constitution `\(constitution.name)` has tag `\(tag)`\(hint)")
            }
        }
        for (index, stage) in pipeline.stages.enumerated() {
            let tags: [String]
            switch stage.kind {
            case .critique(let s), .revise(let s), .critiqueRevise(let s): tags = s.tags
            default: tags = []
            }
            if case .judge(let j) = stage.kind {
                let own = j.constitutions.isEmpty ? constitution : try Constitution.merged(paths: j.constitutions)
                try checkTags(j.harmCheck?.tags ?? [], at: stage.location, keyPath: "stages[\(index)].judge.harm_check.tags", in: own)
            }
            try checkTags(tags, at: stage.location, keyPath: "stages[\(index)].\(stage.kind.keyword).tags")
        }
        for source in pipeline.prompts {
            try checkTags(source.tags, at: source.tagsLocation ?? SourceLocation(file: pipeline.file, line: 1, column: 1),
                          keyPath: source.tagsKeyPath)
        }
        let prompts = try pipeline.readPrompts()
        for source in pipeline.prompts where try PromptFile.read(path: source.file, field: source.field, idField: source.idField, limit: 1).isEmpty {
            throw ConfigError.jsonl(file: source.file, line: 1, byteOffset: 0, message: "the prompt file has no records")
        }
        var extras: [(String, Int)] = []
        for stage in pipeline.stages {
            guard case .evaluate(let e) = stage.kind else { continue }
            for path in [e.prompts, e.benignPrompts, e.sycophancyPrompts].compactMap({ $0 }) {
                extras.append((path, try PromptFile.read(path: path).count))
            }
        }
        return ValidationSummary(pipeline: pipeline, constitution: constitution, promptCount: prompts.count,
                                 extraPromptFiles: extras)
    }
}
