import Foundation
import Testing
import PipelineTestSupport
@testable import PipelineKit

/// The constitutions, pipelines and prompt sets the project ships decode and meet their counts.
@Suite struct ShippedFilesTests {
    func path(_ relative: String) -> String { repositoryRoot.appendingPathComponent(relative).path }

    @Test func harmlessConstitution() throws {
        let c = try Constitution.load(path: path("constitutions/harmless.yaml"))
        #expect(c.name == "harmless")
        #expect(c.principles.count >= 12)
        #expect(c.fewShot.count >= 3)
        // The areas the Foundation issue lists, each covered by at least one principle's tags.
        for tag in ["harm", "illegal", "harassment", "self-harm", "privacy", "medical", "legal", "financial",
                    "manipulation", "deception"] {
            #expect(c.tags.contains(where: { $0.contains(tag) }), "no principle tagged like \(tag); tags: \(c.tags)")
        }
    }

    @Test func honestConstitution() throws {
        let c = try Constitution.load(path: path("constitutions/honest.yaml"))
        #expect(c.name == "honest")
        #expect(c.principles.count >= 3)
        #expect(c.fewShot.count >= 3)
        for tag in ["sycophancy", "uncertainty", "over-refusal"] {
            #expect(c.tags.contains(tag), "no principle tagged \(tag); tags: \(c.tags)")
        }
    }

    @Test(arguments: ["quickstart", "cai-dpo", "rlaif-ppo", "remote"])
    func shippedPipelineValidates(name: String) throws {
        let summary = try PipelineValidator.validate(path: path("pipelines/\(name).yaml"))
        #expect(summary.pipeline.name == name)
        #expect(summary.promptCount > 0)
        let result = try CLI.run(["validate", path("pipelines/\(name).yaml")])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("pipeline \(name)"))
    }

    @Test func quickstartIsSmall() throws {
        let summary = try PipelineValidator.validate(path: path("pipelines/quickstart.yaml"))
        #expect(summary.promptCount == 8)
        #expect(summary.pipeline.stages.map(\.kind.keyword) == ["generate", "critique", "revise", "judge", "export", "export"])
    }

    @Test(arguments: [("red-team", 200), ("benign-edgy", 100), ("sycophancy", 60), ("heldout", 60)])
    func promptSetCounts(name: String, minimum: Int) throws {
        let records = try PromptFile.read(path: path("data/prompts/\(name).jsonl"), idField: "id")
        #expect(records.count >= minimum)
    }

    @Test func sycophancyPromptsCarryTheFalseClaim() throws {
        for record in try PromptFile.read(path: path("data/prompts/sycophancy.jsonl"), idField: "id") {
            #expect(record.fields["false_claim"]?.isEmpty == false, "\(record.id)")
            #expect(record.fields["truth"]?.isEmpty == false, "\(record.id)")
        }
    }

    @Test func heldoutIsDisjointFromTheOtherSets() throws {
        func normalised(_ s: String) -> String { s.lowercased().filter { $0.isLetter || $0.isNumber } }
        let heldout = Set(try PromptFile.read(path: path("data/prompts/heldout.jsonl")).map { normalised($0.text) })
        for other in ["red-team", "benign-edgy", "sycophancy"] {
            let texts = Set(try PromptFile.read(path: path("data/prompts/\(other).jsonl")).map { normalised($0.text) })
            #expect(heldout.isDisjoint(with: texts), "heldout shares prompts with \(other)")
        }
    }

    @Test func versionAndHelp() throws {
        let version = try CLI.run(["--version"])
        #expect(version.status == 0)
        #expect(version.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == PreceptVersion.string)
        let help = try CLI.run(["--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("validate"))
    }
}
