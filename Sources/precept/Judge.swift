import ArgumentParser
import Foundation
import PipelineKit

extension Precept {
    struct Judge: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Label a pairs file with a pipeline's judge stage; with gold labels, measure the judge.",
            discussion: """
                Rows: prompt, response_a, response_b (other fields are kept), or TRL rows (prompt, chosen, rejected; strings \
                or conversations, chosen becomes response a and counts as the gold answer). Each output row is the input row \
                plus p_a (P(response a is better)), p_a_raw (before fitted calibration), the principles asked and the \
                per-principle, per-order probabilities. Rows with `better` ("a" or "b") and `category` add agreement with \
                gold: accuracy, Cohen's kappa, Brier score, ECE, order agreement, first-position rate, length bias, per \
                category. Calls go through the call cache, so an interrupted run resumes; the output file appears only \
                when every row is labelled. docs/judge.md.
                """)

        @Argument(help: "The pairs file (JSONL).") var pairs: String
        @Option(help: "The pipeline whose judge stage, models and constitution to use.") var pipeline: String
        @Option(help: "The judge stage's id (default: the last judge stage).") var stage: String?
        @Option(help: "Where to write the labelled rows (JSONL).") var output: String
        @Option(help: "Call cache directory (default: $PRECEPT_CACHE_DIR, else .precept-cache beside the output).") var cacheDir: String?
        @Option(help: "Label only the first N rows.") var limit: Int?
        @Option(help: "Model calls per batch.") var batchSize = 8
        @Flag(help: "Print the summary (and gold metrics) as JSON.") var json = false

        func validate() throws {
            if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
            if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        }

        func run() throws {
            try running {
                let reporter = TerminalReporter()
                let validated = try PipelineValidator.validate(path: pipeline)
                let judgeStages = validated.pipeline.stages.filter { if case .judge = $0.kind { return true } else { return false } }
                guard let chosen = stage.map({ id in judgeStages.first { $0.id == id } }) ?? judgeStages.last else {
                    if let stage { throw ValidationError("\(pipeline): no judge stage `\(stage)` (judge stages: \(judgeStages.map(\.id).joined(separator: ", ")))") }
                    throw ValidationError("\(pipeline): the pipeline has no judge stage")
                }
                guard case .judge(let spec) = chosen.kind else { return }
                var rows = try PairsFile.read(path: pairs)
                if let limit { rows = Array(rows.prefix(limit)) }
                let out = URL(fileURLWithPath: output)
                let cacheDirectory = (cacheDir ?? ProcessInfo.processInfo.environment["PRECEPT_CACHE_DIR"]).map { URL(fileURLWithPath: $0) }
                let cache = try CallCache(directory: cacheDirectory ?? CallCache.defaultDirectory(forRun: out))
                let factory = PipelineRunner.backends(reporter: reporter)
                let backends = try spec.models.map { name -> CachedBackend in
                    guard let model = validated.pipeline.model(named: name) else { throw ValidationError("model `\(name)` is not in the pipeline") }
                    return CachedBackend(name: name, backend: try factory(model), cache: cache)
                }
                let harmBackend = try spec.harmCheck.map { check -> CachedBackend in
                    if let index = spec.models.firstIndex(of: check.model) { return backends[index] }
                    guard let model = validated.pipeline.model(named: check.model) else { throw ValidationError("model `\(check.model)` is not in the pipeline") }
                    return CachedBackend(name: check.model, backend: try factory(model), cache: cache)
                }
                let result = try JudgeFile.label(rows: rows, spec: spec, constitution: try spec.constitution(pipeline: validated.constitution), backends: backends,
                                                 harmBackend: harmBackend,
                                                 seed: validated.pipeline.seed, stage: chosen.id, batchSize: batchSize, output: out,
                                                 inputPath: pairs) { reporter.progress($0) }
                if json {
                    try printJSON(result.summary)
                } else {
                    for line in result.lines { print(line) }
                }
            }
        }
    }
}
