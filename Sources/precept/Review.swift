import ArgumentParser
import Foundation
import ModelKit
import PipelineKit
#if canImport(Glibc)
import Glibc
#endif

extension Precept {
    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Review original vs revised responses with the principle, critique and word-level changes.")

        @Argument(help: "A run directory.") var directory: String
        @Option(help: "Only this principle id.") var principle: String?
        @Option(help: "Only principles with this tag.") var tag: String?
        @Option(help: "Only this record id.") var record: String?
        @Flag(help: "Hide revisions identical to their original.") var changedOnly = false
        @Option(help: "Page to show (1-based).") var page = 1
        @Option(help: "Records per page.") var perPage = 10
        @Flag(help: "Plain markers ([-removed-] {+added+}) even on a terminal.") var plain = false

        func run() throws {
            try running {
                let view = try RunView(directory: URL(fileURLWithPath: directory))
                let all = view.filtered(try view.chains(), .init(principle: principle, tag: tag, record: record, changedOnly: changedOnly))
                guard page >= 1, perPage >= 1 else { throw ValidationError("--page and --per-page start at 1") }
                let pages = max(1, (all.count + perPage - 1) / perPage)
                let slice = all.dropFirst((page - 1) * perPage).prefix(perPage)
                let color = !plain && isatty(STDOUT_FILENO) == 1
                let probabilities = try view.revisionProbabilities()
                let verdicts = try view.gateVerdicts()
                let stageID = view.revisionStage?.id
                let human = try stageID.map {
                    try HumanOverride.resolve(store: view.store, judge: HumanOverride.judge(comparing: $0, in: view.pipeline), revisionStage: $0).byKey
                } ?? [:]
                func bold(_ s: String) -> String { color ? "\u{1B}[1m\(s)\u{1B}[0m" : s }
                for c in slice {
                    // Model and prompt text may hold terminal escape sequences: shown, never obeyed.
                    let e = TerminalText.escaped
                    let flags = c.flags.isEmpty ? "" : " · flags: \(c.flags.joined(separator: ", "))"
                    print(bold("── \(e(c.record, true)) · sample \(c.sample) · principle \(e(c.principle ?? "none", true)) · rounds \(c.rounds)\(flags)"))
                    print("Prompt:    \(e(c.prompt, true))")
                    print("Critique:  \(e(c.critique, true))")
                    let reviewed = human["\(c.record)\u{1F}\(c.sample)"]
                    if let p = probabilities["\(c.record)\u{1F}\(c.sample)"] {
                        let endorsed = verdicts?.endorses(record: c.record, sample: c.sample) == true
                        print(String(format: "Judge:     P(revision better) = %.3f · %@", p,
                                     endorsed ? "endorsed" : (reviewed?.revisionPreference == 1 ? "not endorsed (kept: a human accepted it)"
                                         : verdicts?.flagged(record: c.record, sample: c.sample) == true
                                             ? "not endorsed: flagged by the harm check (a revision gate leaves it out)"
                                             : "not endorsed (a revision gate leaves it out)")))
                    }
                    if let reviewed, reviewed.revisionPreference != nil || reviewed.edited != nil {
                        let verdict = ["-1": "original preferred (left out of SFT data)", "0": "tie", "1": "revision accepted"][
                            reviewed.revisionPreference.map(String.init) ?? ""] ?? "no verdict"
                        print("Human:     \(verdict)" + (reviewed.edited != nil ? " · revision edited (shown below)" : ""))
                    }
                    let revision = reviewed?.edited ?? c.revision
                    let pieces = WordDiff.diff(e(c.original, true), e(revision, true))
                    print("Revision:  \(color ? WordDiff.colored(pieces) : WordDiff.plain(pieces))")
                    print("")
                }
                let first = all.isEmpty ? 0 : (page - 1) * perPage + 1
                print("page \(page)/\(pages) · records \(first)–\((page - 1) * perPage + slice.count) of \(all.count)"
                    + (page < pages ? " · next: --page \(page + 1)" : ""))
                if let verdicts, verdicts.labelled > 0 {
                    print(verdicts.summary + " (what a `gate` keeps)")
                }
            }
        }
    }

    struct Report: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a self-contained HTML report of a run (no network requests; open it in any browser).")

        @Argument(help: "A run directory.") var directory: String
        @Option(help: "Output file (default: RUN/report.html).") var out: String?

        func run() throws {
            try running {
                let view = try RunView(directory: URL(fileURLWithPath: directory))
                let path = out ?? URL(fileURLWithPath: directory).appendingPathComponent("report.html").path
                try HTMLReport.checkDestination(path, run: URL(fileURLWithPath: directory))
                try HTMLReport.render(view).write(toFile: path, atomically: true, encoding: .utf8)
                print(path)
            }
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Export a run's data as train/test JSONL that Hugging Face datasets, TRL and OpenRLHF read.")

        @Argument(help: "A run directory.") var directory: String
        @Option(help: "sft (messages, from revisions), trl or openrlhf (preferences, from judge labels).") var format: ExportFormat
        @Option(help: "Output directory.") var out: String
        @Option(help: "Fraction of records in test.jsonl.") var testFraction = 0.1
        @Option(help: "Stage to export (default: the last revision stage).") var stage: String?
        @Option(help: "sft: keep only revisions this judge stage endorses (the revision gate, docs/pipeline-format.md).") var gate: String?

        func run() throws {
            try running {
                guard (0...0.9).contains(testFraction) else { throw ValidationError("--test-fraction must be in 0…0.9") }
                let view = try RunView(directory: URL(fileURLWithPath: directory))
                switch format {
                case .sft:
                    guard let id = stage ?? view.revisionStage?.id else {
                        throw ValidationError("this run has no revise or critique_revise stage to export")
                    }
                    let provenance = try Exporter.provenance(store: view.store, pipeline: view.pipeline, constitution: view.constitution)
                    if let gate {
                        guard case .judge(let judge)? = view.pipeline.stage(id: gate)?.kind else {
                            throw ValidationError("--gate: `\(gate)` is not a judge stage of this run")
                        }
                        guard judge.pairs == .originalVsRevision, judge.input == id else {
                            throw ValidationError("--gate: judge `\(gate)` must compare original and revision of `\(id)` (pairs: original_vs_revision, input: \(id))")
                        }
                    }
                    let selection = try RevisionGate.apply(try view.chains(stage: id), gate: gate, store: view.store, stage: id,
                                                           pipeline: view.pipeline)
                    let summary = try Exporter.exportSFT(chains: selection.kept, seed: view.pipeline.seed, testFraction: testFraction,
                                                         to: URL(fileURLWithPath: out),
                                                         provenance: provenance.merging(["human_labels": selection.provenance]) { $1 },
                                                         gatedOut: selection.gatedOut)
                    print("sft: \(summary.counts) → \(summary.directory)" + (summary.note.map { "\n  note: " + $0 } ?? ""))
                case .trl, .openrlhf:
                    guard let judge = stage ?? view.judgeStage?.id else {
                        throw ValidationError("\(format.rawValue) exports preference pairs from judge labels; this run has no judge stage")
                    }
                    let summary = try Exporter.exportPreferences(
                        format: format, judge: judge, store: view.store, pipeline: view.pipeline,
                        constitution: view.constitution, testFraction: testFraction, to: URL(fileURLWithPath: out))
                    print("\(format.rawValue): \(summary.counts) → \(summary.directory)" + (summary.note.map { "\n  note: " + $0 } ?? ""))
                }
            }
        }
    }
}

extension Precept {
    struct Labels: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Diagnostics of a run's judge labels: position bias, ties, length bias, revision win rate.")

        @Argument(help: "A run directory.") var directory: String
        @Option(help: "Judge stage (default: the last one).") var stage: String?
        @Flag(help: "Print JSON (keys: pairs, order_agreement, first_position_rate, tie_rate, mean_length_chosen, mean_length_rejected, revision_win_rate, per_principle).")
        var json = false

        func run() throws {
            try running {
                let view = try RunView(directory: URL(fileURLWithPath: directory))
                guard let id = stage ?? view.judgeStage?.id else { throw ValidationError("this run has no judge stage") }
                var revisionStage: String?
                if case .judge(let spec)? = view.pipeline.stage(id: id)?.kind, spec.pairs == .originalVsRevision { revisionStage = spec.input }
                let diagnostics = try LabelDiagnostics.load(stage: id, store: view.store, revisionStage: revisionStage)
                if json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys]
                    print(String(decoding: try encoder.encode(diagnostics), as: UTF8.self))
                } else {
                    diagnostics.text.forEach { print($0) }
                }
            }
        }
    }
}

extension Precept {
    struct ReviewLabels: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "review",
            abstract: "Review a run in the browser (human verdicts, edits, notes), or import and export human labels.",
            discussion: """
                Without --import or --export-labels: serves the review app on loopback and prints its URL, which \
                carries a random access token. Keys: j/k move, a/b/t verdict (A better = accept the revision), \
                e edit the revision, n note, u undo. Each action is written to the run's store at once; it is safe \
                while `precept run` writes the same run.

                --import rows: record, sample (0), stage (last judge stage), verdict (candidate_0 | candidate_1 | tie | \
                revision | original on a judge stage; accept | reject on a revise stage), edited_revision, note, reviewer. \
                Human verdicts then replace the judge's labels in exports and training, edited revisions replace \
                revisions in SFT data, and `precept labels` reports judge-vs-human agreement. --export-labels writes \
                the labels in force with their pairs (prompt, response_a, response_b, better: a pairs file for \
                `precept judge` and judge calibration).
                """)

        @Argument(help: "A run directory.") var directory: String
        @Option(name: .customLong("import"), help: "Human labels to add (JSONL).") var importFile: String?
        @Option(help: "Write the run's human labels here (JSONL).") var exportLabels: String?
        @Flag(help: "With --export-labels: only decided pairs (a calibration or gold file for the judge as it is).") var decidedOnly = false
        @Option(help: "Reviewer name for the labels written (and for imported rows without `reviewer`).")
        var reviewer = ProcessInfo.processInfo.environment["USER"] ?? "reviewer"
        @Option(help: "The review app's port (0: any free port).") var port: Int = 8470
        @Option(help: "The address to listen on. Anything but loopback exposes the run to the network (the token still applies).")
        var host = "127.0.0.1"
        @Flag(help: "Serve without writes.") var readOnly = false

        func validate() throws {
            guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0…65535") }
            guard !reviewer.isEmpty else { throw ValidationError("--reviewer must not be empty") }
            if readOnly && importFile != nil { throw ValidationError("--read-only and --import cannot go together") }
        }

        func run() throws {
            try running {
                let run = URL(fileURLWithPath: directory)
                if let importFile {
                    let view = try RunView(directory: run)
                    let labels = try HumanLabelsFile.read(path: importFile, view: view, reviewer: reviewer)
                    try RunStore(directory: run).saveHumanLabels(labels)
                    let verdicts = labels.filter { $0.verdict != nil }.count, edits = labels.filter { $0.edited != nil }.count
                    print("imported \(labels.count) human labels (\(verdicts) verdicts, \(edits) edited revisions) into \(run.appendingPathComponent("run.sqlite").path)")
                }
                if importFile == nil && exportLabels == nil {
                    let session = try ReviewSession(directory: run, reviewer: reviewer, readOnly: readOnly)
                    if !ReviewServer.isLoopback(host) {
                        note("warning: --host \(host) is not loopback: anyone who can reach this address and port and has the URL's token can read this run\(readOnly ? "" : " and write labels")")
                    }
                    try ReviewServer.serve(session: session, host: host, port: UInt16(port))
                }
                if let exportLabels {
                    let rows = try HumanLabelsFile.rows(view: try RunView(directory: run), decidedOnly: decidedOnly)
                    let lines = try rows.map { String(decoding: try JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self) }
                    do { try (lines.joined(separator: "\n") + (lines.isEmpty ? "" : "\n")).write(toFile: exportLabels, atomically: true, encoding: .utf8) } catch {
                        throw RunError.cannotWrite(path: exportLabels)
                    }
                    print("\(rows.count) human labels → \(exportLabels)")
                }
            }
        }
    }
}
