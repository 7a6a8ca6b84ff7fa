// Pipelines: the env's newest pipelines, live, and one pipeline live (watchPipeline on pipelines/{id}):
// its steps as a graph (layers by `after`, each step coloured and labelled by its status, a fan-out's
// children counted), the same as a table, and cancel, retry and promotion through the API.

import { errorText, h, notice, status, utc } from "../dom.js";
import { confirmDialog } from "../dialog.js";
import { childrenText, countsText, edges, layers } from "../features/graph.js";
import * as pipelines from "../features/pipelines.js";
import { promote } from "../promote.js";

export const title = "Pipelines";
const SVG = "http://www.w3.org/2000/svg";
const CHILDREN_EVERY_MS = 2000;

export function mount(ctx, el, params, id) {
  return id ? one(ctx, el, id) : list(ctx, el, params);
}

function list(ctx, el, params) {
  const state = h("p", { id: "pipelines-state", role: "status", text: "Loading…" });
  const view = h("div", { id: "pipelines-view", class: "scroll" });
  const filter = h("select", { id: "pipelines-status", "aria-label": "Status" },
    h("option", { value: "", text: "any status" }), pipelines.STATUSES.map((s) => h("option", { value: s, text: s })));
  filter.value = params.get("status") || "";
  filter.onchange = () => ctx.go("pipelines", new URLSearchParams(filter.value ? { status: filter.value } : {}));
  el.append(h("h1", { text: `Pipelines in ${ctx.env}` }), h("div", { class: "filters" }, h("label", {}, "Status ", filter)), state, view);
  let rows = [];
  let selected = -1;

  const stop = pipelines.watchList(ctx.db, { status: filter.value, shards: ctx.cfg.index_shards }, (found) => {
    rows = found;
    state.textContent = found.length ? `${found.length} pipeline${found.length === 1 ? "" : "s"}, newest first` : "No pipelines yet.";
    state.dataset.count = String(found.length);
    view.replaceChildren(found.length ? table(found) : "");
  }, (err) => { state.textContent = `Cannot read pipelines: ${errorText(err)}`; });

  function table(found) {
    return h("table", { class: "grid", id: "pipelines-table" }, h("thead", {}, h("tr", {},
      ["Pipeline", "Name", "Status", "Steps", "Owner", "Created", "Promoted from"].map((c) => h("th", { scope: "col", text: c })))),
      h("tbody", {}, found.map((p, i) => h("tr", { data: { id: p.id, status: p.status }, "aria-selected": i === selected || null },
        h("td", {}, h("a", { href: `#/${ctx.env}/pipelines/${p.id}`, class: "mono", text: p.id })),
        h("td", { text: p.name }), h("td", {}, status(p.status)), h("td", { text: countsText(p.counts) }),
        h("td", { text: p.owner }), h("td", { text: utc(p.created_at) }),
        h("td", { text: p.promoted_from ? `${p.promoted_from.env} ${p.promoted_from.id}` : "" })))));
  }

  function move(by) {
    if (!rows.length) return;
    selected = Math.max(0, Math.min(rows.length - 1, selected + by));
    view.replaceChildren(table(rows));
    view.querySelector("tr[aria-selected] a")?.focus();
  }

  return {
    stop,
    keys: { j: () => move(1), k: () => move(-1), Enter: () => rows[selected] && (location.hash = `#/${ctx.env}/pipelines/${rows[selected].id}`) },
  };
}

function one(ctx, el, id) {
  const body = h("div", { id: "pipeline-view", "aria-live": "polite" }, h("p", { text: "Loading…" }));
  const seen = h("ol", { id: "pipeline-statuses", class: "inline" });
  el.append(h("h1", {}, "Pipeline ", h("code", { id: "pipeline-id", text: id })), body,
    h("h2", { text: "Statuses seen here" }), seen);
  const live = new Map(); // step -> {ended, succeeded} of a waiting fan-out's children, counted here
  let last = null;
  let data = null;
  let stopped = false;

  const unwatch = ctx.session.client.watchPipeline(id, (u) => {
    if (u.status !== last) {
      last = u.status;
      seen.append(h("li", { data: { status: u.status }, text: u.status }));
    }
    data = u.data;
    for (const name of [...live.keys()]) if (data.steps?.[name]?.status !== "waiting") live.delete(name);
    render();
    // A fan-out that just went waiting is counted now, not at the next tick.
    if (Object.entries(data.steps || {}).some(([n, st]) => st.status === "waiting" && st.children != null && !live.has(n))) countChildren();
  }, (err) => body.replaceChildren(h("p", { class: "error", role: "alert", id: "pipeline-error", text: errorText(err) })));

  // The children of waiting fan-outs, counted while the page is open (the document counts them at the end).
  async function countChildren() {
    const waiting = Object.entries(data?.steps || {}).filter(([, s]) => s.status === "waiting" && s.children != null);
    for (const name of [...live.keys()]) if (!waiting.some(([n]) => n === name)) live.delete(name);
    if (!waiting.length) return;
    try {
      const counted = await Promise.all(waiting.map(([, s]) => pipelines.childCounts(ctx.db, s.job_id)));
      if (stopped) return;
      waiting.forEach(([name], i) => live.set(name, counted[i]));
      render();
    } catch (err) {
      notice(`Cannot count children: ${errorText(err)}`, "error");
    }
  }
  const timer = setInterval(countChildren, CHILDREN_EVERY_MS);

  // Each part is redrawn only when what it shows changed: a button is never replaced under a click.
  const parts = { facts: h("div"), actions: h("div", { class: "actions" }), promotions: h("div"),
    graph: h("div", { class: "scroll" }), table: h("div", { class: "scroll" }) };
  const drawn = {};
  function part(name, key, build) {
    if (drawn[name] === key) return;
    drawn[name] = key;
    parts[name].replaceChildren(...[build()].flat().filter(Boolean));
  }

  function render() {
    if (!data) return;
    const p = data;
    const steps = p.steps || {};
    if (!body.contains(parts.facts)) {
      body.replaceChildren(parts.facts, parts.actions, parts.promotions, h("h2", { text: "Steps" }), parts.graph, parts.table);
    }
    const counted = JSON.stringify([...live]);
    part("facts", JSON.stringify([p.status, p.counts, p.finished_at, p.cancel_requested, p.retry_count, p.labels]), () => facts(p));
    part("actions", `${p.status}|${Boolean(p.cancel_requested)}`, () => actions(p));
    part("promotions", JSON.stringify([p.promoted_from, p.promoted_to]), () => promotions(p));
    part("graph", JSON.stringify([steps, counted]), () => graph(steps, p.order || []));
    part("table", JSON.stringify([steps, counted]), () => stepTable(steps, p.order || []));
  }

  function facts(p) {
    return h("dl", { class: "facts" },
      fact("Status", status(p.status), "pipeline-status"),
      fact("Name", p.name), fact("Owner", p.owner),
      fact("Steps", countsText(p.counts), "pipeline-counts"),
      fact("Created", utc(p.created_at)), fact("Finished", utc(p.finished_at)),
      fact("Labels", Object.entries(p.labels || {}).map(([k, v]) => `${k}=${v}`).join(" ") || "—"),
      p.schedule ? fact("Schedule", `${p.schedule} (${p.scheduled_for || "?"})`) : null,
      p.cancel_requested ? fact("Cancel", `requested by ${p.cancelled_by || "?"}`) : null,
      p.retry_count ? fact("Retried", `${p.retry_count}× (last by ${p.retried_by || "?"}, ${utc(p.retried_at)})`) : null);
  }

  function actions(p) {
    const out = [];
    if (!pipelines.STATUSES.slice(1).includes(p.status)) {
      out.push(h("button", { type: "button", id: "pipeline-cancel", text: p.cancel_requested ? "Cancel requested" : "Cancel…",
        disabled: Boolean(p.cancel_requested), on: { click: () => cancel() } }));
    }
    if (p.status === "failed") {
      out.push(h("button", { type: "button", id: "pipeline-retry", text: "Retry…", on: { click: () => retry(data.steps || {}) } }));
    }
    if (ctx.session.env.promotes_to) {
      out.push(h("button", { type: "button", id: "pipeline-promote", text: `Promote to ${ctx.session.env.promotes_to}…`,
        on: { click: () => promote(ctx, "pipeline", id) } }));
    }
    return out;
  }

  function promotions(p) {
    const from = p.promoted_from;
    const to = p.promoted_to || [];
    if (!from && !to.length) return null;
    const link = (l) => h("a", { href: `#/${l.env}/${l.kind === "job" ? "jobs" : "pipelines"}/${l.id}`, text: `${l.env} ${l.id}` });
    return h("div", { id: "pipeline-promotions", class: "promotions" },
      from ? h("p", { id: "pipeline-promoted-from" }, "Promoted from ", from.kind === "pipeline" ? link(from)
        : `${from.env} ${from.kind} ${from.id}`, ` by ${from.by || "?"}, ${utc(from.at)}`) : null,
      to.length ? h("p", { id: "pipeline-promoted-to" }, "Promoted to ", to.map((l, i) => [i ? ", " : "", link(l)])) : null);
  }

  function stepTable(steps, order) {
    const names = layers(steps, order).flat();
    return h("table", { class: "grid", id: "pipeline-steps" }, h("thead", {}, h("tr", {},
      ["Step", "Status", "Type", "After", "Attempt", "Children", "Job"].map((c) => h("th", { scope: "col", text: c })))),
      h("tbody", {}, names.map((n) => {
        const s = steps[n];
        return h("tr", { data: { step: n, status: s.status } },
          h("th", { scope: "row", text: n }), h("td", {}, status(s.status)), h("td", { text: s.type || "" }),
          h("td", { text: (s.after || []).join(", ") || "—" }), h("td", { text: s.attempt ?? 0 }),
          h("td", { class: "children", text: childrenText(s, live.get(n)) || "—" }),
          h("td", {}, s.job_id ? h("a", { class: "mono", href: `#/${ctx.env}/jobs/${s.job_id}`, text: s.job_id }) : "—"));
      })));
  }

  function graph(steps, order) {
    const cols = layers(steps, order);
    const W = 230, H = 64, GX = 48, GY = 16;
    const pos = new Map();
    cols.forEach((names, x) => names.forEach((n, y) => pos.set(n, [x * (W + GX), y * (H + GY)])));
    const width = Math.max(1, cols.length * (W + GX) - GX);
    const height = Math.max(1, ...cols.map((c) => c.length)) * (H + GY) - GY;
    const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, width, id: "pipeline-graph", role: "img",
      "aria-label": `steps: ${Object.entries(steps).map(([n, s]) => `${n} ${s.status}`).join(", ")}` });
    for (const [from, to] of edges(steps)) {
      const [x1, y1] = pos.get(from);
      const [x2, y2] = pos.get(to);
      svg.append(node("line", { x1: x1 + W, y1: y1 + H / 2, x2, y2: y2 + H / 2, class: "edge", "data-from": from, "data-to": to }));
    }
    for (const [name, s] of Object.entries(steps)) {
      const [x, y] = pos.get(name);
      const a = node("a", s.job_id ? { href: `#/${ctx.env}/jobs/${s.job_id}` } : {});
      const counted = s.status === "waiting" ? live.get(name) : undefined;
      const kids = childrenText(s, counted);
      a.append(node("rect", { x, y, width: W, height: H, rx: 6, class: "step", "data-step": name, "data-status": s.status || "" }),
        node("text", { x: x + 10, y: y + 20, class: "name" }, name),
        node("text", { x: x + 10, y: y + 38, class: "dim" }, `${(s.status || "").replace("_", " ")} · ${s.type || ""}`),
        kids ? node("text", { x: x + 10, y: y + 55, class: `children${counted ? " live" : ""}`, "data-step": name }, kids) : "");
      svg.append(a);
    }
    return svg;
  }

  async function cancel() {
    const ok = await confirmDialog({ title: `Cancel pipeline ${id}?`, id: "pipeline-cancel-dialog", confirm: "Cancel the pipeline",
      cancel: "Keep it running",
      body: h("p", { text: "Every step that has not ended is cancelled (a running one stops at its next check; a fan-out with its children)." }) });
    if (!ok) return;
    try {
      const p = await ctx.session.client.cancelPipeline(id);
      notice(`Cancel of pipeline ${id} sent: it is ${p.status}.`);
    } catch (err) {
      notice(`Cancel refused: ${errorText(err)}`, "error");
    }
  }

  async function retry(steps) {
    const failed = Object.entries(steps).filter(([, s]) => s.status === "dead_lettered").map(([n]) => n);
    const skipped = Object.entries(steps).filter(([, s]) => s.status === "skipped").map(([n]) => n);
    const ok = await confirmDialog({ title: `Retry pipeline ${id}?`, id: "pipeline-retry-dialog", confirm: "Retry",
      body: [h("p", { text: `Run again: ${failed.join(", ") || "none"}.` }),
        h("p", { text: `Brought back after them: ${skipped.join(", ") || "none"}. Steps that succeeded do not run again.` })] });
    if (!ok) return;
    try {
      const p = await ctx.session.client.retryPipeline(id);
      notice(`Retry of pipeline ${id} sent: it is ${p.status}.`);
    } catch (err) {
      notice(`Retry refused: ${errorText(err)}`, "error");
    }
  }

  return { stop: () => { stopped = true; clearInterval(timer); unwatch(); } };
}

function node(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

function fact(label, value, id) {
  return [h("dt", { text: label }), h("dd", { id }, value)];
}
