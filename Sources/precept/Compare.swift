import ArgumentParser
import Foundation
import ModelKit
import PipelineKit

extension Precept {
    struct Compare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compare two runs of the same prompts (two constitution versions, two judge settings).",
            discussion: """
                Pairs the runs' final revisions by record and sample. Prints revision changes, judge label flips, \
                per-principle revision win rates with bootstrap 95 % intervals, and the constitution's changes. \
                --json keys: records_compared, labelled_in_both, label_flips, revisions_changed, revision_win_rate \
                {a, b}, per_principle [{id, n_a, n_b, win_rate_a, win_rate_b, ci_a, ci_b, mean_probability_a, \
                mean_probability_b}], constitution_changed {added, removed, edited}.
                """)

        @Argument(help: "Run A (e.g. the constitution before the edit).") var runA: String
        @Argument(help: "Run B.") var runB: String
        @Flag(help: "Print the comparison as one JSON object.") var json = false
        @Option(help: "Also write a self-contained HTML page with both revisions side by side.") var html: String?
        @Option(help: "Records to print in text mode (those whose revision or label changed).") var records = 10

        func validate() throws {
            if records < 0 { throw ValidationError("--records must be 0 or more") }
        }

        func run() throws {
            try running {
                let a = try RunView(directory: URL(fileURLWithPath: runA)), b = try RunView(directory: URL(fileURLWithPath: runB))
                let comparison = try RunComparison.compare(a, b)
                if let html {
                    try HTMLReport.checkDestination(html, run: URL(fileURLWithPath: runA))
                    try HTMLReport.checkDestination(html, run: URL(fileURLWithPath: runB))
                    try comparison.html(nameA: runA, nameB: runB).write(toFile: html, atomically: true, encoding: .utf8)
                }
                if json {
                    try printJSON(comparison.json)
                    return
                }
                comparison.summaryLines.forEach { print($0) }
                let changes = LineDiff.unified(comparison.constitutionDiff)
                if !changes.isEmpty {
                    print("constitution diff (A → B):")
                    changes.forEach { print("  " + TerminalText.escaped($0, keepNewlines: false)) }
                }
                let changed = comparison.pairs.filter { $0.revisionsDiffer || $0.flipped }
                for p in changed.prefix(records) {
                    let e = { (s: String) in TerminalText.escaped(s) }
                    let probability = { (x: Double?) in x.map { String(format: "%.3f", $0) } ?? "—" }
                    print("")
                    print("── \(e(p.record)) · sample \(p.sample)" + (p.flipped ? " · label flip" : ""))
                    print("Prompt:  \(e(p.prompt))")
                    print("A:       [\(e(p.principleA ?? "none")) · P=\(probability(p.probabilityA))] \(e(p.revisionA))")
                    print("B:       [\(e(p.principleB ?? "none")) · P=\(probability(p.probabilityB))] \(e(p.revisionB))")
                    print("A → B:   \(WordDiff.plain(WordDiff.diff(e(p.revisionA), e(p.revisionB))))")
                }
                if changed.count > records { print("\n… \(changed.count - records) more changed records (--records N, or --html)") }
                if let html { print("html: \(html)") }
            }
        }
    }
}
