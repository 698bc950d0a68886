import ArgumentParser
import PipelineKit

extension Precept {
    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a pipeline and everything it references (constitution, prompts, stage wiring, models).",
            discussion: "Prints a short summary on success. Errors name file:line:column and the key path; the exit status is 1 if any pipeline is invalid."
        )

        @Argument(help: "Pipeline files (pipelines/*.yaml).")
        var pipelines: [String]

        mutating func run() throws {
            var failed = false
            for path in pipelines {
                do {
                    print(try PipelineValidator.validate(path: path).text)
                } catch {
                    _ = report(error)
                    failed = true
                }
            }
            if failed { throw ExitCode(ExitStatus.invalidInput) }
        }
    }
}
