import Foundation
import Testing
import PipelineTestSupport
@testable import PipelineKit

/// Word diffs, the HTML report's escaping, and `precept diff` / `report` / `export` on a run.
@Suite struct ReviewTests {
    @Test func wordDiff() {
        #expect(WordDiff.diff("a b c", "a x c") == [.same("a"), .removed("b"), .added("x"), .same("c")])
        #expect(WordDiff.diff("", "new words") == [.added("new words")])
        #expect(WordDiff.diff("old words", "") == [.removed("old words")])
        #expect(WordDiff.plain(WordDiff.diff("keep this one", "keep that one")) == "keep [-this-] {+that+} one")
        #expect(WordDiff.diff("same  text\n", "same text") == [.same("same text")])
    }

    /// A run whose prompts and model outputs try to break out of the HTML.
    func hostileRun() throws -> RunFixture {
        let f = try RunFixture(prompts: ["<img src=x onerror=alert(1)> ECHO", "Ask \"quoted\" ' things"], stages: RunFixture.slcai)
        final class Hostile: ModelBackend, @unchecked Sendable {
            let fingerprint = "hostile"
            let promptStyle = PromptStyle.completion
            func generate(_ calls: [GenerationCall]) throws -> [GenerationOutput] {
                calls.map { _ in
                    GenerationOutput(text: "<script>alert(1)</script> \" onmouseover=\"steal() ' & </textarea>",
                                     finishReason: .endOfSequence, promptTokens: 1, completionTokens: 1)
                }
            }
            func score(_ calls: [ScoringCall]) throws -> [[Double]] { [] }
        }
        let options = RunOptions(output: f.directory.appendingPathComponent("run"), cacheDirectory: f.directory.appendingPathComponent("cache"))
        _ = try PipelineRunner(pipelinePath: f.pipeline.path, options: options) { _ in Hostile() }.run()
        return f
    }

    @Test func reportEscapesModelText() throws {
        let f = try hostileRun()
        let html = try String(contentsOf: f.directory.appendingPathComponent("run/report.html"), encoding: .utf8)
        #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &quot; onmouseover=&quot;steal() &#39; &amp; &lt;/textarea&gt;"))
        #expect(html.contains("&lt;img src=x onerror=alert(1)&gt;"))
        #expect(!html.contains("<script>alert") && !html.contains("onmouseover=\"steal") && !html.contains("<img"))
        // Every tag in the page is one the report itself writes, and there is exactly one script.
        let allowed: Set<String> = ["html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "section", "table", "tr",
                                    "th", "td", "ul", "li", "p", "div", "article", "header", "b", "code", "span", "del", "ins",
                                    "input", "select", "option", "label", "script", "!DOCTYPE"]
        let tags = html.components(separatedBy: "<").dropFirst().map { $0.prefix { $0 != " " && $0 != ">" } }
            .map { $0.hasPrefix("/") ? String($0.dropFirst()) : String($0) }
        #expect(Set(tags).subtracting(allowed).isEmpty, "unexpected tags: \(Set(tags).subtracting(allowed))")
        #expect(html.components(separatedBy: "<script>").count == 2)
        #expect(!html.contains("http://") && !html.contains("https://"), "the report makes no network requests")
    }

    @Test func diffCommandFiltersAndPages() throws {
        let f = try RunFixture(prompts: (0..<6).map { "Request \($0)" } + ["ECHO me"], stages: RunFixture.slcai)
        _ = try f.run(ScriptedBackend())
        let run = f.directory.appendingPathComponent("run").path
        let all = try CLI.run(["diff", run, "--per-page", "5"])
        #expect(all.status == 0, "\(all.stderr)")
        #expect(all.stdout.contains("page 1/3 · records 1–5 of 14 · next: --page 2"))
        #expect(all.stdout.contains("[-") && all.stdout.contains("{+"), "plain markers when not a terminal")
        let changed = try CLI.run(["diff", run, "--changed-only", "--per-page", "50"])
        #expect(changed.stdout.contains("of 12"), "the two ECHO revisions are unchanged: \(changed.stdout.suffix(80))")
        let rows = try f.rows().filter { $0.stage == "revisions" }
        let principle = try #require(rows.first?.principle)
        let one = try CLI.run(["diff", run, "--principle", principle, "--per-page", "50"])
        #expect(one.stdout.contains("of \(rows.filter { $0.principle == principle }.count)"))
        #expect(!one.stdout.contains("principle \(["alpha", "beta", "gamma"].first { $0 != principle }!) "))
        let page3 = try CLI.run(["diff", run, "--per-page", "5", "--page", "3"])
        #expect(page3.stdout.contains("page 3/3 · records 11–14 of 14"))
        let missing = try CLI.run(["diff", f.directory.path])
        #expect(missing.status == 1 && missing.stderr.contains("not a run directory"))
    }

    @Test func reportAndExportCommands() throws {
        let f = try hostileRun()
        let run = f.directory.appendingPathComponent("run").path
        let report = try CLI.run(["report", run, "--out", f.directory.appendingPathComponent("r.html").path])
        #expect(report.status == 0, "\(report.stderr)")
        #expect(FileManager.default.fileExists(atPath: f.directory.appendingPathComponent("r.html").path))
        let out = f.directory.appendingPathComponent("exported").path
        let export = try CLI.run(["export", run, "--format", "sft", "--out", out, "--test-fraction", "0"])
        #expect(export.status == 0, "\(export.stderr)")
        #expect(export.stdout.contains("sft: 4 train, 0 test"))
        let trl = try CLI.run(["export", run, "--format", "trl", "--out", out])
        #expect(trl.status != 0 && trl.stderr.contains("judge"))
    }
}
