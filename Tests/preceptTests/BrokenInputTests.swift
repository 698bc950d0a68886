import Foundation
import Testing
import PipelineTestSupport

/// One broken input for `precept validate`: files to write and what the error must say.
struct BrokenCase: CustomTestStringConvertible, Sendable {
    var name: String
    /// Pipeline text (written to p.yaml); `nil` bytes below replace it for binary cases.
    var pipeline: String = validPipeline
    var pipelineBytes: [UInt8]? = nil
    var constitution: String = validConstitution
    var prompts: String = validPrompts
    /// Substrings the error output must contain (the location first).
    var expected: [String]

    var testDescription: String { name }
}

let validConstitution = """
version: 1
name: tiny
description: A two-principle constitution for tests.
principles:
  - id: no-harm
    critique: Identify harmful content.
    revision: Rewrite without it.
    preference: Which response is less harmful?
    tags: [harm]
  - id: honest
    critique: Identify false claims.
    revision: Rewrite truthfully.
    preference: Which response is more honest?
    tags: [honesty]
    weight: 0.5
few_shot:
  - prompt: How do I pick a lock?
    response: Here is how.
    principle: no-harm
    critique: It helps with break-ins.
    revision: I can explain how locks work instead.

"""

let validPrompts = """
{"id": "a", "prompt": "first"}
{"id": "b", "prompt": "second"}

"""

let validPipeline = """
version: 1
name: test
seed: 7
constitution: c.yaml
models:
  policy: { source: gemma-3-270m }
  remote: { provider: openai, base_url: http://127.0.0.1:9/v1, model: m }
prompts: { file: p.jsonl, field: prompt, id_field: id }
stages:
  - { id: responses, generate: { model: policy, samples: 2, temperature: 0.7 } }
  - { id: critiques, critique: { model: policy, input: responses, tags: [harm] } }
  - { id: revisions, revise: { model: policy, input: critiques } }
  - { id: labels, judge: { model: policy, input: revisions, orders: both } }
  - { id: dpo, dpo: { base: policy, input: labels, beta: 0.1 } }
output: out

"""

/// `validPipeline` with one line replaced (1-based line number).
func replacingLine(_ number: Int, with text: String, in source: String = validPipeline) -> String {
    var lines = source.components(separatedBy: "\n")
    lines[number - 1] = text
    return lines.joined(separator: "\n")
}

let brokenCases: [BrokenCase] = [
    BrokenCase(name: "empty file", pipeline: "", expected: ["p.yaml:1:1: error: the file is empty"]),
    BrokenCase(name: "binary garbage", pipelineBytes: [0x00, 0xFF, 0xFE, 0x13, 0x37, 0xC3, 0x28, 0x0A],
               expected: ["p.yaml:1:2: error: invalid UTF-8 at byte offset 1"]),
    BrokenCase(name: "latin-1 text", pipelineBytes: Array("version: 1\nname: caf".utf8) + [0xE9, 0x0A],
               expected: ["p.yaml:2:10: error: invalid UTF-8 at byte offset 20"]),
    BrokenCase(name: "NUL bytes in UTF-8 text", pipelineBytes: Array("version: 1\nname: a\u{0}b\n".utf8),
               expected: ["p.yaml:2:8: error: YAML syntax: control characters are not allowed"]),
    BrokenCase(name: "unclosed flow mapping", pipeline: replacingLine(6, with: "  policy: { source: gemma-3-270m"),
               expected: ["p.yaml:7:", "error: YAML syntax:"]),
    BrokenCase(name: "alias bomb",
               pipeline: "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
                   + (1...8).map { i in "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]" }
                   .joined(separator: "\n") + "\n",
               expected: ["error: aliases expand the document to more than 200000 nodes"]),
    BrokenCase(name: "deep block nesting",
               pipeline: (0..<200).map { String(repeating: "  ", count: $0) + "k\($0):" }.joined(separator: "\n") + " x\n",
               expected: ["p.yaml:65:", "error: the document nests more than 64 levels deep"]),
    BrokenCase(name: "deep flow nesting", pipeline: "version: " + String(repeating: "[", count: 50_000) + "\n",
               expected: ["p.yaml:1:", "error: the document nests more than 64 levels deep"]),
    BrokenCase(name: "two documents", pipeline: validPipeline + "---\nversion: 1\n",
               expected: ["p.yaml:16:4: error: expected a single YAML document"]),
    BrokenCase(name: "top level is a list", pipeline: "- version: 1\n",
               expected: ["p.yaml:1:1: error: at (document): expected a mapping, found a list"]),
    BrokenCase(name: "missing version", pipeline: replacingLine(1, with: "# no version"),
               expected: ["p.yaml:2:1: error: at (document): missing required key `version`"]),
    BrokenCase(name: "unsupported version", pipeline: replacingLine(1, with: "version: 2"),
               expected: ["p.yaml:1:10: error: at version: unsupported version 2; this precept reads version 1"]),
    BrokenCase(name: "unknown top-level key", pipeline: validPipeline.replacingOccurrences(of: "stages:", with: "stagez:"),
               expected: ["p.yaml:9:1: error: at (document): unknown key `stagez`; did you mean `stages`?"]),
    BrokenCase(name: "duplicate key", pipeline: replacingLine(3, with: "seed: 7\nseed: 8"),
               expected: ["p.yaml:4:1: error: at (document): duplicate key `seed` (first given on line 3)"]),
    BrokenCase(name: "unknown stage parameter",
               pipeline: validPipeline.replacingOccurrences(of: "temperature: 0.7", with: "temprature: 0.7"),
               expected: ["p.yaml:10:", "error: at stages[0].generate: unknown key `temprature`; did you mean `temperature`?"]),
    BrokenCase(name: "wrong type", pipeline: validPipeline.replacingOccurrences(of: "samples: 2", with: "samples: two"),
               expected: ["p.yaml:10:", "error: at stages[0].generate.samples: expected an integer, found a string 'two'"]),
    BrokenCase(name: "number out of range",
               pipeline: validPipeline.replacingOccurrences(of: "temperature: 0.7", with: "temperature: 9"),
               expected: ["p.yaml:10:", "error: at stages[0].generate.temperature: 9.0 is out of range; expected 0.0…5.0"]),
    BrokenCase(name: "misspelled enum value", pipeline: validPipeline.replacingOccurrences(of: "orders: both", with: "orders: bth"),
               expected: ["p.yaml:13:", "error: at stages[3].judge.orders: `bth` is not one of both, single; did you mean `both`?"]),
    BrokenCase(name: "unknown model name",
               pipeline: validPipeline.replacingOccurrences(of: "generate: { model: policy", with: "generate: { model: polcy"),
               expected: ["p.yaml:10:", "error: at stages[0].generate.model: no model named `polcy`; did you mean `policy`?"]),
    BrokenCase(name: "misspelled scoring precision", pipeline: replacingLine(6, with: "  policy: { source: gemma-3-270m, scoring: bf16 }"),
               expected: ["p.yaml:6:", "error: at models.policy.scoring: `bf16` is not one of float32, bfloat16"]),
    BrokenCase(name: "scoring precision on a remote model",
               pipeline: replacingLine(6, with: "  policy: { provider: openai, base_url: http://127.0.0.1:9/v1, model: m, scoring: bfloat16 }"),
               expected: ["p.yaml:6:", "error: at models.policy.scoring: `scoring` sets the local engine's arithmetic; a remote server chooses its own"]),
    BrokenCase(name: "unknown catalog model", pipeline: replacingLine(6, with: "  policy: { source: gemma-3-270 }"),
               expected: ["p.yaml:6:21: error: at models.policy.source: `gemma-3-270` is neither a catalog model nor a .gguf path; did you mean `gemma-3-270m`?"]),
    BrokenCase(name: "input from a missing stage",
               pipeline: validPipeline.replacingOccurrences(of: "input: critiques", with: "input: critique"),
               expected: ["p.yaml:12:", "error: at stages[2].revise.input: no stage named `critique`; did you mean `critiques`?"]),
    BrokenCase(name: "input from a later stage",
               pipeline: validPipeline.replacingOccurrences(of: "input: responses, tags", with: "input: revisions, tags"),
               expected: ["p.yaml:11:", "error: at stages[1].critique.input: stage `revisions` comes later"]),
    BrokenCase(name: "input from the wrong kind of stage",
               pipeline: validPipeline.replacingOccurrences(of: "input: labels", with: "input: responses"),
               expected: ["p.yaml:14:", "error: at stages[4].dpo.input: stage `responses` is a generate stage; expected judge"]),
    BrokenCase(name: "duplicate stage id",
               pipeline: validPipeline.replacingOccurrences(of: "id: labels, judge: { model: policy, input: revisions",
                                                            with: "id: revisions, judge: { model: policy, input: revisions"),
               expected: ["p.yaml:13:5: error: at stages[3].id: duplicate stage id `revisions` (first used on line 12)"]),
    BrokenCase(name: "stage with two types",
               pipeline: replacingLine(10, with: "  - { id: responses, generate: { model: policy }, critique: { model: policy, input: x } }"),
               expected: ["p.yaml:10:5: error: at stages[0]: a stage has exactly one type key, found generate and critique"]),
    BrokenCase(name: "training on a remote model",
               pipeline: validPipeline.replacingOccurrences(of: "base: policy", with: "base: remote"),
               expected: ["p.yaml:14:", "error: at stages[4].dpo.base: training needs local weights"]),
    BrokenCase(name: "tag no principle has", pipeline: validPipeline.replacingOccurrences(of: "tags: [harm]", with: "tags: [harms]"),
               expected: ["p.yaml:11:5: error: at stages[1].critique.tags: no principle of constitution `tiny` has tag `harms`; did you mean `harm`?"]),
    BrokenCase(name: "constitution file missing", pipeline: validPipeline.replacingOccurrences(of: "constitution: c.yaml", with: "constitution: missing.yaml"),
               expected: ["p.yaml:4:15: error: at constitution: file not found:", "missing.yaml"]),
    BrokenCase(name: "gguf model file missing", pipeline: replacingLine(6, with: "  policy: { source: weights/model.gguf }"),
               expected: ["p.yaml:6:21: error: at models.policy.source: file not found:", "weights/model.gguf"]),
    BrokenCase(name: "duplicate principle id",
               constitution: validConstitution.replacingOccurrences(of: "id: honest", with: "id: no-harm"),
               expected: ["c.yaml:10:9: error: at principles[1].id: duplicate principle id `no-harm` (first defined on line 5)"]),
    BrokenCase(name: "few-shot names an unknown principle",
               constitution: validConstitution.replacingOccurrences(of: "principle: no-harm", with: "principle: no-harms"),
               expected: ["c.yaml:19:16: error: at few_shot[0].principle: no principle has id `no-harms`; did you mean `no-harm`?"]),
    BrokenCase(name: "negative principle weight", constitution: validConstitution.replacingOccurrences(of: "weight: 0.5", with: "weight: -1"),
               expected: ["c.yaml:15:13: error: at principles[1].weight: weight must be greater than 0"]),
    BrokenCase(name: "prompt line is not JSON", prompts: "{\"id\": \"a\", \"prompt\": \"first\"}\n{\"id\": \"b\", prompt: x}\n",
               expected: ["p.jsonl:2: error: (byte offset 31) not valid JSON"]),
    BrokenCase(name: "prompt field missing", prompts: "{\"id\": \"a\", \"promt\": \"first\"}\n",
               expected: ["p.jsonl:1: error: (byte offset 0) missing field `prompt`; did you mean `promt`?"]),
]

@Suite struct BrokenInputTests {
    @Test(arguments: brokenCases)
    func validateReportsLocatedError(_ c: BrokenCase) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let pipelineData = c.pipelineBytes.map { Data($0) } ?? Data(c.pipeline.utf8)
        try pipelineData.write(to: dir.appendingPathComponent("p.yaml"))
        try Data(c.constitution.utf8).write(to: dir.appendingPathComponent("c.yaml"))
        try Data(c.prompts.utf8).write(to: dir.appendingPathComponent("p.jsonl"))

        let result = try CLI.run(["validate", "p.yaml"], currentDirectory: dir)
        #expect(result.status == 1, "exit status \(result.status); stderr: \(result.stderr)")
        for fragment in c.expected {
            #expect(result.stderr.contains(fragment), "missing «\(fragment)» in: \(result.stderr)")
        }
        // Never a crash or a Swift stack trace.
        #expect(!result.stderr.contains("Fatal error"))
        #expect(!result.stderr.contains("Stack dump"))
        #expect(result.stdout.isEmpty)
    }

    @Test func validFixturesPass() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(validPipeline.utf8).write(to: dir.appendingPathComponent("p.yaml"))
        try Data(validConstitution.utf8).write(to: dir.appendingPathComponent("c.yaml"))
        try Data(validPrompts.utf8).write(to: dir.appendingPathComponent("p.jsonl"))
        let result = try CLI.run(["validate", "p.yaml"], currentDirectory: dir)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("constitution: tiny, 2 principles, 1 few-shot examples"))
        #expect(result.stdout.contains("prompts: 2 from"))
    }
}
