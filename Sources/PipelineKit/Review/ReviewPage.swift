/// The browser review app's one page: markup, style and script in one response, nothing fetched
/// from elsewhere. Model text reaches the page only through `textContent`, never as markup.
/// `nonce` is the per-response Content-Security-Policy nonce of the inline style and script.
public enum ReviewPage {
    public static func html(nonce: String) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>precept review</title>
        <meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
        <style nonce="\(nonce)">
        body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#222;display:flex;flex-direction:column;height:100vh}
        header{padding:8px 14px;background:#263238;color:#eceff1;display:flex;gap:18px;align-items:center;flex-wrap:wrap}
        header b{color:#fff}#filters{padding:6px 14px;background:#eceff1;display:flex;gap:14px;align-items:center;flex-wrap:wrap}
        main{display:flex;flex:1;min-height:0}#list{width:230px;overflow:auto;border-right:1px solid #ccc;margin:0;padding:0;list-style:none}
        #list li{padding:4px 8px;cursor:pointer;border-bottom:1px solid #eee;font-size:12px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
        #list li.cur{background:#bbdefb}#list .v{display:inline-block;width:34px;font-weight:bold}
        #item{flex:1;overflow:auto;padding:10px 18px}.box{white-space:pre-wrap;border:1px solid #ddd;border-radius:4px;padding:6px 8px;margin:2px 0 10px;background:#fafafa}
        h3{margin:8px 0 2px;font-size:13px;color:#555}.cols{display:flex;gap:12px}.cols>div{flex:1;min-width:0}
        del{background:#ffcdd2;text-decoration:line-through}ins{background:#c8e6c9;text-decoration:none}
        .chosen{outline:3px solid #43a047}#status{padding:4px 14px;background:#fff8e1;min-height:1.4em}#status.err{background:#ffcdd2}
        textarea{width:100%;min-height:120px;font:inherit}table.pp{border-collapse:collapse;font-size:12px}table.pp td,table.pp th{border:1px solid #ddd;padding:2px 6px}
        #f-band{width:4em}kbd{border:1px solid #999;border-radius:3px;padding:0 4px;background:#fff;color:#222;font-size:12px}#help{font-size:12px;color:#555}
        </style></head><body>
        <header><span>run <b id="run"></b></span><span>reviewer <b id="reviewer"></b></span><span id="progress"></span><span id="agreement"></span><span id="mode"></span></header>
        <div id="filters">
         <label>principle <select id="f-principle"><option value="">all</option></select></label>
         <label><input type="checkbox" id="f-flagged"> flagged</label>
         <label><input type="checkbox" id="f-low"> low confidence (|P−0.5| &lt; <input id="f-band" type="number" min="0" max="0.5" step="0.05" value="0.2">)</label>
         <label><input type="checkbox" id="f-disagree"> judge ≠ human</label>
         <label><input type="checkbox" id="f-unreviewed"> not yet reviewed</label>
         <span id="help"><kbd>j</kbd>/<kbd>k</kbd> next/previous · <kbd>a</kbd> A better (accept the revision) · <kbd>b</kbd> B better (reject) · <kbd>t</kbd> tie · <kbd>e</kbd> edit revision · <kbd>n</kbd> note · <kbd>u</kbd> undo · in a text box <kbd>Ctrl</kbd>+<kbd>Enter</kbd> saves, <kbd>Esc</kbd> cancels</span>
        </div>
        <div id="status" role="status"></div>
        <main><ul id="list"></ul><section id="item"></section></main>
        <script nonce="\(nonce)">
        "use strict";
        const token = new URLSearchParams(location.search).get("token") || "";
        let state = null, shown = [], cur = 0, undoStack = [], editing = null;
        const $ = id => document.getElementById(id);
        function el(tag, text, cls) { const e = document.createElement(tag); if (text != null) e.textContent = text; if (cls) e.className = cls; return e; }
        function say(text, err) { const s = $("status"); s.textContent = text; s.className = err ? "err" : ""; }
        async function api(path, body) {
          const opts = { headers: { "X-Precept-Token": token } };
          if (body !== undefined) { opts.method = "POST"; opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
          const r = await fetch(path, opts);
          let j = {}; try { j = await r.json(); } catch (e) {}
          if (!r.ok) throw new Error(j.error || (r.status + " " + r.statusText));
          return j;
        }
        // A revision item keeps its key when its labels move from the revise stage to the judge.
        const keyOf = it => (it.kind === "revision" ? "revision" : it.stage) + "\\u001f" + it.record + "\\u001f" + it.sample;
        function judgeChoice(it) { if (!it.judge) return null; const p = it.judge.p_a; return Math.abs(p - 0.5) < 1e-4 ? "tie" : (p > 0.5 ? "a" : "b"); }
        function humanChoice(it) { return it.human && !it.human.stale ? it.human.choice : null; }
        function visible(it) {
          if ($("f-principle").value && it.principle !== $("f-principle").value) return false;
          if ($("f-flagged").checked && !(it.flags && it.flags.length)) return false;
          if ($("f-low").checked && !(it.judge && Math.abs(it.judge.p_a - 0.5) < parseFloat($("f-band").value || "0"))) return false;
          if ($("f-disagree").checked && !(humanChoice(it) && it.judge && humanChoice(it) !== judgeChoice(it))) return false;
          if ($("f-unreviewed").checked && humanChoice(it)) return false;
          return true;
        }
        function applyFilters(keepKey) {
          shown = state.items.filter(visible);
          const i = keepKey ? shown.findIndex(it => keyOf(it) === keepKey) : -1;
          cur = i >= 0 ? i : Math.min(cur, Math.max(0, shown.length - 1));
          render();
        }
        function renderHeader() {
          $("run").textContent = state.run; $("reviewer").textContent = state.reviewer;
          const done = state.items.filter(humanChoice).length;
          $("progress").textContent = done + " of " + state.items.length + " reviewed";
          const a = state.agreement;
          $("agreement").textContent = a ? ("judge vs human on " + a.pairs + " pairs: accuracy " + a.accuracy.toFixed(2) + ", κ " + a.kappa.toFixed(2)) : "no judge/human agreement yet";
          $("mode").textContent = state.read_only ? "read-only" : "";
        }
        function renderList() {
          const list = $("list"); list.replaceChildren();
          shown.forEach((it, i) => {
            const li = el("li"); li.dataset.record = it.record; li.dataset.sample = it.sample; if (i === cur) li.className = "cur";
            const h = humanChoice(it);
            li.append(el("span", h ? h.toUpperCase() : "·", "v"), document.createTextNode(it.record + (it.sample ? " #" + it.sample : "") + " · " + (it.principle || it.stage)));
            li.onclick = () => { cur = i; render(); };
            list.append(li);
          });
          const c = list.querySelector(".cur"); if (c) c.scrollIntoView({ block: "nearest" });
        }
        function box(title, text, id) { const d = el("div"); d.append(el("h3", title)); const b = el("div", text, "box"); if (id) b.id = id; d.append(b); return d; }
        function renderItem() {
          const pane = $("item"); pane.replaceChildren();
          const it = shown[cur];
          if (!it) { pane.append(el("p", state.items.length ? "No item matches the filters." : "This run has nothing to review yet.")); return; }
          pane.dataset.record = it.record; pane.dataset.stage = it.stage;
          pane.append(el("h2", it.record + (it.sample ? " · sample " + it.sample : "") + " · " + (it.kind === "revision" ? "revision" : "judged pair") + " · stage " + it.stage));
          if (it.principle) pane.append(el("div", "principle: " + it.principle));
          if (it.flags && it.flags.length) pane.append(el("div", "flags: " + it.flags.join(", ")));
          pane.append(box("Prompt", it.prompt));
          if (it.kind === "revision") {
            pane.append(box("Critique", it.critique));
            const d = el("div"); d.append(el("h3", "Revision as a word diff of the original" + (it.human && it.human.edited && !it.human.stale ? " (edited by " + it.human.reviewer + ")" : "")));
            const b = el("div", null, "box"); b.id = "diff";
            it.diff.forEach(([op, text]) => { b.append(op === "=" ? document.createTextNode(text) : el(op === "-" ? "del" : "ins", text)); b.append(document.createTextNode(" ")); });
            d.append(b); pane.append(d);
          }
          const cols = el("div", null, "cols");
          const h = humanChoice(it);
          const A = box("A · " + it.a_label, it.a, "text-a"), B = box("B · " + it.b_label, it.b, "text-b");
          if (h === "a") A.querySelector(".box").classList.add("chosen");
          if (h === "b") B.querySelector(".box").classList.add("chosen");
          cols.append(A, B); pane.append(cols);
          if (it.judge) {
            const j = it.judge; const d = el("div"); d.id = "judge";
            d.append(el("h3", "Judge (" + j.stage + ", " + j.method + (j.models.length > 1 ? ", panel " + j.models.join(" + ") : "") + ")"));
            d.append(el("div", "P(A better) = " + j.p_a.toFixed(3) + (j.below_confidence ? " · below the stage's min_confidence" : "")));
            const t = el("table", null, "pp"); const hr = el("tr"); hr.append(el("th", "principle"), el("th", "order 1"), el("th", "order 2 (positions swapped)")); t.append(hr);
            j.per_principle.forEach(p => { const r = el("tr"); r.append(el("td", p.principle)); p.orders.forEach(o => r.append(el("td", o.toFixed(3)))); t.append(r); });
            d.append(t); pane.append(d);
          } else pane.append(el("div", "No judge label for this item."));
          const hv = el("div"); hv.id = "human";
          if (it.human) {
            const c = it.human.choice;
            hv.append(el("h3", "Human" + (it.human.stale ? " (about an earlier text: not in force)" : "")));
            hv.append(el("div", "verdict: " + (c ? (c === "tie" ? "tie" : c.toUpperCase() + " better") : "none") + " · " + it.human.reviewer + " · " + it.human.time));
            if (it.human.note) hv.append(el("div", "note: " + it.human.note));
          } else hv.append(el("h3", "Human: not reviewed"));
          pane.append(hv);
          if (editing) {
            const d = el("div"); d.append(el("h3", editing.kind === "edit" ? "Edit the revision (Ctrl+Enter saves, Esc cancels)" : "Note (Ctrl+Enter saves, Esc cancels)"));
            const ta = el("textarea"); ta.id = "editor"; ta.value = editing.text; d.append(ta); pane.append(d);
            ta.addEventListener("keydown", ev => {
              if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); const e = editing; editing = null; send(e.kind === "edit" ? { edited_revision: ta.value } : { note: ta.value }); }
              else if (ev.key === "Escape") { ev.preventDefault(); editing = null; render(); }
            });
            setTimeout(() => ta.focus(), 0);
          }
        }
        function render() { renderHeader(); renderList(); renderItem(); }
        function replaceItem(item) {
          if (!item) return;
          const i = state.items.findIndex(x => keyOf(x) === keyOf(item));
          if (i >= 0) state.items[i] = item;
        }
        // Actions go to the server one at a time, in the order the keys were pressed, each about
        // the item shown when its key was pressed; the view stays on whatever is current then.
        let queue = Promise.resolve();
        function enqueue(task) { queue = queue.then(task, task); }
        function currentKey() { return shown[cur] ? keyOf(shown[cur]) : null; }
        function send(fields) {
          const it = shown[cur]; if (!it) return;
          if (state.read_only) { say("read-only: nothing is written", true); return; }
          const body = Object.assign({ stage: it.stage, record: it.record, sample: it.sample, subject: it.subject }, fields);
          enqueue(async () => {
            try {
              const r = await api("api/label", body);
              undoStack.push({ id: r.id });
              replaceItem(r.item); await refreshAgreement(); applyFilters(currentKey());
              say("saved label " + r.id + " for " + it.record);
            } catch (e) { say(e.message, true); render(); }
          });
        }
        function undo() {
          enqueue(async () => {
            const last = undoStack.pop(); if (!last) { say("nothing to undo"); return; }
            try { const r = await api("api/undo", { id: last.id }); replaceItem(r.item); await refreshAgreement(); applyFilters(currentKey()); say("undid label " + last.id); }
            catch (e) { say(e.message, true); }
          });
        }
        async function refreshAgreement() { try { const s = await api("api/state"); state.agreement = s.agreement; } catch (e) {} }
        document.addEventListener("keydown", ev => {
          if (editing || ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT" || ev.target.tagName === "TEXTAREA") return;
          if (ev.ctrlKey && ev.key === "z") { ev.preventDefault(); undo(); return; }
          if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
          const it = shown[cur];
          switch (ev.key) {
            case "j": case "ArrowDown": if (cur < shown.length - 1) { cur++; render(); } break;
            case "k": case "ArrowUp": if (cur > 0) { cur--; render(); } break;
            case "a": send({ choice: "a" }); break;
            case "b": send({ choice: "b" }); break;
            case "t": send({ choice: "tie" }); break;
            case "u": undo(); break;
            case "e": if (it && it.editable && !state.read_only) { editing = { kind: "edit", text: it.a }; render(); } else say(it && !it.editable ? "only revisions can be edited" : "read-only", true); break;
            case "n": if (it && !state.read_only) { editing = { kind: "note", text: (it.human && it.human.note) || "" }; render(); } break;
            default: return;
          }
          ev.preventDefault();
        });
        ["f-principle", "f-flagged", "f-low", "f-band", "f-disagree", "f-unreviewed"].forEach(id => $(id).addEventListener("change", () => { cur = 0; applyFilters(); $(id).blur(); }));
        (async () => {
          try {
            state = await api("api/state");
            state.principles.forEach(p => { const o = el("option", p); o.value = p; $("f-principle").append(o); });
            applyFilters(); say(state.items.length + " items · press a key (help above)");
            document.body.dataset.ready = "1";
          } catch (e) { say(e.message, true); }
        })();
        </script></body></html>
        """
    }
}
