import ArgumentParser
import Dispatch
import Foundation
import PipelineKit
#if canImport(Glibc)
import Glibc
#endif

/// Progress on standard error: one updating line on a terminal, periodic lines otherwise.
final class TerminalReporter: RunReporter {
    private let isTerminal = isatty(STDERR_FILENO) == 1
    private var lastLine = Date.distantPast
    private var lastStage = ""

    func progress(_ s: ProgressState) {
        let eta = s.eta.map { String(format: " · ETA %@", Self.duration($0)) } ?? ""
        let line = String(format: "[%@] %d/%d · %.1f tokens/s · calls: %d run, %d cached%@",
                          s.stage, s.done, s.total, s.tokensPerSecond, s.executed, s.cached, eta)
        if isTerminal {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
            if s.done == s.total { FileHandle.standardError.write(Data("\n".utf8)) }
        } else if s.done == s.total || s.stage != lastStage || Date().timeIntervalSince(lastLine) > 5 {
            note(line)
            lastLine = Date()
        }
        lastStage = s.stage
    }

    func message(_ text: String) { note(text) }

    static func duration(_ seconds: Double) -> String {
        seconds >= 60 ? String(format: "%dm%02ds", Int(seconds) / 60, Int(seconds) % 60) : String(format: "%.0fs", seconds)
    }
}

/// Exit status of a run stopped by Ctrl-C (128 + SIGINT), as shells report it.
let interruptedStatus: Int32 = 130

/// First Ctrl-C requests a stop after the current batch or training step; a second exits at once.
func installInterruptHandler(_ stop: StopFlag) -> DispatchSourceSignal {
    signal(SIGINT, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
    var presses = 0
    source.setEventHandler {
        presses += 1
        if presses > 1 { Glibc.exit(interruptedStatus) }
        note("\nstopping after the current batch (Ctrl-C again to quit now)")
        stop.request()
    }
    source.resume()
    return source
}

extension Precept {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a pipeline's stages in order; rerunning the same command resumes.",
            discussion: """
                Every model call is cached by (model, exact prompt, sampling parameters, seed), so a rerun after an \
                edit re-executes only the calls whose prompts changed. Ctrl-C stops after the current batch; \
                everything finished is saved.
                """)

        @Argument(help: "The pipeline file.") var pipeline: String
        @Option(help: "Run directory (default: the pipeline's `output`).") var output: String?
        @Option(help: "Call cache directory (default: $PRECEPT_CACHE_DIR, else .precept-cache beside the run).") var cacheDir: String?
        @Option(help: "Use only the first N prompts.") var limit: Int?
        @Option(help: "Run only this stage (its inputs must be stored already).") var only: String?
        @Option(help: "Start at this stage.") var from: String?
        @Option(help: "Model calls per batch (one transaction each).") var batchSize = 8
        @Flag(help: "Write into a folder that holds other files, or move another pipeline's run there into previous-<name>-<time>/ and start a new run.")
        var force = false

        func validate() throws {
            if only != nil && from != nil { throw ValidationError("use --only or --from, not both") }
            if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
            if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        }

        func run() throws {
            let stop = StopFlag()
            let source = installInterruptHandler(stop)
            defer { withExtendedLifetime(source) {} }

            let reporter = TerminalReporter()
            let options = RunOptions(output: output.map { URL(fileURLWithPath: $0) },
                                     cacheDirectory: (cacheDir ?? ProcessInfo.processInfo.environment["PRECEPT_CACHE_DIR"])
                                         .map { URL(fileURLWithPath: $0) },
                                     limit: limit, only: only, from: from, batchSize: batchSize, force: force)
            let runner = PipelineRunner(pipelinePath: pipeline, options: options, reporter: reporter, stop: stop)
            do {
                let summary = try runner.run()
                print("run directory: \(summary.directory.path)")
                for s in summary.stages where ["sft", "dpo", "reward_model"].contains(s.kind) {
                    print("  \(s.id) [\(s.kind)]: adapter, metrics and summary in \(summary.directory.appendingPathComponent(s.id).path)")
                }
                for s in summary.stages where !["export", "sft", "dpo", "reward_model"].contains(s.kind) {
                    let flags = s.flagged.isEmpty ? "" : " (flagged: " + s.flagged.sorted { $0.key < $1.key }
                        .map { "\($0.value) \($0.key)" }.joined(separator: ", ") + ")"
                    print("  \(s.id) [\(s.kind)]: \(s.rows) rows\(flags)")
                }
                for e in summary.exports {
                    print("  export \(e.format): \(e.counts) → \(e.directory)" + (e.note.map { "\n    note: " + $0 } ?? ""))
                }
                print("report: \(summary.report.path)")
                print(String(format: "model calls: %d run, %d cached · %d tokens generated · %.1f s",
                             summary.executedCalls, summary.cachedCalls, summary.generatedTokens, summary.seconds))
            } catch RunError.interrupted(let batches) {
                _ = report(RunError.interrupted(completedBatches: batches))
                throw ExitCode(interruptedStatus)
            } catch {
                throw report(error)
            }
        }
    }
}
