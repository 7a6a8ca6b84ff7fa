// Pipelines: the env's newest pipelines, live, and one pipeline's steps as a graph (layers by `after`,
// each step coloured by its state), where the server serves pipelines (features/pipelines.js).

import { errorText, h, utc } from "../dom.js";
import * as pipelines from "../features/pipelines.js";

export const title = "Pipelines";
const SVG = "http://www.w3.org/2000/svg";

export function mount(ctx, el, params, id) {
  const state = h("p", { id: "pipelines-state", role: "status", text: "Asking the server…" });
  const view = h("div", { id: "pipelines-view" });
  el.append(h("h1", { text: id ? `Pipeline ${id}` : `Pipelines in ${ctx.env}` }), state, view);
  let stop = () => {};
  let stopped = false;

  pipelines.available(ctx.session.api).then((ok) => {
    if (stopped) return;
    state.dataset.available = String(ok);
    if (!ok) {
      state.textContent = "Pipelines: not available on this server.";
      return;
    }
    state.textContent = "";
    const fail = (err) => { state.textContent = `Cannot read pipelines: ${errorText(err)}`; };
    stop = id
      ? pipelines.watchOne(ctx.db, id, (p) => view.replaceChildren(p ? detail(p) : h("p", { text: "No such pipeline." })), fail)
      : pipelines.watchList(ctx.db, ctx.cfg.index_shards, (rows) => view.replaceChildren(list(rows)), fail);
  });

  function list(rows) {
    if (!rows.length) return h("p", { text: "No pipelines yet." });
    return h("table", { class: "grid", id: "pipelines-table" }, h("thead", {}, h("tr", {},
      ["Pipeline", "Name", "Status", "Steps", "Owner", "Created"].map((c) => h("th", { scope: "col", text: c })))),
      h("tbody", {}, rows.map((p) => h("tr", { data: { id: p.id, status: p.status } },
        h("td", {}, h("a", { href: `#/${ctx.env}/pipelines/${p.id}`, class: "mono", text: p.id })),
        h("td", { text: p.name }), h("td", { text: p.status }), h("td", { text: Object.keys(p.steps || {}).length }),
        h("td", { text: p.owner }), h("td", { text: utc(p.created_at) })))));
  }

  function detail(p) {
    return h("div", {}, h("p", { text: `${p.name || ""} · ${p.status} · owner ${p.owner || "?"} · created ${utc(p.created_at)}` }),
      graph(p.steps || {}));
  }

  function graph(steps) {
    const cols = pipelines.layers(steps);
    const W = 170, H = 54, GX = 60, GY = 18;
    const pos = new Map();
    cols.forEach((names, x) => names.forEach((n, y) => pos.set(n, [x * (W + GX), y * (H + GY)])));
    const width = cols.length * (W + GX);
    const height = Math.max(1, ...cols.map((c) => c.length)) * (H + GY);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("id", "pipeline-graph");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `steps: ${Object.entries(steps).map(([n, s]) => `${n} ${s.status}`).join(", ")}`);
    const el = (tag, attrs, text) => {
      const e = document.createElementNS(SVG, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      if (text != null) e.textContent = text;
      svg.append(e);
      return e;
    };
    for (const [name, s] of Object.entries(steps)) {
      for (const a of s.after || []) {
        if (!pos.has(a)) continue;
        const [x1, y1] = pos.get(a);
        const [x2, y2] = pos.get(name);
        el("line", { x1: x1 + W, y1: y1 + H / 2, x2, y2: y2 + H / 2, class: "edge" });
      }
    }
    for (const [name, s] of Object.entries(steps)) {
      const [x, y] = pos.get(name);
      const a = document.createElementNS(SVG, "a");
      if (s.job_id) a.setAttribute("href", `#/${ctx.env}/jobs/${s.job_id}`);
      svg.append(a);
      const r = document.createElementNS(SVG, "rect");
      Object.entries({ x, y, width: W, height: H, rx: 6, class: `step`, "data-step": name, "data-status": s.status || "" })
        .forEach(([k, v]) => r.setAttribute(k, v));
      a.append(r);
      const t = document.createElementNS(SVG, "text");
      t.setAttribute("x", x + 10);
      t.setAttribute("y", y + 22);
      t.textContent = name;
      const t2 = document.createElementNS(SVG, "text");
      t2.setAttribute("x", x + 10);
      t2.setAttribute("y", y + 42);
      t2.setAttribute("class", "dim");
      t2.textContent = s.status || "";
      a.append(t, t2);
    }
    return svg;
  }

  return { stop: () => { stopped = true; stop(); } };
}
