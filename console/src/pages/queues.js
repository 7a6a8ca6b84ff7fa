// Queues and types: each class's Cloud Tasks queue (state, depth, oldest task) and each job type's
// jobs (queued, retrying, running, oldest queued), pause and circuit breaker, from the API every few
// seconds (Cloud Tasks has no listener) and at once whenever a `type_states` document changes (a
// pause, a resume, a breaker opening: a listener under the rules hears it). Pause (with a reason) and
// resume go through the API (features/flow.js).

import { collection, onSnapshot } from "firebase/firestore";

import { errorText, h, notice, span, utc } from "../dom.js";
import { confirmDialog, formDialog } from "../dialog.js";
import * as flow from "../features/flow.js";

export const title = "Queues and types";
const EVERY_MS = 5000;

export function mount(ctx, el) {
  const problem = h("p", { class: "error", role: "alert", hidden: true });
  const queues = h("tbody");
  const types = h("tbody");
  el.append(h("h1", { text: `Queues and types in ${ctx.env}` }), problem,
    h("h2", { text: "Queues (one per class)" }),
    h("div", { class: "scroll" }, h("table", { id: "queues-table", class: "grid" }, h("thead", {}, h("tr", {},
      ["Class", "Queue", "Route", "State", "Depth", "Oldest task", "Rate /s", "Concurrent"].map((c) => h("th", { scope: "col", text: c })))), queues)),
    h("h2", { text: "Job types" }),
    h("p", { class: "dim", text: "A paused type still accepts submits; its jobs wait (using no attempt) until it is resumed. "
      + "A type with a circuit breaker stops itself when most of its recent attempts fail." }),
    h("div", { class: "scroll" }, h("table", { id: "types-table", class: "grid" }, h("thead", {}, h("tr", {},
      ["Type", "Queued", "Retrying", "Running", "Oldest queued", "State", "Waiting", "Breaker", ""].map((c) => h("th", { scope: "col", text: c })))), types)));
  const drawn = new Map(); // type -> {tr, cells, button}
  let stopped = false;
  let busy = false;
  let again = false;

  async function refresh() {
    if (busy) { again = true; return; } // one fetch at a time; one more if asked meanwhile
    busy = true;
    try {
      const [q, t] = await Promise.all([ctx.session.api.queues(), ctx.session.api.types()]);
      if (stopped) return;
      problem.hidden = true;
      queues.replaceChildren(...q.queues.map((r) => h("tr", { data: { class: r.class, depth: r.depth ?? "" } },
        h("th", { scope: "row", text: r.class }), h("td", { class: "mono", text: r.queue }), h("td", { text: r.route }),
        h("td", { text: r.state }), h("td", { text: `${r.depth ?? "—"}${r.depth_capped ? "+" : ""}${r.pool_waiting_jobs != null ? ` (${r.pool_waiting_jobs} on the pool)` : ""}` }),
        h("td", { text: span(r.oldest_task_age_seconds) }), h("td", { text: r.max_dispatches_per_second ?? "—" }),
        h("td", { text: r.max_concurrent_dispatches ?? "—" }))));
      const next = t.types.map(row);
      if (next.length !== types.children.length || next.some((tr, i) => types.children[i] !== tr)) types.replaceChildren(...next);
    } catch (err) {
      if (stopped) return;
      problem.textContent = `Cannot read queues and types: ${errorText(err)}`;
      problem.hidden = false;
    } finally {
      busy = false;
      if (again && !stopped) { again = false; refresh(); }
    }
  }

  // One row per type, kept: its cells are refilled in place, so a button is never replaced under a click.
  function row(r) {
    let kept = drawn.get(r.type);
    if (!kept) {
      const cells = Array.from({ length: 8 }, (_, i) => h(i ? "td" : "th", i ? {} : { scope: "row" }));
      const button = h("button", { type: "button" });
      kept = { tr: h("tr", { data: { type: r.type } }, cells, h("td", {}, button)), cells, button };
      drawn.set(r.type, kept);
    }
    const state = flow.stateOf(r);
    const breaker = state.breaker?.state || "none";
    Object.assign(kept.tr.dataset, { paused: String(state.paused), source: state.source || "", breaker, waiting: state.waiting });
    const [name, queued, retrying, running, oldest, shown, waiting, breakerCell] = kept.cells;
    name.textContent = r.type;
    queued.textContent = r.queued ?? "—";
    retrying.textContent = r.retrying ?? "—";
    running.textContent = r.running ?? "—";
    oldest.textContent = span(r.oldest_queued_age_seconds);
    shown.className = `state ${state.paused ? "warn" : ""}`;
    shown.replaceChildren(flow.stateText(state), state.since ? h("div", { class: "dim", text: `since ${utc(state.since)} UTC` }) : "");
    waiting.className = "waiting";
    waiting.textContent = state.paused ? state.waiting : "—";
    breakerCell.className = `breaker ${breaker === "open" || breaker === "half_open" ? "error" : ""}`;
    breakerCell.textContent = flow.breakerText(state.breaker, utc);
    const b = kept.button;
    b.className = state.paused ? "resume" : "pause";
    b.textContent = state.paused ? "Resume…" : "Pause…";
    b.onclick = state.paused ? () => resume(r.type, state) : () => pause(r.type);
    return kept.tr;
  }

  async function pause(type) {
    const form = await formDialog({ title: `Pause ${type} in ${ctx.env}`, id: "pause-dialog", confirm: "Pause",
      note: "Submits are still accepted and wait; nothing of this type runs until it is resumed. Say why: "
        + "the reason is shown here, in the CLI and on every waiting job.",
      fields: [{ name: "reason", label: "Reason" }] });
    if (!form) return;
    try {
      const answer = await flow.pause(ctx.session.api, type, form.reason.trim());
      const s = flow.stateOf(answer.type_state);
      notice(answer.changed ? `${type}: paused (${form.reason.trim()}).` : `${type} was paused already: ${flow.stateText(s)}.`);
    } catch (err) {
      notice(`Pause refused: ${errorText(err)}`, "error");
    }
    refresh();
  }

  async function resume(type, state) {
    const ok = await confirmDialog({ title: `Resume ${type} in ${ctx.env}?`, id: "resume-dialog", confirm: "Resume",
      body: [h("p", { text: `It is ${flow.stateText(state)}.` }),
        h("p", { text: state.waiting ? `${state.waiting} waiting jobs are dispatched again, oldest first.` : "No job waits behind it." })] });
    if (!ok) return;
    try {
      const answer = await flow.resume(ctx.session.api, type);
      notice(answer.changed ? `${type}: resumed.` : `${type} was not paused.`);
    } catch (err) {
      notice(`Resume refused: ${errorText(err)}`, "error");
    }
    refresh();
  }

  // A pause or a breaker shows as soon as its document changes, not at the next poll.
  const unwatch = onSnapshot(collection(ctx.db, "type_states"), () => refresh(),
    (err) => { problem.textContent = `Cannot watch pauses: ${errorText(err)}`; problem.hidden = false; refresh(); });
  const timer = setInterval(refresh, EVERY_MS);
  return { stop: () => { stopped = true; unwatch(); clearInterval(timer); } };
}
