import Foundation
import ModelKit

/// One self-contained HTML page per run: a summary (counts, principles, cache use, timings,
/// flagged outputs) and a filterable list of records with prompt, original, critique and
/// revision side by side, the revision's word-level diff marked. Model text is untrusted:
/// every piece of it goes through `escape`, in text and in attributes alike.
public enum HTMLReport {
    /// Throws unless `path` may receive a report: never the run's own store, lock or a folder,
    /// and never an existing file that is not an HTML page (the report replaces what is there).
    public static func checkDestination(_ path: String, run: URL) throws {
        let target = RunDirectory.resolved(URL(fileURLWithPath: path))
        for name in ["run.sqlite", "run.sqlite-wal", "run.sqlite-shm", "run.lock"]
        where target == RunDirectory.resolved(run.appendingPathComponent(name)) {
            throw RunError.unsafeOutput(path: path, reason: "it is the run's own \(name)")
        }
        switch FileKind.of(target) {
        case .missing: return
        case .regular:
            let head = (FileHandle(forReadingAtPath: target)?.readData(ofLength: 512)).map { String(decoding: $0, as: UTF8.self) } ?? ""
            let trimmed = head.drop { $0.isWhitespace || $0 == "\u{FEFF}" }.lowercased()
            guard trimmed.hasPrefix("<!doctype html") || trimmed.hasPrefix("<html") else {
                throw RunError.unsafeOutput(path: path, reason: "an existing file that is not an HTML page would be replaced; remove it first or choose another --out")
            }
        case let kind:
            throw RunError.unsafeOutput(path: path, reason: "it is \(kind.phrase); --out names the report file")
        }
    }

    /// Escapes text for HTML text nodes and double- or single-quoted attributes.
    public static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for c in text.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func diffHTML(_ pieces: [WordDiff.Piece]) -> String {
        pieces.map {
            switch $0 {
            case .same(let s): return escape(s)
            case .removed(let s): return "<del>\(escape(s))</del>"
            case .added(let s): return "<ins>\(escape(s))</ins>"
            }
        }.joined(separator: " ")
    }

    /// Renders the report of a run.
    public static func render(_ view: RunView) throws -> String {
        let rows = try view.store.allOutputs()
        let chains = try view.chains()
        var html = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Precept report: \(escape(view.pipeline.name))</title>
        <style>\(style)</style></head><body>
        <h1>Precept run: \(escape(view.pipeline.name))</h1>

        """
        html += summary(view, rows: rows, chains: chains)
        if let judge = view.judgeStage {
            // Judge-vs-human agreement counts revise-stage verdicts too when the judge compares that stage.
            var revisionStage: String?
            if case .judge(let spec) = judge.kind, spec.pairs == .originalVsRevision { revisionStage = spec.input }
            let diagnostics = try LabelDiagnostics.load(stage: judge.id, store: view.store, revisionStage: revisionStage)
            let gate = try view.gateVerdicts().map { [$0.summary + " (what a `gate` keeps)"] } ?? []
            html += "<section><h2>Judge labels (\(escape(judge.id)))</h2><ul>"
                + (diagnostics.text + gate).map { "<li>\(escape($0))</li>" }.joined() + "</ul></section>\n"
        }
        html += TrainingSection.render(view)
        html += records(view, chains: chains, probabilities: try view.revisionProbabilities(), verdicts: try view.gateVerdicts())
        html += "<script>\(script)</script>\n</body></html>\n"
        return html
    }

    static func summary(_ view: RunView, rows: [OutputRow], chains: [RevisionChain]) -> String {
        var s = "<section class=\"summary\"><h2>Summary</h2><table>"
        let meta: [(String, String)] = [
            ("Pipeline", (try? view.store.meta("pipeline_path")) ?? nil ?? view.pipeline.file),
            ("Constitution", "\(view.constitution.name) (\(view.constitution.principles.count) principles, sha256 \(((try? view.store.meta("constitution_sha256")) ?? nil ?? "").prefix(16))…)"),
            ("Records", "\(view.records.count)"),
            ("Seed", "\(view.pipeline.seed)"),
            ("Last run", ((try? view.store.meta("last_run")) ?? nil) ?? "unfinished"),
        ]
        for (k, v) in meta { s += "<tr><th>\(escape(k))</th><td>\(escape(v))</td></tr>" }
        s += "</table>\n<h3>Stages</h3><table class=\"stages\"><tr><th>stage</th><th>rows</th><th>from cache</th><th>model seconds</th><th>tokens out</th><th>flagged</th></tr>"
        let stageIDs = view.pipeline.stages.map(\.id) + Set(rows.map(\.stage)).subtracting(view.pipeline.stages.map(\.id)).sorted()
        for id in stageIDs {
            let r = rows.filter { $0.stage == id }
            guard !r.isEmpty else { continue }
            var flags: [String: Int] = [:]
            for row in r { for f in row.flagList { flags[f, default: 0] += 1 } }
            let flagText = flags.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            s += "<tr><td>\(escape(id))</td><td>\(r.count)</td><td>\(r.filter(\.cached).count)</td>"
                + String(format: "<td>%.1f</td>", r.reduce(0) { $0 + $1.seconds })
                + "<td>\(r.reduce(0) { $0 + $1.completionTokens })</td><td>\(escape(flagText))</td></tr>"
        }
        s += "</table>\n<h3>Principles used (final revisions)</h3><table>"
        var used: [String: Int] = [:]
        for c in chains { used[c.principle ?? "none", default: 0] += 1 }
        for (p, n) in used.sorted(by: { $0.value > $1.value }) { s += "<tr><td>\(escape(p))</td><td>\(n)</td></tr>" }
        s += "</table>\n"
        let flagged = rows.filter { !$0.flags.isEmpty }
        s += "<h3>Flagged outputs (\(flagged.count))</h3>"
        if !flagged.isEmpty {
            s += "<p class=\"note\">Empty or truncated outputs and revisions identical to their input are kept in the store, flagged, and left out of SFT exports when empty or truncated.</p><ul class=\"flagged\">"
            for row in flagged.prefix(200) {
                s += "<li>\(escape(row.stage)) · \(escape(row.record)) · sample \(row.sample) · round \(row.round): \(escape(row.flags))</li>"
            }
            if flagged.count > 200 { s += "<li>… and \(flagged.count - 200) more</li>" }
            s += "</ul>"
        }
        return s + "</section>\n"
    }

    static func records(_ view: RunView, chains: [RevisionChain], probabilities: [String: Double], verdicts: RevisionGate.Verdicts? = nil) -> String {
        let principles = Set(chains.compactMap(\.principle)).sorted()
        var s = """
        <section><h2>Records (\(chains.count))</h2>
        <div class="controls">
        <input id="q" type="search" placeholder="Search text…">
        <select id="principle"><option value="">all principles</option>\(principles.map { "<option value=\"\(escape($0))\">\(escape($0))</option>" }.joined())</select>
        <label><input id="changed" type="checkbox"> changed only</label>
        <label><input id="flagged" type="checkbox"> flagged only</label>
        <span id="count"></span>
        </div>

        """
        for c in chains {
            let changed = GenerationStages.normalized(c.original) != GenerationStages.normalized(c.revision)
            let tags = c.principle.flatMap { view.constitution.principle(id: $0) }?.tags ?? []
            s += "<article class=\"item\" data-principle=\"\(escape(c.principle ?? ""))\" data-tags=\"\(escape(tags.joined(separator: " ")))\" "
                + "data-changed=\"\(changed)\" data-flagged=\"\(!c.flags.isEmpty)\">"
            s += "<header><b>\(escape(c.record))</b> · sample \(c.sample) · principle <code>\(escape(c.principle ?? "none"))</code>"
                + " · rounds \(c.rounds)"
                + (probabilities["\(c.record)\u{1F}\(c.sample)"].map { String(format: " · judge P(revision better) %.3f", $0) } ?? "")
                + (verdicts.map { v in v.endorses(record: c.record, sample: c.sample) ? " · endorsed"
                    : v.flagged(record: c.record, sample: c.sample) ? " · not endorsed (flagged by the harm check)" : " · not endorsed" } ?? "")
                + (c.flags.isEmpty ? "" : " · <span class=\"flags\">\(escape(c.flags.joined(separator: ", ")))</span>")
                + "</header>"
            s += "<div class=\"prompt\"><h4>Prompt</h4><p>\(escape(c.prompt))</p></div><div class=\"grid\">"
            s += "<div><h4>Original</h4><p>\(escape(c.original))</p></div>"
            s += "<div><h4>Critique</h4><p class=\"req\">\(escape(c.critiqueRequest))</p><p>\(escape(c.critique))</p></div>"
            s += "<div><h4>Revision</h4><p class=\"req\">\(escape(c.revisionRequest))</p><p>\(diffHTML(WordDiff.diff(c.original, c.revision)))</p></div>"
            s += "</div></article>\n"
        }
        return s + "</section>\n"
    }

    static let style = """
    body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1300px;padding:0 1em;color:#1b1b1b}
    table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
    .item{border:1px solid #ccc;border-radius:6px;margin:.8em 0;padding:.6em .8em}.item header{margin-bottom:.3em}
    .grid{display:grid;grid-template-columns:1fr 1fr 1fr;gap:.8em}.grid p,.prompt p{white-space:pre-wrap;margin:.2em 0}
    h4{margin:.2em 0;font-size:.85em;text-transform:uppercase;color:#555}.req{color:#666;font-style:italic}
    del{background:#fdd;color:#900}ins{background:#dfd;color:#060;text-decoration:none}.flags{color:#b00}
    .curves{display:flex;flex-wrap:wrap;gap:.6em}.curve{margin:0}.curve figcaption{font-size:.85em;color:#444}
    .controls{position:sticky;top:0;background:#fff;padding:.4em 0;border-bottom:1px solid #eee}.note{color:#555}
    """

    static let script = """
    (function(){var q=document.getElementById('q'),p=document.getElementById('principle'),c=document.getElementById('changed'),
    f=document.getElementById('flagged'),n=document.getElementById('count'),items=[].slice.call(document.querySelectorAll('.item'));
    function apply(){var t=q.value.toLowerCase(),shown=0;items.forEach(function(el){var ok=(!t||el.textContent.toLowerCase().indexOf(t)>=0)
    &&(!p.value||el.dataset.principle===p.value)&&(!c.checked||el.dataset.changed==='true')&&(!f.checked||el.dataset.flagged==='true');
    el.style.display=ok?'':'none';if(ok)shown++;});n.textContent=shown+' shown';}
    [q,p,c,f].forEach(function(e){e.addEventListener('input',apply);e.addEventListener('change',apply);});apply();})();
    """
}
