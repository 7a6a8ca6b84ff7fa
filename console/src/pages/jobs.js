// Jobs, newest first, live, filtered by status, type, owner and a label, a page at a time. An owner's
// jobs are one Firestore listener on that owner's range; everyone's (operators may read them all) are
// one listener per index shard, merged here (jobquery.js: an index over every job by creation time
// would be a hot range, docs/capacity.md). Each snapshot re-renders the page's rows; the time that
// takes is kept on the table (data-render-ms) for the browser test to read.

import { FieldPath, collection, limit, onSnapshot, orderBy, query, startAfter, where } from "firebase/firestore";

import { ago, errorText, h, status, utc } from "../dom.js";
import { merge, plan } from "./jobquery.js";

export const STATUSES = ["queued", "running", "retrying", "failed", "succeeded", "dead_lettered", "cancelled", "skipped"];
const SIZES = [50, 200, 1000];

export const title = "Jobs";

export function mount(ctx, el, params) {
  const f = {
    status: params.get("status") || "",
    type: params.get("type") || "",
    owner: params.get("owner") || "",
    label: params.get("label") || "",
    size: SIZES.includes(Number(params.get("size"))) ? Number(params.get("size")) : 50,
  };
  const cursors = []; // the last row of each page before the one shown: [created_at, id]
  let stops = [];
  let docs = [];
  let more = false;
  let selected = -1;

  const problem = h("p", { id: "jobs-error", class: "error", role: "alert", hidden: true });
  const table = h("table", { id: "jobs-table", class: "grid", data: { rows: "0" } });
  const tbody = h("tbody");
  table.append(
    h("caption", { class: "sr-only", text: "Jobs, newest first" }),
    h("thead", {}, h("tr", {}, ["Job", "Type", "Status", "Owner", "Class", "Try", "Progress", "Created", "Labels"].map(
      (c) => h("th", { scope: "col", text: c })))),
    tbody,
  );
  const count = h("span", { id: "jobs-count", role: "status" });
  const older = h("button", { type: "button", id: "jobs-older", text: "Older →", on: { click: () => page(+1) } });
  const newer = h("button", { type: "button", id: "jobs-newer", text: "← Newer", on: { click: () => page(-1) } });

  const form = h("form", { id: "jobs-filters", class: "filters", role: "search", on: { submit: apply, change: apply } },
    h("label", {}, "Status ", h("select", { name: "status" }, h("option", { value: "", text: "any" }),
      STATUSES.map((s) => h("option", { value: s, text: s.replace("_", " "), selected: s === f.status })))),
    h("label", {}, "Type ", h("input", { name: "type", value: f.type, size: 10, autocomplete: "off", id: "filter-type" })),
    h("label", {}, "Owner ", h("input", { name: "owner", value: f.owner, size: 10, autocomplete: "off" })),
    h("label", {}, "Label ", h("input", { name: "label", value: f.label, size: 12, placeholder: "key=value", autocomplete: "off" })),
    h("label", {}, "Per page ", h("select", { name: "size" },
      SIZES.map((n) => h("option", { value: n, text: n, selected: n === f.size })))),
    h("button", { type: "submit", text: "Filter" }),
  );
  el.append(h("h1", { text: `Jobs in ${ctx.env}` }), form, problem, h("div", { class: "pager" }, newer, count, older),
    h("div", { class: "scroll" }, table));

  function apply(event) {
    event.preventDefault();
    const data = new FormData(form);
    const next = new URLSearchParams();
    for (const k of ["status", "type", "owner", "label", "size"]) {
      const v = String(data.get(k) || "").trim();
      if (v && !(k === "size" && v === "50")) next.set(k, v);
    }
    ctx.go(`jobs`, next);
  }

  function build() {
    const after = cursors.length ? cursors[cursors.length - 1] : null;
    return plan(f, ctx.cfg.index_shards, after).map((p) => query(collection(ctx.db, "jobs"),
      ...p.filters.map(([field, op, value]) => where(new FieldPath(...field.split(".")), op, value)),
      ...p.orders.map(([field, dir]) => orderBy(field, dir)),
      ...(p.after ? [startAfter(...p.after)] : []),
      limit(p.limit)));
  }

  function stop() {
    stops.forEach((s) => s());
    stops = [];
  }

  function listen() {
    stop();
    problem.hidden = true;
    let queries;
    try {
      queries = build();
    } catch (err) {
      problem.textContent = err.message;
      problem.hidden = false;
      return;
    }
    // The page shows once every listener has answered, then again on each change of any of them.
    const lists = queries.map(() => null);
    stops = queries.map((q, i) => onSnapshot(q, (snap) => {
      const t0 = performance.now();
      lists[i] = snap.docs;
      if (lists.some((l) => l === null)) return;
      ({ rows: docs, more } = merge(lists, f.size, (d) => ({ created_at: d.get("created_at"), id: d.id })));
      render();
      table.dataset.renderMs = (performance.now() - t0).toFixed(1);
    }, (err) => {
      // A missing composite index in the cloud says so here, with the link that creates it.
      problem.textContent = `Cannot list jobs: ${errorText(err)}`;
      problem.hidden = false;
    }));
  }

  function render() {
    const now = Date.now();
    const rows = document.createDocumentFragment();
    for (const snap of docs) {
      const j = snap.data();
      const p = j.progress;
      const labels = Object.entries(j.labels || {}).map(([k, v]) => `${k}=${v}`).join(" ");
      rows.append(h("tr", { data: { id: snap.id, status: j.status } },
        h("td", {}, h("a", { href: `#/${ctx.env}/jobs/${snap.id}`, class: "mono", text: snap.id })),
        h("td", { text: j.type }),
        h("td", {}, status(j.status)),
        h("td", { text: j.owner }),
        h("td", { text: j.class }),
        h("td", { text: `${j.attempt ?? 0}/${j.max_attempts ?? "?"}` }),
        h("td", { text: p && p.total ? `${p.done}/${p.total}` : "" }),
        h("td", { title: utc(j.created_at), text: ago(j.created_at, now) }),
        h("td", { class: "labels", text: labels })));
    }
    tbody.replaceChildren(rows);
    table.dataset.rows = String(docs.length);
    count.textContent = docs.length
      ? `${cursors.length * f.size + 1}–${cursors.length * f.size + docs.length}`
      : "no jobs match";
    newer.disabled = cursors.length === 0;
    older.disabled = !more;
    select(Math.min(selected, docs.length - 1));
  }

  function page(step) {
    if (step > 0 && docs.length) {
      const last = docs[docs.length - 1];
      cursors.push([last.get("created_at"), last.get("id")]);
    }
    if (step < 0) cursors.pop();
    selected = -1;
    listen();
  }

  function select(i) {
    const rows = tbody.rows;
    if (rows[selected]) rows[selected].removeAttribute("aria-selected");
    selected = i;
    if (rows[i]) {
      rows[i].setAttribute("aria-selected", "true");
      rows[i].querySelector("a").focus({ preventScroll: false });
    }
  }

  listen();
  return {
    stop,
    keys: {
      j: () => select(Math.min(selected + 1, docs.length - 1)),
      k: () => select(Math.max(selected - 1, 0)),
      "/": () => document.getElementById("filter-type").focus(),
      n: () => !older.disabled && page(+1),
      p: () => !newer.disabled && page(-1),
    },
  };
}
