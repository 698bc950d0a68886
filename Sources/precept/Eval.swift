import ArgumentParser
import Foundation
import ModelKit
import PipelineKit

extension Precept {
    struct Eval: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compare a trained policy with its baseline: judge win rate, reward shift, over-refusal, sycophancy, length, diversity.",
            discussion: """
                --policy and --baseline are catalog names, .gguf paths, or training output directories (their merged.gguf). \
                Writes evaluation.json and samples.jsonl into --output and prints the table; calls are cached, so a rerun \
                after a failure repeats none. The same evaluation runs as a pipeline's `evaluate` stage (docs/rl.md).
                """)

        @Option(help: "The trained policy.") var policy: String
        @Option(help: "The model it is compared with (default: gemma-3-270m).") var baseline = "gemma-3-270m"
        @Option(help: "The judge model; with --judge-method contrast, a comma-separated panel.") var judge = "qwen2.5-coder-0.5b-instruct"
        @Option(help: "How the win rate is judged: contrast (default, docs/judge.md) or pairwise (the default when --judge-layout is given).")
        var judgeMethod: JudgeMethod?
        @Option(help: "Pairwise only: layout of the judge's questions, dialogue (default) or options (better for qwen2.5-coder-1.5b-instruct).")
        var judgeLayout: JudgeLayout?
        @Option(help: "Contrast only: all worked examples (default) or match (those of each prompt's category).")
        var judgeExamples: ExampleSelection = .all
        @Option(help: "Held-out prompts (JSONL with id and prompt).") var prompts: String
        @Option(help: "Benign-but-edgy prompts for the over-refusal rate.") var benign: String?
        @Option(help: "Sycophancy probes (JSONL with id, prompt, false_claim).") var sycophancy: String?
        @Option(help: "A reward model directory for the score shift.") var rewardModel: String?
        @Option(help: "Constitution whose principles and worked examples the judge uses (comma-separated files are merged).") var constitution = "constitutions/harmless.yaml"
        @Option(help: "Use the first N prompts of each file.") var limit: Int?
        @Option(help: "Sampling temperature.") var temperature = 0.7
        @Option(help: "Maximum new tokens per response.") var maxTokens = 160
        @Option(help: "Seed for sampling and principle choice.") var seed: UInt64 = 1234
        @Option(help: "Model calls per batch.") var batchSize = 16
        @Option(help: "Output directory.") var output = "outputs/eval"

        func model(_ name: String, role: String) throws -> ModelSpec {
            let location = SourceLocation(file: "command line", line: 0, column: 0)
            if ModelCatalog.entry(named: name) != nil { return ModelSpec(name: role, source: .catalog(name), promptStyle: nil, location: location) }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: name, isDirectory: &isDirectory) else {
                throw ValidationError("--\(role) \(name): not a catalog model (\(ModelCatalog.entries.map(\.name).joined(separator: ", "))), .gguf file or training directory")
            }
            var path = URL(fileURLWithPath: name).standardizedFileURL.path
            var style: PromptStyle? = nil
            if isDirectory.boolValue {
                path = URL(fileURLWithPath: path).appendingPathComponent("merged.gguf").path
                guard FileManager.default.fileExists(atPath: path) else { throw ValidationError("--\(role) \(name): the directory has no merged.gguf") }
                style = try? TrainedDirectory(URL(fileURLWithPath: name)).setup().promptStyle
            }
            return ModelSpec(name: role, source: .file(path), promptStyle: style, location: location)
        }

        func run() throws {
            try running {
                let reporter = TerminalReporter()
                let factory = PipelineRunner.backends(reporter: reporter)
                let out = URL(fileURLWithPath: output)
                let cache = try CallCache(directory: CallCache.defaultDirectory(forRun: out))
                func backend(_ spec: ModelSpec) throws -> CachedBackend { CachedBackend(name: spec.name, backend: try factory(spec), cache: cache) }
                let heldout = try Evaluator.readPrompts(path: prompts, limit: limit)
                let benignPrompts = try benign.map { try Evaluator.readPrompts(path: $0, limit: limit) } ?? []
                let probes = try sycophancy.map { try Evaluator.readPrompts(path: $0, limit: limit, claims: true) } ?? []
                let constitutionPaths = self.constitution.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                guard !constitutionPaths.isEmpty else { throw ValidationError("--constitution: name at least one file") }
                let constitution = try Constitution.merged(paths: constitutionPaths)
                let sampling = SamplingSpec(temperature: temperature, topP: 1, topK: 0, maxTokens: maxTokens, stop: [])
                let judgeMethod = self.judgeMethod ?? (judgeLayout != nil ? .pairwise : .contrast)
                guard judgeMethod == .contrast || judgeMethod == .pairwise else {
                    throw ValidationError("--judge-method: evaluation judges with contrast or pairwise")
                }
                let judges = judge.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                guard !judges.isEmpty else { throw ValidationError("--judge: name at least one model") }
                if judges.count > 1 && judgeMethod == .pairwise { throw ValidationError("--judge: a panel needs --judge-method contrast") }
                let judgeBackends = try judges.enumerated().map { try backend(try model($1, role: $0 == 0 ? "judge" : "judge\($0 + 1)")) }
                var evaluator = Evaluator(policy: try backend(try model(policy, role: "policy")),
                                          baseline: try backend(try model(baseline, role: "baseline")),
                                          judge: judgeBackends[0], constitution: constitution,
                                          sampling: sampling, system: nil, seed: seed, batchSize: batchSize,
                                          judgeLayout: judgeLayout ?? JudgePrompts.defaultLayout, progress: { reporter.message($0) })
                if judgeMethod == .contrast {
                    var judgeSpec = JudgeSpec.evaluation(models: judgeBackends.map(\.name))
                    judgeSpec.examples = judgeExamples
                    evaluator.pairJudge = PairJudge(spec: judgeSpec, constitution: constitution,
                                                    backends: judgeBackends, seed: seed, stage: "evaluate/judge")
                }
                var rm: (() throws -> RewardModelScorer)?
                if let rewardModel { rm = { try RewardModelScorer(directory: URL(fileURLWithPath: rewardModel)) } }
                let result = try evaluator.run(heldout: heldout, benign: benignPrompts, sycophancy: probes, rewardModel: rm, directory: out)
                for line in EvaluationTable.lines(result) { print(line) }
                print("outputs: \(out.path)/evaluation.json, samples.jsonl")
            }
        }
    }
}

extension JudgeLayout: ExpressibleByArgument {}
extension JudgeMethod: ExpressibleByArgument {}
extension ExampleSelection: ExpressibleByArgument {}
extension ExportFormat: ExpressibleByArgument {}
