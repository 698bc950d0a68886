import Foundation

/// The report's training and evaluation sections: per training stage, inline SVG curves of its
/// metrics.jsonl and its monitor warnings; per evaluate stage, the evaluation table.
enum TrainingSection {
    /// Metrics charted per stage type, in this order (those present in the file).
    static func chartedMetrics(_ kind: StageKind) -> [String] {
        switch kind {
        case .rewardModel: ["loss", "accuracy"]
        case .dpo: ["loss", "rewards/accuracies", "rewards/margins"]
        case .sft: ["loss", "perplexity"]
        case .ppo: ["objective/scores", "objective/rlhf_reward", "objective/kl", "loss/policy", "loss/value", "response_length", "distinct_2"]
        default: []
        }
    }

    /// (step, split, metrics) lines of a metrics.jsonl.
    static func readMetrics(_ url: URL) -> [(step: Int, split: String, values: [String: Double])] {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let step = o["step"] as? Int else { return nil }
            return (step, o["split"] as? String ?? "train", o.compactMapValues { ($0 as? NSNumber)?.doubleValue })
        }
    }

    /// A line chart of (x, y) points with its range labelled; nil for fewer than one point.
    static func svg(title: String, points: [(Double, Double)], eval: [(Double, Double)]) -> String? {
        guard !points.isEmpty else { return nil }
        let w = 260.0, h = 120.0, pad = 28.0
        let all = points + eval
        let xs = all.map(\.0), ys = all.map(\.1)
        let (x0, x1) = (xs.min()!, max(xs.max()!, xs.min()! + 1))
        var (y0, y1) = (ys.min()!, ys.max()!)
        if y1 - y0 < 1e-12 { y0 -= 0.5; y1 += 0.5 }
        func px(_ p: (Double, Double)) -> String {
            String(format: "%.1f,%.1f", pad + (p.0 - x0) / (x1 - x0) * (w - pad - 6), h - 16 - (p.1 - y0) / (y1 - y0) * (h - 30))
        }
        var s = "<figure class=\"curve\"><svg viewBox=\"0 0 \(Int(w)) \(Int(h))\" width=\"\(Int(w))\" height=\"\(Int(h))\" role=\"img\" aria-label=\"\(HTMLReport.escape(title))\">"
        s += "<rect x=\"\(pad)\" y=\"14\" width=\"\(w - pad - 6)\" height=\"\(h - 30)\" fill=\"none\" stroke=\"#ddd\"/>"
        s += "<polyline fill=\"none\" stroke=\"#2a6fb0\" stroke-width=\"1.6\" points=\"\(points.map(px).joined(separator: " "))\"/>"
        for p in eval { let c = px(p).split(separator: ","); s += "<circle cx=\"\(c[0])\" cy=\"\(c[1])\" r=\"3\" fill=\"#c0392b\"/>" }
        s += String(format: "<text x=\"2\" y=\"20\" font-size=\"9\">%.3g</text><text x=\"2\" y=\"%.0f\" font-size=\"9\">%.3g</text>", y1, h - 16, y0)
        s += String(format: "<text x=\"%.0f\" y=\"%.0f\" font-size=\"9\">step %.0f</text><text x=\"%.0f\" y=\"%.0f\" font-size=\"9\" text-anchor=\"end\">%.0f</text>",
                    pad, h - 4, x0, w - 6, h - 4, x1)
        s += "</svg><figcaption>\(HTMLReport.escape(title))</figcaption></figure>"
        return s
    }

    static func render(_ view: RunView) -> String {
        let directory = view.store.directory
        var html = ""
        for stage in view.pipeline.stages {
            let metrics = chartedMetrics(stage.kind)
            let dir = directory.appendingPathComponent(stage.id)
            if !metrics.isEmpty {
                let lines = readMetrics(dir.appendingPathComponent("metrics.jsonl"))
                guard !lines.isEmpty else { continue }
                html += "<section><h2>Training: \(HTMLReport.escape(stage.id)) (\(stage.kind.keyword))</h2><div class=\"curves\">"
                for m in metrics {
                    let train = lines.filter { $0.split == "train" }.compactMap { l in l.values[m].map { (Double(l.step), $0) } }
                    let eval = lines.filter { $0.split == "eval" }.compactMap { l in l.values[m].map { (Double(l.step), $0) } }
                    let title = m + (eval.last.map { String(format: " (held-out %.3f)", $0.1) } ?? "")
                    if let chart = svg(title: title, points: train, eval: eval) { html += chart }
                }
                html += "</div>"
                if let text = try? String(contentsOf: dir.appendingPathComponent("monitors.jsonl"), encoding: .utf8), !text.isEmpty {
                    let warnings = text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                    html += "<h3>Monitor warnings (\(warnings.count))</h3><ul class=\"flagged\">"
                    for w in warnings {
                        html += "<li>step \(w["step"] ?? "?") · \(HTMLReport.escape(w["monitor"] as? String ?? "")): \(HTMLReport.escape(w["message"] as? String ?? ""))</li>"
                    }
                    html += "</ul>"
                } else if case .ppo = stage.kind {
                    html += "<p class=\"note\">No monitor raised a warning (reward drift, reward collapse, KL bound, length growth, distinct-2 drop).</p>"
                }
                if case .rewardModel = stage.kind, let ws = TrainedDirectory(dir).summary()?.warnings, !ws.isEmpty {
                    html += "<ul class=\"flagged\">" + ws.map { "<li>\(HTMLReport.escape($0))</li>" }.joined() + "</ul>"
                }
                html += "</section>\n"
            } else if case .evaluate = stage.kind,
                      let data = try? Data(contentsOf: dir.appendingPathComponent("evaluation.json")),
                      let result = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
                html += "<section><h2>Evaluation: \(HTMLReport.escape(stage.id))</h2>"
                html += "<p>\(HTMLReport.escape("\(result["policy"] ?? "policy")")) against \(HTMLReport.escape("\(result["baseline"] ?? "baseline")")), "
                    + "judged by \(HTMLReport.escape("\(result["judge"] ?? "judge")")) in both orders; \(result["prompts"] ?? 0) held-out, "
                    + "\(result["benign_prompts"] ?? 0) benign, \(result["sycophancy_prompts"] ?? 0) sycophancy prompts.</p>"
                html += "<table><tr><th>metric</th><th>policy</th><th>baseline</th></tr>"
                for r in EvaluationTable.rows(result) {
                    html += "<tr><td>\(HTMLReport.escape(r.metric))</td><td>\(HTMLReport.escape(r.policy))</td><td>\(HTMLReport.escape(r.baseline))</td></tr>"
                }
                html += "</table></section>\n"
            }
        }
        return html
    }
}
