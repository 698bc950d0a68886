import Foundation
import ModelKit

/// The preference pairs of a judge stage, chosen in one place for training (rm, dpo) and for
/// exports (trl, openrlhf): the preferred side of each label (a human's verdict where one
/// exists) is `chosen`, with its probability of being better.
struct PreferencePair {
    var row: OutputRow
    var label: PairLabel
    var prompt: String
    /// Index of the chosen candidate in `label.candidates`.
    var chosenIndex: Int
    var chosen: String
    var rejected: String
    var probability: Double

    /// Left out, and counted: labels below `min_confidence`, with `gate` those that do not endorse
    /// their revision (`RevisionGate`), pairs with an empty side, and records without a prompt.
    /// Training also leaves out pairs whose two sides are identical (`forTraining`): they carry no
    /// gradient. Exports keep them, so a dataset has a row for every usable label.
    static func select(_ labels: [(row: OutputRow, label: PairLabel)], prompts: [String: String], gate: Bool,
                       forTraining: Bool) -> (pairs: [PreferencePair], skipped: Int) {
        var pairs: [PreferencePair] = [], skipped = 0
        for (row, label) in labels {
            let (index, probability) = label.chosen
            let chosen = label.candidates[index], rejected = label.candidates[1 - index]
            guard !label.belowConfidence, !gate || RevisionGate.endorses(label), !chosen.isEmpty, !rejected.isEmpty, !forTraining || chosen != rejected,
                  let prompt = prompts[row.record] else {
                skipped += 1
                continue
            }
            pairs.append(PreferencePair(row: row, label: label, prompt: prompt, chosenIndex: index, chosen: chosen, rejected: rejected,
                                        probability: probability))
        }
        return (pairs, skipped)
    }
}

extension Exporter {
    /// Preference export of a judge stage (the export stage and `precept export`): labels with
    /// human verdicts applied, the revision chains they judged (for the CAI columns), provenance.
    public static func exportPreferences(format: ExportFormat, judge: String, store: RunStore, pipeline: Pipeline,
                                         constitution: Constitution, testFraction: Double, to out: URL) throws -> ExportSummary {
        guard case .judge(let spec)? = pipeline.stage(id: judge)?.kind else { throw RunError.unknownStage(judge, suggestion: nil) }
        // A human verdict, where one exists, replaces the judge's label; the exported revision
        // columns show a human's edit, as the chosen side does. Resolved once for both.
        let revisionStage = spec.pairs == .originalVsRevision ? spec.input : nil
        let resolved = try HumanOverride.resolve(store: store, judge: judge, revisionStage: revisionStage).byKey
        let (labels, human) = HumanOverride.apply(resolved, to: try JudgeStage.labels(stage: judge, store: store))
        let records = try store.records()
        if labels.isEmpty && !records.isEmpty { throw RunError.missingInput(stage: judge, input: judge) }
        var chains = try revisionStage.map { try RevisionChain.load(stage: $0, store: store, constitution: constitution) } ?? []
        for i in chains.indices { if let edited = resolved["\(chains[i].record)\u{1F}\(chains[i].sample)"]?.edited { chains[i].revision = edited } }
        let prompts = Dictionary(uniqueKeysWithValues: records.map { ($0.id, $0.prompt) })
        return try exportPreferences(format: format, labels: labels, chains: chains, prompts: prompts, seed: pipeline.seed,
                                     testFraction: testFraction, gate: spec.gate, to: out,
                                     provenance: try provenance(store: store, pipeline: pipeline, constitution: constitution)
                                        .merging(["label_sources": ["human": human, "judge": labels.count - human]]) { $1 })
    }

    /// Where a dataset came from: pipeline, constitution and its hash, models, seed.
    public static func provenance(store: RunStore, pipeline: Pipeline, constitution: Constitution) throws -> [String: Any] {
        var models: [String: String] = [:]
        for m in pipeline.models {
            switch m.source {
            case .catalog(let name):
                models[m.name] = "\(name) (sha256 \(ModelCatalog.entry(named: name)?.sha256 ?? "?"))"
            case .file(let path): models[m.name] = path
            case .openAI(let e): models[m.name] = "openai:\(e.model)@\(Secrets.redact(e.baseURLs.joined(separator: ",")))"
            }
        }
        // Fitted judge calibration, per judge stage that used one (`calibration:`).
        var calibration: [String: Any] = [:]
        for stage in pipeline.stages {
            guard case .judge = stage.kind, let fitted = try JudgeStage.calibration(stage: stage.id, store: store) else { continue }
            calibration[stage.id] = try JSONSerialization.jsonObject(with: Data(try fitted.json().utf8))
        }
        var provenance: [String: Any] = [
            "pipeline": pipeline.name,
            "pipeline_file": try store.meta("pipeline_path") ?? pipeline.file,
            "constitution": constitution.name,
            "constitution_sha256": try store.meta("constitution_sha256") ?? "",
            "models": models,
            "seed": pipeline.seed,
            "records": try store.meta("records").flatMap(Int.init) ?? 0,
            "precept_version": PreceptVersion.string,
        ]
        if !calibration.isEmpty { provenance["judge_calibration"] = calibration }
        return provenance
    }
}
