import Foundation
import Testing
import PipelineTestSupport
import TestSupport
@testable import PipelineKit
#if canImport(Glibc)
import Glibc
#endif

/// `precept run` killed with SIGKILL at several moments and rerun produces exactly the rows of
/// an uninterrupted run (DESIGN.md § Reliability), on a real engine model (a tiny random one).
@Suite(.serialized) struct ResumeTests {
    func makeFixture() throws -> RunFixture {
        let stages = """
          - { id: responses, generate: { model: policy, samples: 2, temperature: 0.8, max_tokens: 40 } }
          - { id: critiques, critique: { model: policy, input: responses, few_shot: 1, max_tokens: 40 } }
          - { id: revisions, revise: { model: policy, input: critiques, few_shot: 1, max_tokens: 40 } }
        """
        var f = try RunFixture(prompts: (0..<40).map { "a b c request \($0)" }, stages: stages)
        try TinyModel(family: .gemma3, seed: 3, vocab: 300, hidden: 64, layers: 4)
            .write(to: f.directory.appendingPathComponent("tiny.gguf"))
        let text = try String(contentsOf: f.pipeline, encoding: .utf8)
            .replacingOccurrences(of: "source: gemma-3-270m", with: "source: tiny.gguf")
        try Data(text.utf8).write(to: f.pipeline)
        f = RunFixture(existing: f.directory)
        return f
    }

    func command(_ f: RunFixture, output: String, cache: String) -> [String] {
        ["run", f.pipeline.path, "--output", f.directory.appendingPathComponent(output).path,
         "--cache-dir", f.directory.appendingPathComponent(cache).path, "--batch-size", "2"]
    }

    func rowCount(_ f: RunFixture, _ output: String) -> Int {
        (try? RunStore(directory: f.directory.appendingPathComponent(output), create: false).allOutputs().count) ?? 0
    }

    func comparable(_ rows: [OutputRow]) -> [[String]] {
        rows.map { [$0.stage, $0.record, "\($0.sample)", "\($0.round)", $0.principle ?? "", $0.input, $0.output, $0.raw, $0.flags] }
    }

    @Test func killNineAtAnyMomentThenRerunGivesIdenticalRows() throws {
        let f = try makeFixture()
        let start = Date()
        let full = try CLI.run(command(f, output: "full", cache: "cache-full"))
        let duration = Date().timeIntervalSince(start)
        #expect(full.status == 0, "\(full.stderr)")
        let expected = try f.rows("full")
        #expect(expected.count == 240)

        // Kill at growing fractions of the uninterrupted duration, resuming each time; every other
        // kill waits for 20 new rows instead, so some land mid-run however loaded the machine is.
        var partialKills = 0
        for (k, fraction) in [0.15, 0.3, 0.45, 0.6, 0.75, 0.9].enumerated() {
            let before = rowCount(f, "killed")
            let process = Process()
            process.executableURL = CLI.executable
            process.arguments = command(f, output: "killed", cache: "cache-killed")
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            if k % 2 == 0 {
                usleep(useconds_t(duration * fraction * 1_000_000))
            } else {
                let deadline = Date().addingTimeInterval(60)
                while process.isRunning && rowCount(f, "killed") < before + 20 && Date() < deadline { usleep(5_000) }
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            let rows = rowCount(f, "killed")
            if process.terminationReason == .uncaughtSignal && rows > 0 && rows < expected.count { partialKills += 1 }
        }
        #expect(partialKills >= 2, "the kills should land mid-run (run took \(duration) s)")
        let resumed = try CLI.run(command(f, output: "killed", cache: "cache-killed"))
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(comparable(try f.rows("killed")) == comparable(expected))
    }

    @Test func ctrlCStopsCleanlyAndResumes() throws {
        let f = try makeFixture()
        let process = Process()
        process.executableURL = CLI.executable
        process.arguments = command(f, output: "interrupted", cache: "cache-i")
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        // Interrupt once the first rows are in.
        let deadline = Date().addingTimeInterval(60)
        while rowCount(f, "interrupted") == 0 && Date() < deadline && process.isRunning { usleep(20_000) }
        kill(process.processIdentifier, SIGINT)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 130, "\(stderr)")
        #expect(stderr.contains("interrupted after"))
        #expect(rowCount(f, "interrupted") < 240)
        let resumed = try CLI.run(command(f, output: "interrupted", cache: "cache-i"))
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(rowCount(f, "interrupted") == 240)
    }
}

extension RunFixture {
    /// A fixture over files already written.
    init(existing directory: URL) { self.init(directory: directory) }
}
