import Foundation

/// A run directory opened for reading: its pipeline and constitution as they were when it ran,
/// and the revision chains and labels reviewers look at.
public struct RunView {
    public let store: RunStore
    public let pipeline: Pipeline
    public let constitution: Constitution
    public let records: [RecordRow]

    public init(directory: URL) throws {
        store = try RunStore(directory: directory, create: false)
        let loaded: (Pipeline, Constitution)
        do {
            loaded = try Self.decodeStoredFiles(store: store, directory: directory)
        } catch let error as ConfigError {
            // The text is the store's copy, not the file on disk: say so, so nobody edits the
            // right file looking for the problem.
            let message = (error.errorDescription ?? "\(error)").replacingOccurrences(of: ": error: ", with: ": ")
            throw RunError.unreadableStore(path: RunStore.databaseURL(in: directory).path,
                                           message: "its stored copy of the pipeline or constitution does not decode: \(message)")
        }
        (pipeline, constitution) = loaded
        records = try store.records()
    }

    /// The pipeline and constitution as the run stored them.
    private static func decodeStoredFiles(store: RunStore, directory: URL) throws -> (Pipeline, Constitution) {
        let pipelinePath = try store.meta("pipeline_path") ?? directory.appendingPathComponent("pipeline.yaml").path
        let pipelineText = try store.meta("pipeline_yaml") ?? ""
        let pipelineNode = try YAMLDocument.parse(data: Data(pipelineText.utf8), file: pipelinePath)
        let pipeline = try Pipeline.decode(NodeReader(node: pipelineNode, path: "", file: pipelinePath),
                                           baseDirectory: URL(fileURLWithPath: pipelinePath).deletingLastPathComponent().path)
        if let list = try store.meta("constitutions"), !list.isEmpty {
            // Several constitutions: the stored text of each, merged as the run merged them.
            guard let entries = (try? JSONSerialization.jsonObject(with: Data(list.utf8))) as? [[String: String]],
                  entries.allSatisfy({ $0["path"] != nil && $0["yaml"] != nil }) else {
                throw RunError.badStoredRow(stage: "meta", record: "constitutions", sample: 0, message: "not a list of {path, yaml}")
            }
            let parts = try entries.map { entry in
                let node = try YAMLDocument.parse(data: Data(entry["yaml"]!.utf8), file: entry["path"]!)
                return try Constitution.decode(NodeReader(node: node, path: "", file: entry["path"]!))
            }
            return (pipeline, try Constitution.merged(parts: parts, paths: entries.map { $0["path"]! }))
        } else {
            let constitutionPath = try store.meta("constitution_path") ?? pipeline.constitution
            let constitutionNode = try YAMLDocument.parse(data: Data((try store.meta("constitution_yaml") ?? "").utf8), file: constitutionPath)
            return (pipeline, try Constitution.decode(NodeReader(node: constitutionNode, path: "", file: constitutionPath)))
        }
    }

    /// The last revise or critique_revise stage (what diff, report and SFT export show).
    public var revisionStage: Stage? {
        pipeline.stages.last { if case .revise = $0.kind { return true }; if case .critiqueRevise = $0.kind { return true }; return false }
    }

    /// The last judge stage.
    public var judgeStage: Stage? {
        pipeline.stages.last { if case .judge = $0.kind { return true }; return false }
    }

    /// The revision gate's verdicts from the last judge stage, when it compares original and revision.
    public func gateVerdicts() throws -> RevisionGate.Verdicts? {
        guard let judge = judgeStage, case .judge(let spec) = judge.kind, spec.pairs == .originalVsRevision else { return nil }
        return try RevisionGate.verdicts(judge: judge.id, store: store)
    }

    /// P(revision better) per "record␟sample" from the last judge stage, for original_vs_revision pairs.
    public func revisionProbabilities() throws -> [String: Double] {
        guard let judge = judgeStage, case .judge(let spec) = judge.kind, spec.pairs == .originalVsRevision else { return [:] }
        var out: [String: Double] = [:]
        for (row, label) in try JudgeStage.labels(stage: judge.id, store: store) { out["\(row.record)\u{1F}\(row.sample)"] = label.probability }
        return out
    }

    public func chains(stage: String? = nil) throws -> [RevisionChain] {
        guard let id = stage ?? revisionStage?.id else { return [] }
        return try RevisionChain.load(stage: id, store: store, constitution: constitution)
    }

    /// Filters shared by `precept diff` and the report.
    public struct Filter {
        public var principle: String?
        public var tag: String?
        public var record: String?
        public var changedOnly = false

        public init(principle: String? = nil, tag: String? = nil, record: String? = nil, changedOnly: Bool = false) {
            self.principle = principle
            self.tag = tag
            self.record = record
            self.changedOnly = changedOnly
        }
    }

    public func filtered(_ chains: [RevisionChain], _ f: Filter) -> [RevisionChain] {
        chains.filter { c in
            if let p = f.principle, c.principle != p { return false }
            if let t = f.tag, !(c.principle.flatMap { constitution.principle(id: $0) }?.tags.contains(t) ?? false) { return false }
            if let r = f.record, c.record != r { return false }
            if f.changedOnly && (c.flags.contains("unchanged") || GenerationStages.normalized(c.original) == GenerationStages.normalized(c.revision)) {
                return false
            }
            return true
        }
    }
}
