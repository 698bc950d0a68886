import ArgumentParser
import CQuant
import Foundation
import ModelKit
import PipelineKit

/// The `precept` command: a thin layer that parses arguments, calls the libraries and turns
/// their errors into messages and exit codes.
@main
struct Precept: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "precept",
        abstract: "Constitutional AI and RLAIF pipelines: generate → critique → revise → judge → train.",
        version: PreceptVersion.string,
        subcommands: [Validate.self, Run.self, Diff.self, Compare.self, ReviewLabels.self, Labels.self, Report.self, Export.self, Model.self, Tokenize.self, Generate.self, Score.self, Logits.self, Bench.self, Train.self, Eval.self, ScoreRM.self, BenchTrain.self, Judge.self]
    )

    /// Buffers of 16 MiB and more (large GEMM tiles, logits chunks, activations) are mapped and
    /// unmapped by malloc, and the threshold stays fixed: with glibc's adaptive threshold, freed
    /// buffers stayed in per-thread heaps and `precept bench` peaked at 3.8 GB (1.5B model) or
    /// 1.2 GB (gemma-3-270m) in some runs and 1.1 GB / 0.4 GB in others (docs/performance.md).
    static func main() {
        // PRECEPT_MMAP_THRESHOLD (bytes; 0 keeps glibc's adaptive default) is for measuring.
        let threshold = ProcessInfo.processInfo.environment["PRECEPT_MMAP_THRESHOLD"].flatMap { Int64($0) } ?? (1 << 24)
        if threshold > 0 { _ = pq_map_large_allocations(threshold) }
        Self.main(nil)
    }
}

/// Exit statuses shared by every subcommand.
enum ExitStatus {
    /// Bad input: a configuration, prompt or model file is wrong.
    static let invalidInput: Int32 = 1
}

/// Prints a library error the way every subcommand does, and returns the exit code for it.
func report(_ error: Error) -> ExitCode {
    let message: String
    if error is ConfigError {
        // Already in the compiler's `file:line:column: error: …` form.
        message = (error as? LocalizedError)?.errorDescription ?? String(describing: error)
    } else if (error as NSError).domain == NSCocoaErrorDomain, let path = FileProblem.path(error) {
        // A Foundation file error: the path and the reason, not the NSError dump.
        message = "error: \(path): \(FileProblem.describe(error))"
    } else if let description = (error as? LocalizedError)?.errorDescription {
        message = "error: " + description
    } else {
        message = "error: " + String(describing: error)
    }
    FileHandle.standardError.write(Data((message + "\n").utf8))
    return ExitCode(ExitStatus.invalidInput)
}

/// Runs a subcommand body, turning library errors into a message and exit status 1.
func running(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let exit as ExitCode {
        throw exit
    } catch {
        throw report(error)
    }
}

/// Writes to standard error (progress, diagnostics).
func note(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Prints a JSON object with sorted keys on one line.
func printJSON(_ object: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}
