import Foundation

extension RunComparison {
    /// One self-contained page (no network requests): the summary, per-principle table, the
    /// constitution diff and every compared record with both revisions side by side and the
    /// word diff from A to B. All model and constitution text is escaped.
    public func html(nameA: String, nameB: String) -> String {
        let e = HTMLReport.escape
        func num(_ x: Double?) -> String { x.map { String(format: "%.3f", $0) } ?? "—" }
        func ci(_ x: [Double]?) -> String { x.map { String(format: "[%.2f, %.2f]", $0[0], $0[1]) } ?? "" }
        var s = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Precept compare: \(e(nameA)) vs \(e(nameB))</title>
        <style>\(Self.style)</style></head><body>
        <h1>Run A: \(e(nameA))<br>Run B: \(e(nameB))</h1>
        <section><h2>Summary</h2><ul>\(summaryLines.prefix(4).map { "<li>\(e($0))</li>" }.joined())</ul>
        <table><tr><th>principle</th><th>n A</th><th>win rate A [95 %]</th><th>mean P A</th><th>n B</th><th>win rate B [95 %]</th><th>mean P B</th></tr>
        """
        for r in perPrinciple {
            s += "<tr><td>\(e(r.id))</td><td>\(r.nA)</td><td>\(num(r.winRateA)) \(ci(r.ciA))</td><td>\(num(r.meanProbabilityA))</td>"
                + "<td>\(r.nB)</td><td>\(num(r.winRateB)) \(ci(r.ciB))</td><td>\(num(r.meanProbabilityB))</td></tr>"
        }
        s += "</table></section>\n<section><h2>Constitution diff (A → B)</h2><pre class=\"cdiff\">"
        let unified = LineDiff.unified(constitutionDiff)
        s += unified.isEmpty ? "identical" : unified.map { line -> String in
            let cls = line.hasPrefix("+ ") ? "add" : line.hasPrefix("- ") ? "del" : "ctx"
            return "<span class=\"\(cls)\">\(e(line))</span>"
        }.joined(separator: "\n")
        s += "</pre></section>\n<section><h2>Records (\(pairs.count))</h2>\n"
        for p in pairs {
            let flip = p.flipped ? " <span class=\"flip\">label flip</span>" : ""
            s += "<article><h3>\(e(p.record)) · sample \(p.sample)\(flip)</h3><p class=\"prompt\">\(e(p.prompt))</p>"
                + "<div class=\"cols\"><div><h4>A · \(e(p.principleA ?? "none")) · P=\(num(p.probabilityA))</h4><p>\(e(p.revisionA))</p></div>"
                + "<div><h4>B · \(e(p.principleB ?? "none")) · P=\(num(p.probabilityB))</h4><p>\(e(p.revisionB))</p></div></div>"
                + "<p class=\"diff\">\(HTMLReport.diffHTML(WordDiff.diff(p.revisionA, p.revisionB)))</p></article>\n"
        }
        return s + "</section></body></html>\n"
    }

    static let style = """
    body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#222}
    table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}
    .cols{display:grid;grid-template-columns:1fr 1fr;gap:1em}.prompt{font-weight:600}
    del{background:#fdd}ins{background:#dfd}.flip{background:#fe8;padding:0 .3em}
    .cdiff .add{background:#dfd}.cdiff .del{background:#fdd}.cdiff{white-space:pre-wrap}
    article{border-top:1px solid #ddd;padding-top:.5em}p{white-space:pre-wrap}
    """
}
