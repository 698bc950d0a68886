import Foundation
import ModelKit
import Testing
import PipelineTestSupport
@testable import PipelineKit
import TestSupport

/// A `precept review RUN` server in a child process, stopped when the value goes away.
final class ReviewServerProcess {
    let process = Process()
    let url: String
    let token: String
    /// "http://127.0.0.1:PORT"
    let origin: String

    init(run: URL, arguments: [String] = []) throws {
        process.executableURL = CLI.executable
        process.arguments = ["review", run.path, "--port", "0", "--reviewer", "tester"] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        // The first line names the URL; wait up to 20 s for it.
        var text = ""
        let deadline = Date().addingTimeInterval(20)
        while !text.contains("\n") && Date() < deadline && process.isRunning {
            let data = out.fileHandleForReading.availableData
            if data.isEmpty { Thread.sleep(forTimeInterval: 0.05) } else { text += String(decoding: data, as: UTF8.self) }
        }
        guard let line = text.split(separator: "\n").first, let range = line.range(of: "http://") else {
            process.terminate()
            throw ReviewTestError.noURL(text)
        }
        url = String(line[range.lowerBound...])
        token = String(url.split(separator: "=").last!)
        origin = "http://" + url.dropFirst("http://".count).prefix { $0 != "/" }
        // Keep reading so a chatty server cannot block on a full pipe.
        out.fileHandleForReading.readabilityHandler = { _ = $0.availableData }
    }

    deinit {
        // SIGKILL: a child of a test worker thread may have SIGTERM blocked.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// One request with curl: returns the status and body.
    func request(_ path: String, method: String = "GET", headers: [String: String] = [:], body: Data? = nil,
                 withToken: Bool = true, sameOrigin: Bool = true) throws -> (status: Int, body: String, headers: String) {
        var arguments = ["-s", "-D", "-", "-X", method, origin + path]
        var all = headers
        if withToken && all["X-Precept-Token"] == nil { all["X-Precept-Token"] = token }
        if method == "POST" {
            if sameOrigin && all["Origin"] == nil { all["Origin"] = origin }
            if all["Content-Type"] == nil { all["Content-Type"] = "application/json" }
        }
        for (k, v) in all.sorted(by: { $0.key < $1.key }) { arguments += ["-H", "\(k): \(v)"] }
        var bodyFile: URL?
        if let body {
            let file = scratchURL("review-body-\(UUID().uuidString)")
            try body.write(to: file)
            bodyFile = file
            arguments += ["--data-binary", "@" + file.path]
        }
        defer { bodyFile.map { try? FileManager.default.removeItem(at: $0) } }
        let result = try CLI.run(arguments, executable: URL(fileURLWithPath: "/usr/bin/curl"))
        let parts = result.stdout.components(separatedBy: "\r\n\r\n")
        let head = parts.first ?? ""
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        return (status, parts.dropFirst().joined(separator: "\r\n\r\n"), head)
    }

    func post(_ path: String, _ object: [String: Any], headers: [String: String] = [:], sameOrigin: Bool = true) throws
        -> (status: Int, json: [String: Any]) {
        let r = try request(path, method: "POST", headers: headers, body: try JSONSerialization.data(withJSONObject: object), sameOrigin: sameOrigin)
        return (r.status, (try? JSONSerialization.jsonObject(with: Data(r.body.utf8))) as? [String: Any] ?? [:])
    }
}

enum ReviewTestError: Error { case noURL(String) }

/// The browser review app (issue 17, items 1 and 4): what it shows and writes, and who may write.
@Suite(.serialized) struct ReviewAppTests {
    /// A run with a judge comparing original and revision, and a prompt carrying markup.
    static func judgedRun(prompts: [String]? = nil) throws -> (RunFixture, URL) {
        let f = try RunFixture(prompts: prompts ?? (["<script>window.injected = 1</script><img src=x onerror=\"window.injected = 2\">"]
                                                    + (1..<5).map { "Judge request \($0)" }),
                               stages: HumanLabelTests.stages)
        _ = try f.run(ScriptedBackend(judging: .prefersRevision))
        return (f, f.directory.appendingPathComponent("run"))
    }

    @Test func sessionShowsItemsAndWritesEachActionAtOnce() throws {
        let (_, run) = try Self.judgedRun()
        let session = try ReviewSession(directory: run, reviewer: "ana", readOnly: false)
        let state = try session.state()
        let items = try #require(state["items"] as? [[String: Any]])
        #expect(items.count == 5 && items.allSatisfy { $0["kind"] as? String == "revision" && $0["stage"] as? String == "labels" })
        let first = items[0]
        #expect(first["a"] as? String == first["revision"] as? String && first["b"] as? String == first["original"] as? String)
        let judge = try #require(first["judge"] as? [String: Any])
        // The scripted judge gives the revision 0.9 in both orders.
        #expect(abs((judge["p_a"] as? Double ?? 0) - 0.9) < 1e-6, "\(judge)")
        #expect((judge["per_principle"] as? [[String: Any]])?.count == 2)
        #expect(state["agreement"] is NSNull)

        let store = try RunStore(directory: run, create: false)
        let subjects = Dictionary(uniqueKeysWithValues: items.map { ($0["record"] as! String, $0["subject"] as! String) })
        func act(_ record: String, _ fields: [String: Any]) throws -> [String: Any] {
            try session.act(["stage": "labels", "record": record, "sample": 0, "subject": subjects[record] ?? ""].merging(fields) { $1 })
        }
        let accepted = try act("r1", ["choice": "a"])
        let rejected = try act("r2", ["choice": "b"])
        _ = try act("r3", ["choice": "tie"])
        _ = try act("r1", ["edited_revision": "A better answer."])
        #expect(try store.humanLabels().count == 3, "each action is in the store as soon as it returns")
        let item = try #require(accepted["item"] as? [String: Any])
        #expect((item["human"] as? [String: Any])?["choice"] as? String == "a")
        #expect(((rejected["item"] as? [String: Any])?["human"] as? [String: Any])?["choice"] as? String == "b")
        let edited = try #require(try session.item(stage: "labels", record: "r1", sample: 0))
        #expect(edited["a"] as? String == "A better answer.")
        #expect((edited["diff"] as? [[String]])?.contains { $0 == ["+", "A better answer."] } == true)
        let r1 = try #require(try store.humanLabels().first { $0.record == "r1" })
        #expect(r1.verdict != nil && r1.edited == "A better answer." && r1.reviewer == "ana")

        // Agreement: the judge preferred every revision; humans said revision, original, tie.
        let agreement = try #require(try session.state()["agreement"] as? [String: Any])
        #expect(agreement["pairs"] as? Int == 3 && abs((agreement["accuracy"] as? Double ?? 0) - 1.0 / 3) < 1e-9)

        // Undo takes back the newest action only; a row from elsewhere cannot be undone here.
        let note = try act("r2", ["note": "unsure"])
        #expect(try store.humanLabels().first { $0.record == "r2" }?.note == "unsure")
        let undone = try session.undo(id: note["id"] as! Int64)
        #expect(((undone["item"] as? [String: Any])?["human"] as? [String: Any])?["note"] is NSNull)
        #expect(try store.humanLabels().first { $0.record == "r2" }?.verdict == .candidate1, "the verdict before the note stays")
        #expect(throws: ReviewSession.Refused.self) { try session.undo(id: 999) }

        // A verdict given on the revise stage (imported, say) shows on the item until the judge-stage one.
        let reviseLabel = try HumanLabelsFile.Targets(view: RunView(directory: run)).label(["record": "r4", "stage": "revisions", "verdict": "reject"], reviewer: "bo")
        try RunStore(directory: run).saveHumanLabels([reviseLabel])
        let r4 = try #require(try session.item(stage: "revisions", record: "r4", sample: 0))
        #expect((r4["human"] as? [String: Any])?["choice"] as? String == "b" && r4["stage"] as? String == "labels")

        // Undo brings back what a later verdict replaced: b over a, undo, a again.
        let b = try act("r1", ["choice": "b"])
        #expect(try store.humanLabels().first { $0.record == "r1" }?.verdict == .candidate1)
        _ = try session.undo(id: b["id"] as! Int64)
        #expect(try store.humanLabels().first { $0.record == "r1" }?.verdict == .candidate0)

        // Bad actions are refused with a message, and nothing is written.
        let s1 = subjects["r1"]!
        for bad: [String: Any] in [["stage": "labels", "record": "r9", "choice": "a", "subject": s1],
                                   ["stage": "labels", "record": "r1", "choice": "maybe", "subject": s1],
                                   ["stage": "nope", "record": "r1", "choice": "a", "subject": s1], ["stage": "labels", "record": "r1", "subject": s1],
                                   ["stage": "labels", "record": "r1", "edited_revision": "  ", "subject": s1],
                                   ["stage": "labels", "record": "r1", "choice": "a"]] {
            #expect(throws: ReviewSession.Refused.self) { try session.act(bad) }
        }
        // A verdict about text the store no longer holds (the run changed it since the page
        // loaded) is a conflict, not a label on the new text.
        do {
            _ = try session.act(["stage": "labels", "record": "r4", "choice": "a", "subject": subjects["r3"]!])
            Issue.record("a stale subject was accepted")
        } catch let refused as ReviewSession.Refused {
            #expect(refused.conflict)
        }
        #expect(try store.humanLabels().count == 4, "r1, r2, r3 from the page and r4 from the revise stage")
        let readOnly = try ReviewSession(directory: run, reviewer: "ana", readOnly: true)
        #expect(throws: ReviewSession.Refused.self) { try readOnly.act(["stage": "labels", "record": "r4", "choice": "a"]) }

        // The labels flow onward like imported ones: the export carries them.
        let rows = try HumanLabelsFile.rows(view: RunView(directory: run))
        #expect(rows.count == 4 && rows.contains { $0["edited_revision"] as? String == "A better answer." && $0["better"] as? String == "a" })
    }

    @Test func serverRefusesWhatItShould() throws {
        let (_, run) = try Self.judgedRun()
        let server = try ReviewServerProcess(run: run)
        #expect(server.url.hasPrefix("http://127.0.0.1:") && server.token.count == 48)

        // The page: only with the token, and with a policy that allows no other source.
        #expect(try server.request("/", withToken: false).status == 403)
        #expect(try server.request("/?token=wrong", withToken: false).status == 403)
        let page = try server.request("/?token=\(server.token)", withToken: false)
        #expect(page.status == 200 && page.body.contains("precept review"))
        #expect(page.headers.lowercased().contains("content-security-policy: default-src 'none'; script-src 'nonce-"))
        #expect(!page.body.contains("http://") && !page.body.contains("https://"), "no external request from the page")
        #expect(try server.request("/api/state", withToken: false).status == 403)
        let state = try server.request("/api/state")
        #expect(state.status == 200 && state.body.contains("\"items\""))
        // A DNS-rebinding request names another host.
        #expect(try server.request("/api/state", headers: ["Host": "evil.example:80"]).status == 403)

        let items = try #require((try JSONSerialization.jsonObject(with: Data(state.body.utf8)) as? [String: Any])?["items"] as? [[String: Any]])
        let label: [String: Any] = ["stage": "labels", "record": "r1", "sample": 0, "choice": "a",
                                    "subject": try #require(items.first { $0["record"] as? String == "r1" }?["subject"])]
        #expect(try server.post("/api/label", label, headers: ["X-Precept-Token": "wrong"]).status == 403)
        #expect(try server.post("/api/label", label, sameOrigin: false).status == 403, "no Origin")
        #expect(try server.post("/api/label", label, headers: ["Origin": "http://evil.example"]).status == 403)
        #expect(try server.post("/api/label", label, headers: ["Sec-Fetch-Site": "cross-site"]).status == 403)
        #expect(try server.post("/api/label", label, headers: ["Content-Type": "text/plain"]).status == 415)
        let big = try server.request("/api/label", method: "POST", body: Data(repeating: UInt8(ascii: " "), count: 300_000))
        #expect(big.status == 413)
        #expect(try server.post("/api/label", ["stage": "labels", "record": "r1", "choice": "maybe", "subject": label["subject"]!]).status == 400)
        #expect(try server.post("/api/label", ["stage": "labels", "record": "r1", "choice": "a", "subject": "0000"]).status == 409)
        #expect(try RunStore(directory: run, create: false).humanLabels().isEmpty, "no refused request wrote anything")

        let ok = try server.post("/api/label", label)
        #expect(ok.status == 200 && ok.json["id"] != nil, "\(ok)")
        #expect(try RunStore(directory: run, create: false).humanLabels().map(\.reviewer) == ["tester"])
        let undo = try server.post("/api/undo", ["id": try #require(ok.json["id"])])
        #expect(undo.status == 200)
        #expect(try RunStore(directory: run, create: false).humanLabels().isEmpty)

        let readOnly = try ReviewServerProcess(run: run, arguments: ["--read-only"])
        #expect(try readOnly.request("/api/state").status == 200)
        #expect(try readOnly.post("/api/label", label).status == 403)
    }

    /// The review writes labels while `precept run` (here the runner in this process, slowed
    /// down) adds records and outputs to the same store: neither loses anything.
    @Test func reviewWhileARunWritesLosesNothing() throws {
        let (f, run) = try Self.judgedRun(prompts: (0..<4).map { "Judge request \($0)" })
        let server = try ReviewServerProcess(run: run)
        let state = try server.request("/api/state")
        let items = try #require((try JSONSerialization.jsonObject(with: Data(state.body.utf8)) as? [String: Any])?["items"] as? [[String: Any]])
        let subjects = Dictionary(uniqueKeysWithValues: items.map { ($0["record"] as! String, $0["subject"] as! String) })
        // Forty more prompts: the run adds records while the reviewer labels the first four.
        let more = (0..<44).map { String(decoding: try! JSONSerialization.data(withJSONObject: ["id": "r\($0)", "prompt": "Judge request \($0)"]), as: UTF8.self) }
        try Data((more.joined(separator: "\n") + "\n").utf8).write(to: f.directory.appendingPathComponent("prompts.jsonl"))
        let backend = SlowBackend(ScriptedBackend(judging: .prefersRevision), delay: 0.03)
        let runner = Thread {
            let options = RunOptions(output: run, cacheDirectory: f.directory.appendingPathComponent("cache"), limit: nil, batchSize: 2)
            backend.result = Result { try PipelineRunner(pipelinePath: f.pipeline.path, options: options) { _ in backend }.run() }
        }
        runner.start()
        while backend.calls == 0 && backend.result == nil { Thread.sleep(forTimeInterval: 0.01) }
        var ids: [Any] = [], duringTheRun = 0
        for round in 0..<5 {
            for record in 0..<4 {
                let r = try server.post("/api/label", ["stage": "labels", "record": "r\(record)", "sample": 0, "subject": subjects["r\(record)"]!,
                                                        "note": "round \(round)", "choice": round % 2 == 0 ? "a" : "b"])
                #expect(r.status == 200, "\(r.json)")
                if let id = r.json["id"] { ids.append(id) }
                if backend.result == nil { duringTheRun += 1 }
            }
        }
        #expect(duringTheRun > 0, "the labels were written while the run was writing")
        while backend.result == nil { Thread.sleep(forTimeInterval: 0.05) }
        let summary = try #require(try backend.result?.get())
        #expect(backend.calls > 0, "the run did work while the review wrote")
        #expect(summary.stages.first { $0.id == "labels" } != nil)
        let store = try RunStore(directory: run, create: false)
        #expect(Set(try store.outputs(stage: "labels").map(\.record)).count == 44, "every record was judged")
        #expect(ids.count == 20)
        let labels = try store.humanLabels()
        #expect(labels.count == 4 && labels.allSatisfy { $0.note == "round 4" && $0.verdict == .candidate0 }, "\(labels)")
    }
}

/// A backend that waits before each batch, so a run lasts long enough to overlap other writers.
final class SlowBackend: ModelBackend, @unchecked Sendable {
    let inner: ScriptedBackend
    let delay: TimeInterval
    var fingerprint: String { inner.fingerprint }
    var promptStyle: PromptStyle { inner.promptStyle }
    private let lock = NSLock()
    private var _result: Result<RunSummary, Error>?
    private(set) var calls = 0
    var result: Result<RunSummary, Error>? {
        get { lock.withLock { _result } }
        set { lock.withLock { _result = newValue } }
    }

    init(_ inner: ScriptedBackend, delay: TimeInterval) {
        self.inner = inner
        self.delay = delay
    }

    func generate(_ calls: [GenerationCall]) throws -> [GenerationOutput] {
        Thread.sleep(forTimeInterval: delay)
        lock.withLock { self.calls += calls.count }
        return try inner.generate(calls)
    }

    func score(_ calls: [ScoringCall]) throws -> [[Double]] {
        Thread.sleep(forTimeInterval: delay)
        lock.withLock { self.calls += calls.count }
        return try inner.score(calls)
    }
}

/// The review app in a real browser (issue 17, item 5): headless Chromium driven by Selenium
/// (scripts/browser.sh installs both and exports PRECEPT_BROWSER_PYTHON; under CI a missing one
/// fails instead of skipping).
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["PRECEPT_BROWSER_PYTHON"] != nil
                                 || ProcessInfo.processInfo.environment["CI"] == "true",
                             "needs PRECEPT_BROWSER_PYTHON (scripts/test.sh sets it: a venv with selenium, and apt's chromium and chromium-driver)"))
struct ReviewBrowserTests {
    @Test func aReviewerLabelsEditsReloadsAndExports() throws {
        let python = try #require(ProcessInfo.processInfo.environment["PRECEPT_BROWSER_PYTHON"], "PRECEPT_BROWSER_PYTHON is not set")
        let (f, run) = try ReviewAppTests.judgedRun()
        let server = try ReviewServerProcess(run: run)
        let script = repositoryRoot.appendingPathComponent("Tests/preceptTests/Fixtures/review_browser.py")
        let result = try CLI.run([script.path, server.url], executable: URL(fileURLWithPath: python))
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        let output = try #require((try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8))) as? [String: Any], "\(result.stdout)")
        let seen = try #require(output["seen"] as? [String: Any])
        let labelled = try #require(seen["labelled"] as? [String], "\(result.stdout)")
        let edited = try #require(seen["edited"] as? String)

        // What the browser did is in the export, each row with the reviewer's name.
        let out = f.directory.appendingPathComponent("labels.jsonl")
        let export = try CLI.run(["review", run.path, "--export-labels", out.path])
        #expect(export.status == 0, "\(export.stderr)")
        let rows = try String(contentsOf: out, encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
        func row(_ record: String) -> [String: Any]? { rows.first { $0["record"] as? String == record } }
        #expect(rows.count == 4 && rows.allSatisfy { $0["reviewer"] as? String == "tester" && $0["note"] == nil }, "\(rows)")
        // A is the revision, which is candidate 0 in these pairs.
        #expect(row(labelled[0])?["verdict"] as? String == "candidate_0" && row(labelled[0])?["better"] as? String == "a")
        #expect(row(labelled[1])?["verdict"] as? String == "candidate_1" && row(labelled[1])?["better"] as? String == "b")
        #expect(row(labelled[2])?["verdict"] as? String == "tie" && row(labelled[2])?["better"] == nil)
        #expect(row(edited)?["edited_revision"] as? String == "Edited in the browser test.")
    }
}

extension ReviewAppTests {
    @Test func aTakenPortIsAClearError() throws {
        let (_, run) = try Self.judgedRun(prompts: ["One request"])
        let server = try ReviewServerProcess(run: run)
        let port = String(server.origin.split(separator: ":").last!)
        let second = try CLI.run(["review", run.path, "--port", port])
        #expect(second.status == 1 && second.stderr.contains("cannot listen on 127.0.0.1:\(port)"), "\(second.stderr)")
        let notRun = try CLI.run(["review", run.deletingLastPathComponent().appendingPathComponent("nothing-here").path, "--port", "0"])
        #expect(notRun.status == 1 && notRun.stderr.hasPrefix("error: "), "\(notRun.stderr)")
    }
}
