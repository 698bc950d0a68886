import Foundation
import ModelKit

/// What a run did, per stage and overall.
public struct RunSummary: Sendable {
    public struct StageSummary: Sendable {
        public var id: String
        public var kind: String
        public var rows: Int
        public var flagged: [String: Int]
    }

    public var directory: URL
    public var stages: [StageSummary]
    public var executedCalls: Int
    public var cachedCalls: Int
    public var generatedTokens: Int
    public var seconds: Double
    public var exports: [ExportSummary]

    /// The HTML report written at the end of the run.
    public var report: URL { directory.appendingPathComponent("report.html") }
}

/// Runs a pipeline's stages in order against a run directory, resuming whatever is stored.
public final class PipelineRunner {
    public let pipelinePath: String
    public let options: RunOptions
    public weak var reporter: RunReporter?
    public let stop: StopFlag
    private let backendFactory: (ModelSpec) throws -> ModelBackend

    /// `backendFactory` defaults to the in-process engine for local models.
    public init(pipelinePath: String, options: RunOptions, reporter: RunReporter? = nil, stop: StopFlag = StopFlag(),
                backendFactory: ((ModelSpec) throws -> ModelBackend)? = nil) {
        self.pipelinePath = pipelinePath
        self.options = options
        self.reporter = reporter
        self.stop = stop
        self.backendFactory = backendFactory ?? PipelineRunner.backends(reporter: reporter)
    }

    /// Loads local models with the engine (catalog models are fetched on first use); remote
    /// models get an OpenAI-compatible client.
    public static func backends(reporter: RunReporter?) -> (ModelSpec) throws -> ModelBackend {
        { spec in
            if case .openAI(let endpoint) = spec.source {
                return try OpenAIBackend(endpoint: endpoint, promptStyle: spec.effectivePromptStyle, modelName: spec.name)
            }
            let (url, fingerprint) = try localModel(spec, reporter: reporter)
            let start = Date()
            let model = try LanguageModel(path: url.path)
            reporter?.message(String(format: "loaded model `%@` (%@) in %.1f s", spec.name, model.config.architecture,
                                     Date().timeIntervalSince(start)))
            return LocalBackend(model: model, fingerprint: fingerprint, promptStyle: spec.effectivePromptStyle, scoring: spec.scoring)
        }
    }

    /// The GGUF file of a local model (catalog models are fetched on first use) and its fingerprint.
    public static func localModel(_ spec: ModelSpec, reporter: RunReporter?) throws -> (url: URL, fingerprint: String) {
        switch spec.source {
        case .catalog(let name):
            let entry = ModelCatalog.entry(named: name)!
            return (try ModelStore().resolve(name) { reporter?.message($0) }, "gguf-sha256:\(entry.sha256)")
        case .file(let path):
            let url = URL(fileURLWithPath: path)
            return (url, "gguf-sha256:\(try ModelStore.fileDigest(url))")
        case .openAI:
            throw RunError.unsupportedProvider(model: spec.name, provider: "openai")
        }
    }

    public func run() throws -> RunSummary {
        let started = Date()
        let validated = try PipelineValidator.validate(path: pipelinePath)
        let pipeline = validated.pipeline
        let directory = (options.output ?? URL(fileURLWithPath: pipeline.output)).standardizedFileURL
        try RunDirectory.checkPlace(directory, pipeline: pipeline)
        do { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
            throw RunError.cannotWrite(path: directory.path)
        }
        // Held until the run returns: a second `precept run` into this folder stops here.
        let lock = try RunLock(directory: directory)
        defer { lock.release() }
        if let moved = try RunDirectory.claim(directory, pipelineName: pipeline.name, force: options.force) {
            reporter?.message(moved)
        }
        let store = try RunStore(directory: directory)
        let cache = try CallCache(directory: options.cacheDirectory ?? CallCache.defaultDirectory(forRun: directory))

        let prompts = try pipeline.readPrompts(limit: options.limit)
        let records = prompts.enumerated().map { i, p in
            RecordRow(id: p.id, position: i, prompt: p.text,
                      fields: String(decoding: (try? JSONSerialization.data(withJSONObject: p.fields, options: [.sortedKeys])) ?? Data("{}".utf8),
                                     as: UTF8.self))
        }
        // The run's records are exactly this prompt set: records dropped from it (and their
        // outputs) leave the store; their model calls stay in the call cache.
        let recordStages = pipeline.stages.filter {
            switch $0.kind {
            case .generate, .critique, .revise, .critiqueRevise, .judge: return true
            default: return false
            }
        }.map(\.id)
        let dropped = try store.replaceRecords(records, stages: recordStages)
        if dropped > 0 {
            reporter?.message("\(dropped) records are no longer in the prompt set; their outputs left the run (their model calls stay cached)")
        }
        let constitutionText = (try? String(contentsOfFile: pipeline.constitution, encoding: .utf8)) ?? ""
        // More than one constitution: every file's text, in order, so readers rebuild the merge.
        let constitutionTexts = pipeline.constitutions.map { (try? String(contentsOfFile: $0, encoding: .utf8)) ?? "" }
        let constitutionList = pipeline.constitutions.count > 1
            ? String(decoding: try JSONSerialization.data(withJSONObject: zip(pipeline.constitutions, constitutionTexts).map { ["path": $0, "yaml": $1] }),
                     as: UTF8.self) : ""
        try store.setMeta([
            "constitutions": constitutionList,
            "pipeline_name": pipeline.name,
            "pipeline_path": URL(fileURLWithPath: pipelinePath).standardizedFileURL.path,
            // Credentials in base URLs never reach the store (RunView decodes the masked text fine).
            "pipeline_yaml": Secrets.redact((try? String(contentsOfFile: pipelinePath, encoding: .utf8)) ?? "", headers: false),
            "constitution_path": pipeline.constitution,
            "constitution_yaml": constitutionText,
            "constitution_sha256": SHA256.hex(constitutionTexts.joined(separator: "\u{1F}")),
            "seed": "\(pipeline.seed)",
            "records": "\(records.count)",
        ])

        let context = RunContext(pipeline: pipeline, constitution: validated.constitution, records: records, store: store,
                                 cache: cache, options: options, reporter: reporter, stop: stop,
                                 principleTags: Dictionary(uniqueKeysWithValues: prompts.filter { !$0.tags.isEmpty }.map { ($0.id, $0.tags) }),
                                 backendFactory: backendFactory)
        var summaries: [RunSummary.StageSummary] = []
        var exports: [ExportSummary] = []
        for stage in try selectedStages(pipeline) {
            reporter?.message("stage \(stage.id) [\(stage.kind.keyword)]")
            switch stage.kind {
            case .generate(let spec): try GenerationStages.generate(spec, stage: stage, context: context)
            case .critique(let spec): try GenerationStages.critique(spec, stage: stage, context: context)
            case .revise(let spec):
                try GenerationStages.revise(spec, stage: stage, context: context, critiquesFromInput: spec.critique)
            case .critiqueRevise(let spec):
                try GenerationStages.revise(spec, stage: stage, context: context, critiquesFromInput: false)
            case .judge(let spec): try JudgeStage.run(spec, stage: stage, context: context)
            case .export(let spec):
                exports.append(try export(spec, stage: stage, context: context, directory: directory))
            case .sft(let spec): try TrainingStage.run(.sft(spec), stage: stage, context: context, directory: directory)
            case .rewardModel(let spec): try TrainingStage.run(.rewardModel(spec), stage: stage, context: context, directory: directory)
            case .dpo(let spec): try TrainingStage.run(.dpo(spec), stage: stage, context: context, directory: directory)
            case .ppo(let spec): try TrainingStage.run(.ppo(spec), stage: stage, context: context, directory: directory)
            case .evaluate(let spec):
                try EvaluateStage.run(spec, stage: stage, context: context, directory: directory)
            }
            let rows = try store.outputs(stage: stage.id)
            var flagged: [String: Int] = [:]
            for row in rows { for flag in row.flagList { flagged[flag, default: 0] += 1 } }
            summaries.append(.init(id: stage.id, kind: stage.kind.keyword, rows: rows.count, flagged: flagged))
        }
        let counts = context.callCounts
        let summary = RunSummary(directory: directory, stages: summaries, executedCalls: counts.executed,
                                 cachedCalls: counts.cached, generatedTokens: context.generatedTokens,
                                 seconds: Date().timeIntervalSince(started), exports: exports)
        try store.setMeta(["last_run": ISO8601DateFormatter().string(from: Date()),
                           "last_run_calls": "executed \(counts.executed), cached \(counts.cached)"])
        try HTMLReport.render(try RunView(directory: directory))
            .write(to: directory.appendingPathComponent("report.html"), atomically: true, encoding: .utf8)
        return summary
    }

    /// Stages after applying `--only` / `--from`.
    func selectedStages(_ pipeline: Pipeline) throws -> [Stage] {
        let ids = pipeline.stages.map(\.id)
        func index(_ id: String) throws -> Int {
            guard let i = ids.firstIndex(of: id) else {
                throw RunError.unknownStage(id, suggestion: closestMatch(to: id, in: ids))
            }
            return i
        }
        if let only = options.only { return [pipeline.stages[try index(only)]] }
        if let from = options.from { return Array(pipeline.stages[try index(from)...]) }
        return pipeline.stages
    }

    private func export(_ spec: ExportSpec, stage: Stage, context: RunContext, directory: URL) throws -> ExportSummary {
        let out = directory.appendingPathComponent(stage.id)
        let provenance = try Exporter.provenance(store: context.store, pipeline: context.pipeline, constitution: context.constitution)
        switch spec.format {
        case .sft:
            let chains = try RevisionChain.load(stage: spec.input, store: context.store, constitution: context.constitution)
            if chains.isEmpty && !context.records.isEmpty { throw RunError.missingInput(stage: stage.id, input: spec.input) }
            let selection = try RevisionGate.apply(chains, gate: spec.gate, store: context.store, stage: spec.input, pipeline: context.pipeline)
            var p = provenance
            p["human_labels"] = selection.provenance
            return try Exporter.exportSFT(chains: selection.kept, seed: context.pipeline.seed, testFraction: spec.testFraction, to: out,
                                          provenance: p, gatedOut: selection.gatedOut)
        case .trl, .openrlhf:
            return try Exporter.exportPreferences(format: spec.format, judge: spec.input, store: context.store, pipeline: context.pipeline,
                                              constitution: context.constitution, testFraction: spec.testFraction, to: out)
        }
    }
}
