// Dead letters grouped by error fingerprint, live (a listener on the env's open `dead_letters`). A
// group is redriven through the API: first a dry run, which says what would happen, then the real
// redrive only after the operator confirms it.

import { collection, limit, onSnapshot, query, where } from "firebase/firestore";

import { ago, errorText, h, notice, utc } from "../dom.js";
import { confirmDialog } from "../dialog.js";

export const title = "Dead letters";
const LISTED = 500;

/** Dead letters grouped by fingerprint, biggest group first (as the API's GET dead-letters groups them). */
export function group(letters) {
  const groups = new Map();
  for (const d of letters) {
    const fp = d.fingerprint || "unknown";
    let g = groups.get(fp);
    if (!g) {
      g = { fingerprint: fp, count: 0, type: d.type, error: d.error || {}, first: d.dead_at, last: d.dead_at, ids: [] };
      groups.set(fp, g);
    }
    g.count += 1;
    if (g.ids.length < 20) g.ids.push(d.job_id);
    const at = d.dead_at?.toMillis?.() ?? 0;
    if (at < (g.first?.toMillis?.() ?? Infinity)) g.first = d.dead_at;
    if (at > (g.last?.toMillis?.() ?? -Infinity)) g.last = d.dead_at;
  }
  return [...groups.values()].sort((a, b) => b.count - a.count || a.fingerprint.localeCompare(b.fingerprint));
}

export function mount(ctx, el) {
  const list = h("div", { id: "dlq-groups" });
  const summary = h("p", { id: "dlq-summary", role: "status" });
  el.append(h("h1", { text: `Dead letters in ${ctx.env}` }), summary, list);
  const q = query(collection(ctx.db, "dead_letters"), where("redriven", "==", false), limit(LISTED));
  const stop = onSnapshot(q, (snap) => {
    const groups = group(snap.docs.map((d) => d.data()));
    summary.textContent = snap.size
      ? `${snap.size}${snap.size >= LISTED ? "+" : ""} open dead letters in ${groups.length} groups`
      : "No open dead letters.";
    list.replaceChildren(...groups.map((g) => card(g)));
  }, (err) => { summary.textContent = `Cannot read dead letters: ${errorText(err)}`; });

  function card(g) {
    return h("section", { class: "card dlq-group", data: { fingerprint: g.fingerprint, count: g.count } },
      h("h2", {}, h("code", { text: g.fingerprint }), ` · ${g.count} job${g.count === 1 ? "" : "s"} · ${g.type || "?"}`),
      h("p", { class: "error", text: `${g.error.type || "error"}: ${g.error.message || ""}` }),
      h("p", { text: `first ${utc(g.first)} · last ${ago(g.last)}` }),
      h("p", { class: "ids" }, g.ids.map((id) => [h("a", { href: `#/${ctx.env}/jobs/${id}`, class: "mono", text: id }), " "])),
      h("button", { type: "button", class: "redrive", text: "Redrive…", on: { click: () => redrive(g.fingerprint) } }));
  }

  async function redrive(fingerprint) {
    let dry;
    try {
      dry = await ctx.session.api.redrive({ fingerprint, dry_run: true });
    } catch (err) {
      notice(`Dry run refused: ${errorText(err)}`, "error");
      return;
    }
    const would = dry.results.filter((r) => r.outcome === "would_redrive");
    const ok = await confirmDialog({
      title: `Redrive ${would.length} of ${dry.count} jobs?`,
      id: "redrive-dialog",
      body: [
        h("p", { id: "redrive-dry-run", data: { count: would.length }, text:
          `Dry run: ${would.length} would run again as a new attempt; ${dry.count - would.length} would be skipped.` }),
        h("ul", {}, dry.results.slice(0, 20).map((r) => h("li", { class: "mono", text: `${r.job_id} ${r.outcome} ${r.detail || ""}` }))),
      ],
      confirm: `Redrive ${would.length} jobs`,
      disabled: would.length === 0,
    });
    if (!ok) return;
    try {
      const done = await ctx.session.api.redrive({ fingerprint, dry_run: false });
      notice(`Redrove ${done.redriven} of ${done.count} jobs with fingerprint ${fingerprint}.`);
    } catch (err) {
      notice(`Redrive refused: ${errorText(err)}`, "error");
    }
  }

  return { stop };
}
