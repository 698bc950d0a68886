import ArgumentParser
import Foundation
import PipelineKit

/// The `precept` command: a thin layer that parses arguments, calls the libraries and turns
/// their errors into messages and exit codes.
@main
struct Precept: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "precept",
        abstract: "Constitutional AI and RLAIF pipelines: generate → critique → revise → judge → train.",
        version: PreceptVersion.string,
        subcommands: [Validate.self]
    )
}

/// Exit statuses shared by every subcommand.
enum ExitStatus {
    /// Bad input: a configuration, prompt or model file is wrong.
    static let invalidInput: Int32 = 1
}

/// Prints a library error the way every subcommand does, and returns the exit code for it.
func report(_ error: Error) -> ExitCode {
    let message = (error as? LocalizedError)?.errorDescription ?? String(describing: error)
    FileHandle.standardError.write(Data((message + "\n").utf8))
    return ExitCode(ExitStatus.invalidInput)
}
