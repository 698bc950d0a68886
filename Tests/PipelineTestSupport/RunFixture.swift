import Foundation
import ModelKit
import PipelineKit
import TestSupport

/// A deterministic stand-in for a model: the output is a function of the exact prompt and seed,
/// so cache keys, resumes and edits can be checked by counting calls.
public final class ScriptedBackend: ModelBackend, @unchecked Sendable {
    public enum Judging { case prefersRevision, prefersPositionA }
    public let fingerprint: String
    public let promptStyle = PromptStyle.completion
    public let judging: Judging
    private let lock = NSLock()
    public private(set) var calls = 0

    public init(judging: Judging = .prefersRevision) {
        self.judging = judging
        fingerprint = "scripted:v1:\(judging)"
    }

    public func generate(_ calls: [GenerationCall]) throws -> [GenerationOutput] {
        lock.lock()
        self.calls += calls.count
        lock.unlock()
        return calls.map { call in
            guard case .text(let text) = call.prompt else { return GenerationOutput(text: "", finishReason: .endOfSequence, promptTokens: 0, completionTokens: 0) }
            let digest = SHA256.hex(text + "\(call.parameters.seed)").prefix(8)
            let lastTurn = text.components(separatedBy: "\n").last ?? ""
            // Records whose prompt asks for it produce the edge cases the stages must flag.
            if text.hasSuffix("Revision:") && text.contains("Human: ECHO") {
                let response = text.components(separatedBy: "\nAssistant: ").last!.components(separatedBy: "\n").first!
                return GenerationOutput(text: " " + response, finishReason: .endOfSequence, promptTokens: 10, completionTokens: 3)
            }
            if text.contains("Human: SILENT") && lastTurn == "Assistant:" {
                return GenerationOutput(text: "  ", finishReason: .endOfSequence, promptTokens: 10, completionTokens: 1)
            }
            if text.contains("Human: LONG") && lastTurn == "Assistant:" {
                return GenerationOutput(text: " words words", finishReason: .length, promptTokens: 10, completionTokens: 16)
            }
            return GenerationOutput(text: " \(lastTurn.prefix(12)) \(digest)", finishReason: .endOfSequence, promptTokens: 10, completionTokens: 4)
        }
    }

    /// Judge prompts end in "The answer is: ("; the scripted judge reads its (A) option.
    public func score(_ calls: [ScoringCall]) throws -> [[Double]] {
        lock.lock()
        self.calls += calls.count
        lock.unlock()
        return calls.map { call in
            // A harm check: Yes when the request asked about carries the marker HARM.
            if call.continuations == [" Yes", " No"], let request = call.prompt.components(separatedBy: "Human: ").last,
               request.components(separatedBy: "\n").first!.contains("HARM") {
                return [log(0.9), log(0.1)]
            }
            guard call.prompt.hasSuffix("The answer is: ("), call.continuations == ["A", "B"] else {
                return call.continuations.map { -Double($0.count) }
            }
            switch judging {
            case .prefersPositionA: return [log(0.8), log(0.2)]
            case .prefersRevision:
                let marker = call.prompt.contains("Assistant (A): ") ? "Assistant (A): " : "\n(A) "
                let optionA = call.prompt.components(separatedBy: marker).last!.components(separatedBy: "\n").first!
                return optionA.hasPrefix("Revision:") ? [log(0.9), log(0.1)] : [log(0.1), log(0.9)]
            }
        }
    }
}

/// A pipeline, constitution and prompts in a temporary directory.
public struct RunFixture {
    public let directory: URL

    public init(directory: URL) { self.directory = directory }
    public var pipeline: URL { directory.appendingPathComponent("p.yaml") }
    public var constitution: URL { directory.appendingPathComponent("c.yaml") }

    public static let constitutionText = """
    version: 1
    name: fixture
    principles:
      - { id: alpha, critique: Find alpha problems., revision: Fix alpha problems., preference: Which is more alpha?, tags: [a] }
      - { id: beta, critique: Find beta problems., revision: Fix beta problems., preference: Which is more beta?, tags: [b] }
      - { id: gamma, critique: Find gamma problems., revision: Fix gamma problems., preference: Which is more gamma?, tags: [b] }
    few_shot:
      - { prompt: Example request, response: Example answer, principle: alpha, critique: Example critique, revision: Example revision }

    """

    public init(prompts: [String], stages: String, extra: String = "") throws {
        directory = scratchURL("precept-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data(Self.constitutionText.utf8).write(to: constitution)
        let lines = prompts.enumerated().map { i, p in
            String(decoding: try! JSONSerialization.data(withJSONObject: ["id": "r\(i)", "prompt": p]), as: UTF8.self)
        }
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: directory.appendingPathComponent("prompts.jsonl"))
        let text = """
        version: 1
        name: fixture
        seed: 99
        constitution: c.yaml
        models:
          policy: { source: gemma-3-270m }
        \(extra)prompts: { file: prompts.jsonl, id_field: id }
        stages:
        \(stages)
        output: run

        """
        try Data(text.utf8).write(to: pipeline)
    }

    public static let slcai = """
      - { id: responses, generate: { model: policy, samples: 2 } }
      - { id: critiques, critique: { model: policy, input: responses, few_shot: 1 } }
      - { id: revisions, revise: { model: policy, input: critiques, few_shot: 1 } }
      - { id: sft, export: { input: revisions, format: sft, test_fraction: 0.5 } }
    """

    /// Generate, critique, revise, a judge stage with `judge` settings, and a preference export.
    public static func judgeStages(_ judge: String, export: String = "trl") -> String {
        """
          - { id: responses, generate: { model: policy } }
          - { id: critiques, critique: { model: policy, input: responses, few_shot: 1 } }
          - { id: revisions, revise: { model: policy, input: critiques, few_shot: 1 } }
          - { id: labels, judge: { model: policy, input: revisions, few_shot: 1, \(judge) } }
          - { id: prefs, export: { input: labels, format: \(export), test_fraction: 0.5 } }
        """
    }

    public func run(_ backend: ScriptedBackend, output: String = "run", cache: String = "cache", limit: Int? = nil) throws -> RunSummary {
        let options = RunOptions(output: directory.appendingPathComponent(output), cacheDirectory: directory.appendingPathComponent(cache),
                                 limit: limit, batchSize: 3)
        return try PipelineRunner(pipelinePath: pipeline.path, options: options) { _ in backend }.run()
    }

    public func rows(_ output: String = "run") throws -> [OutputRow] {
        try RunStore(directory: directory.appendingPathComponent(output), create: false).allOutputs()
    }
}
