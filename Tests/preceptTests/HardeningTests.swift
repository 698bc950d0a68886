import Foundation
import Testing
import PipelineTestSupport
import TestSupport
@testable import ModelKit
@testable import PipelineKit
#if canImport(Glibc)
import Glibc
#endif

/// Issue 19: a real `precept` process on real files and stores; nothing lost, mixed or leaked,
/// and every refusal a clear error with exit status 1.
@Suite(.serialized) struct HardeningTests {
    /// A pipeline on a tiny random engine model: responses → critiques → revisions, 3 prompts.
    func fixture(name: String = "fixture", prompts: Int = 3) throws -> RunFixture {
        let stages = """
          - { id: responses, generate: { model: policy, max_tokens: 6 } }
          - { id: critiques, critique: { model: policy, input: responses, few_shot: 0, max_tokens: 6 } }
          - { id: revisions, revise: { model: policy, input: critiques, few_shot: 0, max_tokens: 6 } }
        """
        let f = try RunFixture(prompts: (0..<prompts).map { "a b c request \($0)" }, stages: stages)
        try TinyModel(family: .gemma3, seed: 3, vocab: 300, hidden: 32, layers: 2)
            .write(to: f.directory.appendingPathComponent("tiny.gguf"))
        let text = try String(contentsOf: f.pipeline, encoding: .utf8)
            .replacingOccurrences(of: "source: gemma-3-270m", with: "source: tiny.gguf")
            .replacingOccurrences(of: "name: fixture\nseed", with: "name: \(name)\nseed")
        try Data(text.utf8).write(to: f.pipeline)
        return f
    }

    func run(_ f: RunFixture, _ extra: [String] = [], output: String = "run", pipeline: URL? = nil) throws -> CLIResult {
        try CLI.run(["run", (pipeline ?? f.pipeline).path, "--output", f.directory.appendingPathComponent(output).path,
                     "--cache-dir", f.directory.appendingPathComponent("cache").path] + extra)
    }

    // MARK: Where a run may be written (items 4–6)

    @Test func refusesRootInputFoldersAndSourceFolders() throws {
        let f = try fixture()
        let root = try CLI.run(["run", f.pipeline.path, "--output", "/"])
        #expect(root.status == 1 && root.stderr.contains("/: refusing to write here: it is the filesystem root"), "\(root.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "/run.lock") && !FileManager.default.fileExists(atPath: "/run.sqlite"))

        let own = try run(f, output: ".")
        #expect(own.status == 1 && own.stderr.contains("holds the pipeline's own input"), "\(own.stderr)")
        #expect(!FileManager.default.fileExists(atPath: f.directory.appendingPathComponent("run.sqlite").path))

        // A constitution kept in constitutions/: a run inside that folder is refused.
        let folder = f.directory.appendingPathComponent("constitutions")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.moveItem(at: f.constitution, to: folder.appendingPathComponent("c.yaml"))
        let text = try String(contentsOf: f.pipeline, encoding: .utf8)
            .replacingOccurrences(of: "constitution: c.yaml", with: "constitution: constitutions/c.yaml")
        try Data(text.utf8).write(to: f.pipeline)
        let inside = try run(f, output: "constitutions/run")
        #expect(inside.status == 1 && inside.stderr.contains("which holds the pipeline's inputs"), "\(inside.stderr)")

        // This repository's own source folders.
        let sources = try CLI.run(["run", repositoryRoot.appendingPathComponent("pipelines/quickstart.yaml").path,
                                   "--output", repositoryRoot.appendingPathComponent("docs/run").path])
        #expect(sources.status == 1 && sources.stderr.contains("inside the project's source folder"), "\(sources.stderr)")
        #expect(!FileManager.default.fileExists(atPath: repositoryRoot.appendingPathComponent("docs/run").path))
    }

    @Test func pipelineNameIsAFolderNameNotAPath() throws {
        let f = try fixture()
        let text = try String(contentsOf: f.pipeline, encoding: .utf8).replacingOccurrences(of: "name: fixture\n", with: "name: ../../..\n")
        try Data(text.utf8).write(to: f.pipeline)
        let result = try CLI.run(["validate", f.pipeline.path])
        #expect(result.status == 1)
        #expect(result.stderr.contains("p.yaml:2:7: error: at name: the name must be letters, digits"), "\(result.stderr)")
    }

    @Test func aFolderOfOtherFilesNeedsForce() throws {
        let f = try fixture()
        let other = f.directory.appendingPathComponent("mine")
        try FileManager.default.createDirectory(at: other, withIntermediateDirectories: true)
        try Data("my own report".utf8).write(to: other.appendingPathComponent("report.html"))
        let refused = try run(f, output: "mine")
        #expect(refused.status == 1 && refused.stderr.contains("the folder holds other files (report.html) and no run"), "\(refused.stderr)")
        #expect(try String(contentsOf: other.appendingPathComponent("report.html"), encoding: .utf8) == "my own report")
        let forced = try run(f, ["--force"], output: "mine")
        #expect(forced.status == 0, "\(forced.stderr)")
    }

    @Test func anotherPipelinesRunIsNeverMixedIn() throws {
        let f = try fixture()
        #expect(try run(f).status == 0)
        // A second pipeline (another name, two other prompts) aimed at the same folder.
        let second = f.directory.appendingPathComponent("second.yaml")
        try Data(#"{"id": "s0", "prompt": "x y z"}\#n{"id": "s1", "prompt": "z y x"}\#n"#.utf8)
            .write(to: f.directory.appendingPathComponent("second.jsonl"))
        let text = try String(contentsOf: f.pipeline, encoding: .utf8)
            .replacingOccurrences(of: "name: fixture\n", with: "name: second\n")
            .replacingOccurrences(of: "file: prompts.jsonl", with: "file: second.jsonl")
        try Data(text.utf8).write(to: second)
        let refused = try run(f, pipeline: second)
        #expect(refused.status == 1 && refused.stderr.contains("holds the run of pipeline `fixture`"), "\(refused.stderr)")
        #expect(try RunStore(directory: f.directory.appendingPathComponent("run"), create: false).records().count == 3)

        let forced = try run(f, ["--force"], pipeline: second)
        #expect(forced.status == 0, "\(forced.stderr)")
        let store = try RunStore(directory: f.directory.appendingPathComponent("run"), create: false)
        #expect(try store.records().map(\.id) == ["s0", "s1"])
        #expect(try Set(store.allOutputs().map(\.record)) == ["s0", "s1"])
        let moved = try FileManager.default.contentsOfDirectory(atPath: f.directory.appendingPathComponent("run").path)
            .filter { $0.hasPrefix("previous-fixture-") }
        #expect(moved.count == 1, "the first run is moved aside, not deleted")
        let aside = f.directory.appendingPathComponent("run").appendingPathComponent(moved.first ?? "none")
        #expect(try RunStore(directory: aside, create: false).records().count == 3, "the moved run still reads")
        #expect(FileManager.default.fileExists(atPath: aside.appendingPathComponent("report.html").path), "its report moved with it")
        let diff = try CLI.run(["diff", f.directory.appendingPathComponent("run").path, "--plain"])
        #expect(diff.stdout.contains("records 1–2 of 2"), "\(diff.stdout)")
    }

    @Test func aRunWrittenBeforeNamesWereStoredStillBelongsToItsPipeline() throws {
        let f = try fixture()
        #expect(try run(f).status == 0)
        // As an older version left it: no pipeline_name in meta, only the pipeline text.
        let store = try RunStore(directory: f.directory.appendingPathComponent("run"))
        try store.queue.write { try $0.execute(sql: "DELETE FROM meta WHERE key = 'pipeline_name'") }
        let text = try String(contentsOf: f.pipeline, encoding: .utf8).replacingOccurrences(of: "name: fixture\n", with: "name: other\n")
        let other = f.directory.appendingPathComponent("other.yaml")
        try Data(text.utf8).write(to: other)
        let refused = try run(f, pipeline: other)
        #expect(refused.status == 1 && refused.stderr.contains("holds the run of pipeline `fixture`"), "\(refused.stderr)")
        #expect(try run(f).status == 0, "its own pipeline still resumes it")
    }

    @Test func aSmallerPromptSetLeavesNoStaleRecords() throws {
        let f = try fixture(prompts: 4)
        #expect(try run(f).status == 0)
        let again = try run(f, ["--limit", "2"])
        #expect(again.status == 0 && again.stderr.contains("2 records are no longer in the prompt set"), "\(again.stderr)")
        let store = try RunStore(directory: f.directory.appendingPathComponent("run"), create: false)
        #expect(try store.records().count == 2 && store.meta("records") == "2")
        #expect(try Set(store.allOutputs().map(\.record)) == ["r0", "r1"])
    }

    @Test func aSecondRunIntoTheSameFolderSaysWhoHoldsIt() throws {
        let f = try fixture()
        let directory = f.directory.appendingPathComponent("run")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // A run.lock that links elsewhere is refused, never truncated.
        let victim = f.directory.appendingPathComponent("victim.txt")
        try Data("keep".utf8).write(to: victim)
        try FileManager.default.createSymbolicLink(atPath: directory.appendingPathComponent("run.lock").path, withDestinationPath: victim.path)
        let linked = try run(f)
        #expect(linked.status == 1 && linked.stderr.contains("run.lock is not a regular file"), "\(linked.stderr)")
        #expect(try String(contentsOf: victim, encoding: .utf8) == "keep")
        try FileManager.default.removeItem(at: directory.appendingPathComponent("run.lock"))
        let lock = try RunLock(directory: directory)
        let blocked = try run(f)
        #expect(blocked.status == 1, "\(blocked.stderr)")
        #expect(blocked.stderr.contains("another run is writing this folder: process \(getpid())"), "\(blocked.stderr)")
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("run.sqlite").path))
        lock.release()
        #expect(try run(f).status == 0)
    }

    // MARK: Reports and stored text (items 3, 8, 9)

    @Test func reportNeverReplacesTheStore() throws {
        let f = try fixture()
        #expect(try run(f).status == 0)
        let directory = f.directory.appendingPathComponent("run")
        let result = try CLI.run(["report", directory.path, "--out", directory.appendingPathComponent("run.sqlite").path])
        #expect(result.status == 1 && result.stderr.contains("it is the run's own run.sqlite"), "\(result.stderr)")
        #expect(try RunStore(directory: directory, create: false).allOutputs().count == 9)
        let notes = f.directory.appendingPathComponent("notes.txt")
        try Data("keep me".utf8).write(to: notes)
        #expect(try CLI.run(["report", directory.path, "--out", notes.path]).status == 1)
        #expect(try String(contentsOf: notes, encoding: .utf8) == "keep me")
        #expect(try CLI.run(["report", directory.path, "--out", f.directory.appendingPathComponent("r.html").path]).status == 0)
        #expect(try CLI.run(["report", directory.path, "--out", f.directory.appendingPathComponent("r.html").path]).status == 0,
                "an earlier report may be replaced")
    }

    @Test func nulBytesAndEscapeSequencesSurviveStorageAndNeverReachTheTerminalRaw() throws {
        let f = try fixture()
        #expect(try run(f).status == 0)
        let directory = f.directory.appendingPathComponent("run")
        let store = try RunStore(directory: directory)
        var row = try #require(try store.outputs(stage: "revisions").first)
        let hostile = "before\u{0}after \u{1B}]0;owned\u{07}\u{1B}[31mred"
        row.output = hostile
        row.raw = hostile
        row.flags = ""
        try store.save([row])
        #expect(try store.outputs(stage: "revisions").first?.output == hostile, "the NUL and what follows it are kept")

        let export = try CLI.run(["export", directory.path, "--format", "sft", "--out", f.directory.appendingPathComponent("sft").path,
                                  "--test-fraction", "0"])
        #expect(export.status == 0, "\(export.stderr)")
        let train = try String(contentsOf: f.directory.appendingPathComponent("sft/train.jsonl"), encoding: .utf8)
        #expect(train.contains(#"before\u0000after"#), "\(train)")

        let diff = try CLI.run(["diff", directory.path, "--plain", "--record", row.record])
        #expect(diff.status == 0)
        #expect(!diff.stdout.contains("\u{1B}") && !diff.stdout.contains("\u{07}"), "escape sequences are shown, not sent")
        #expect(diff.stdout.contains(#"\u{1B}]0;owned\u{7}"#), "\(diff.stdout)")
    }

    @Test func modelInfoEscapesNamesAndRefusesFIFOsAndDevices() throws {
        let dir = try temporaryDirectory()
        let model = dir.appendingPathComponent("m.gguf")
        try TinyModel(family: .gemma3, seed: 1, vocab: 40, hidden: 16, layers: 1).write(to: model, name: "evil\u{1B}]2;title\u{07}")
        let info = try CLI.run(["model", "info", "--model", model.path])
        #expect(info.status == 0, "\(info.stderr)")
        #expect(!info.stdout.contains("\u{1B}") && info.stdout.contains(#"name: evil\u{1B}]2;title\u{7}"#), "\(info.stdout)")

        let fifo = dir.appendingPathComponent("pipe.gguf")
        #expect(mkfifo(fifo.path, 0o644) == 0)
        let start = Date()
        let hang = try CLI.run(["model", "info", "--model", fifo.path])
        #expect(Date().timeIntervalSince(start) < 20)
        #expect(hang.status == 1 && hang.stderr.contains("is a FIFO (named pipe), not a regular file"), "\(hang.stderr)")

        let f = try fixture()
        let zero = dir.appendingPathComponent("zero.gguf"), folder = dir.appendingPathComponent("folder.gguf")
        try FileManager.default.createSymbolicLink(atPath: zero.path, withDestinationPath: "/dev/zero")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for (source, phrase) in [(fifo.path, "a FIFO (named pipe)"), (zero.path, "a device"), (folder.path, "a directory")] {
            let text = try String(contentsOf: f.pipeline, encoding: .utf8)
                .replacingOccurrences(of: "source: tiny.gguf", with: "source: \(source)")
            let p = f.directory.appendingPathComponent("bad-source.yaml")
            try Data(text.utf8).write(to: p)
            let result = try CLI.run(["validate", p.path])
            #expect(result.status == 1 && result.stderr.contains("\(source) is \(phrase), not a regular file"), "\(result.stderr)")
        }
    }

    // MARK: Messages (items 7, 10)

    @Test func aDamagedStoredConstitutionIsBlamedOnTheStoreNotTheFile() throws {
        let f = try fixture()
        #expect(try run(f).status == 0)
        let directory = f.directory.appendingPathComponent("run")
        try RunStore(directory: directory).setMeta(["constitution_yaml": "version: 1\nname: [unclosed\n"])
        let diff = try CLI.run(["diff", directory.path, "--plain"])
        #expect(diff.status == 1, "\(diff.stderr)")
        #expect(diff.stderr.hasPrefix("error: \(directory.path)/run.sqlite: cannot read the run store: its stored copy of the pipeline or constitution does not decode"),
                "\(diff.stderr)")
        #expect(try String(contentsOf: f.constitution, encoding: .utf8) == RunFixture.constitutionText, "the file on disk is fine")
    }

    @Test func errorsCarryOnePrefixAndQuoteLittle() throws {
        let f = try fixture()
        let text = try String(contentsOf: f.pipeline, encoding: .utf8).replacingOccurrences(of: "seed: 99", with: "seed: many")
        try Data(text.utf8).write(to: f.pipeline)
        let result = try CLI.run(["validate", f.pipeline.path])
        #expect(result.status == 1 && result.stderr.components(separatedBy: "error:").count == 2, "\(result.stderr)")
        #expect(result.stderr.hasPrefix(f.pipeline.path + ":3:"), "\(result.stderr)")

        // A prompt "file" that is some other private file: at most a short escaped excerpt.
        try Data(text.replacingOccurrences(of: "seed: many", with: "seed: 99").utf8).write(to: f.pipeline)
        try Data("root:$y$j9T$abcdefghijklmnopqrstuvwxyz0123456789:19000:0:99999:7:::\n".utf8)
            .write(to: f.directory.appendingPathComponent("prompts.jsonl"))
        let quoted = try CLI.run(["validate", f.pipeline.path])
        #expect(quoted.status == 1 && quoted.stderr.contains("prompts.jsonl:1: error: (byte offset 0) not valid JSON"), "\(quoted.stderr)")
        #expect(!quoted.stderr.contains("abcdefghijklmnop"), "\(quoted.stderr)")

        // A constitution that is not YAML at all is not quoted.
        try Data("root:$y$j9T$abcdefghijklmnopqrstuvwxyz0123456789:19000".utf8).write(to: f.constitution)
        let constitution = try CLI.run(["validate", f.pipeline.path])
        #expect(constitution.status == 1 && !constitution.stderr.contains("abcdefgh"), "\(constitution.stderr)")

        // Foundation file errors: the path and the reason, not an NSError dump.
        let export = try CLI.run(["export", f.directory.path, "--format", "sft", "--out", "/proc/no/such"])
        #expect(export.status == 1 && !export.stderr.contains("NSCocoaErrorDomain") && !export.stderr.contains("Error Domain"), "\(export.stderr)")
    }

    @Test func credentialsNeverReachMessagesOrTheStore() throws {
        let key = "sk-test-SECRETKEY-0123456789"
        let server = try FaultServer { path, headers, _ in
            // A server that echoes what it was sent, as some do in their 401 bodies.
            .json(["error": ["message": "invalid credentials: \(headers["authorization"] ?? "none") for \(path)"]], status: 401)
        }
        defer { server.stop() }
        let f = try fixture()
        let url = "http://alice:s3cretPW@127.0.0.1:\(server.port)/v1"
        let text = try String(contentsOf: f.pipeline, encoding: .utf8)
            .replacingOccurrences(of: "policy: { source: tiny.gguf }",
                                  with: "policy: { provider: openai, base_url: \"\(url)\", model: m, api_key_env: TEST_KEY }")
        try Data(text.utf8).write(to: f.pipeline)
        let result = try CLI.run(["run", f.pipeline.path, "--output", f.directory.appendingPathComponent("run").path,
                                  "--cache-dir", f.directory.appendingPathComponent("cache").path], environment: ["TEST_KEY": key])
        #expect(result.status == 1 && result.stderr.contains("HTTP 401"), "\(result.stderr)")
        for secret in ["s3cretPW", "SECRETKEY"] {
            #expect(!result.stderr.contains(secret) && !result.stdout.contains(secret), "\(result.stderr)")
        }
        let store = try RunStore(directory: f.directory.appendingPathComponent("run"), create: false)
        let stored = try #require(try store.meta("pipeline_yaml"))
        #expect(!stored.contains("s3cretPW") && stored.contains("http://***@127.0.0.1"), "\(stored)")
        let validate = try CLI.run(["validate", f.pipeline.path])
        #expect(!validate.stdout.contains("s3cretPW"), "\(validate.stdout)")
    }

    @Test func redactionCoversURLsQueryKeysAndBearerTokens() {
        #expect(Secrets.redact("see https://u:p4ss@h.example/v1 now") == "see https://***@h.example/v1 now")
        #expect(Secrets.redact("http://h/v1?api_key=abc123&model=x&token=zz9") == "http://h/v1?api_key=***&model=x&token=***")
        #expect(Secrets.redact("Authorization: Bearer sk-abcdef123") == "Authorization: Bearer ***")
        #expect(Secrets.redact("the key sk-live-9f8e7d echoed", values: ["sk-live-9f8e7d"]) == "the key *** echoed")
        #expect(Secrets.redact("nothing secret at http://localhost:8080/v1") == "nothing secret at http://localhost:8080/v1")
        #expect(Secrets.redact("https://h/v1?subscription-key=abc&access_key=d3f&code=x1") == "https://h/v1?subscription-key=***&access_key=***&code=***")
        #expect(Secrets.redact("authorization: bearer sk-abcdef123") == "authorization: bearer ***")
        #expect(Secrets.redact("system: Basic etiquette applies", headers: false) == "system: Basic etiquette applies")
    }

    // MARK: Read-only runs (item 11)

    /// An archived run (read-only folder, no -shm) reads with every command. As root, which
    /// ignores permissions, the readers run as `nobody` through setpriv.
    @Test func aReadOnlyRunCanBeReviewed() throws {
        let f = try fixture()
        #expect(try run(f).status == 0)
        let archive = try temporaryDirectory().appendingPathComponent("archived")
        try FileManager.default.createDirectory(at: archive, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: f.directory.appendingPathComponent("run/run.sqlite"), to: archive.appendingPathComponent("run.sqlite"))
        #expect(!FileManager.default.fileExists(atPath: archive.appendingPathComponent("run.sqlite-shm").path))
        chmod(archive.appendingPathComponent("run.sqlite").path, 0o444)
        chmod(archive.path, 0o555)
        chmod(archive.deletingLastPathComponent().path, 0o755)
        defer { chmod(archive.path, 0o755) }
        let prefix = getuid() == 0 ? ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : []
        // nobody must be able to reach the binary and the folder; when it cannot, say why.
        let probe = try CLI.run(["--version"], prefix: prefix)
        try #require(probe.status == 0, "cannot run precept as nobody here: \(probe.stderr)")
        // The report goes to a folder nobody can write to, as /tmp is.
        let outFolder = scratchURL("precept-ro-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: outFolder, withIntermediateDirectories: true)
        chmod(outFolder.path, 0o1777)
        let out = outFolder.appendingPathComponent("report.html").path
        for command in [["diff", archive.path, "--plain"], ["report", archive.path, "--out", out]] {
            let result = try CLI.run(command, prefix: prefix)
            #expect(result.status == 0, "\(command): \(result.stderr)")
        }
        let diff = try CLI.run(["diff", archive.path, "--plain"], prefix: prefix)
        #expect(diff.stdout.contains("records 1–3 of 3"), "\(diff.stdout)")
    }
}
