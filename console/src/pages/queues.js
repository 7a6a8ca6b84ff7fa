// Queues and types: each class's Cloud Tasks queue (state, depth, oldest task) and each job type's
// waiting and running jobs, from the API every few seconds (Cloud Tasks has no listener); pause and
// resume of a type where the server has flow control (features/flow.js).

import { errorText, h, notice, span } from "../dom.js";
import { formDialog } from "../dialog.js";
import * as flow from "../features/flow.js";

export const title = "Queues and types";
const EVERY_MS = 5000;

export function mount(ctx, el) {
  const problem = h("p", { class: "error", role: "alert", hidden: true });
  const queues = h("tbody");
  const types = h("tbody");
  const flowState = h("p", { id: "flow-state", role: "status" });
  el.append(h("h1", { text: `Queues and types in ${ctx.env}` }), problem,
    h("h2", { text: "Queues (one per class)" }),
    h("div", { class: "scroll" }, h("table", { id: "queues-table", class: "grid" }, h("thead", {}, h("tr", {},
      ["Class", "Queue", "Route", "State", "Depth", "Oldest task", "Rate /s", "Concurrent"].map((c) => h("th", { scope: "col", text: c })))), queues)),
    h("h2", { text: "Job types" }), flowState,
    h("div", { class: "scroll" }, h("table", { id: "types-table", class: "grid" }, h("thead", {}, h("tr", {},
      ["Type", "Queued", "Retrying", "Running", "Oldest queued", "State", ""].map((c) => h("th", { scope: "col", text: c })))), types)));
  let canPause = false;
  let stopped = false;

  async function refresh() {
    try {
      const [q, t] = await Promise.all([ctx.session.api.queues(), ctx.session.api.types()]);
      if (stopped) return;
      problem.hidden = true;
      queues.replaceChildren(...q.queues.map((r) => h("tr", { data: { class: r.class, depth: r.depth ?? "" } },
        h("th", { scope: "row", text: r.class }), h("td", { class: "mono", text: r.queue }), h("td", { text: r.route }),
        h("td", { text: r.state }), h("td", { text: `${r.depth ?? "—"}${r.depth_capped ? "+" : ""}${r.pool_waiting_jobs != null ? ` (${r.pool_waiting_jobs} on the pool)` : ""}` }),
        h("td", { text: span(r.oldest_task_age_seconds) }), h("td", { text: r.max_dispatches_per_second ?? "—" }),
        h("td", { text: r.max_concurrent_dispatches ?? "—" }))));
      types.replaceChildren(...t.types.map((r) => row(r, flow.pausedOf(r.type, r, q))));
    } catch (err) {
      problem.textContent = `Cannot read queues: ${errorText(err)}`;
      problem.hidden = false;
    }
  }

  function row(r, state) {
    const button = !canPause
      ? h("button", { type: "button", class: "pause", disabled: true, text: "Pause", title: "not available on this server" })
      : state.paused
        ? h("button", { type: "button", class: "resume", text: "Resume", on: { click: () => act("resume", r.type) } })
        : h("button", { type: "button", class: "pause", text: "Pause…", on: { click: () => act("pause", r.type) } });
    const label = state.breaker ? "breaker open" : state.paused ? `paused${state.reason ? `: ${state.reason}` : ""}` : "running";
    return h("tr", { data: { type: r.type, paused: String(state.paused) } },
      h("th", { scope: "row", text: r.type }), h("td", { text: r.queued }), h("td", { text: r.retrying }),
      h("td", { text: r.running }), h("td", { text: span(r.oldest_queued_age_seconds) }),
      h("td", { class: state.paused ? "warn" : "", text: label }), h("td", {}, button));
  }

  async function act(what, type) {
    try {
      if (what === "pause") {
        const form = await formDialog({ title: `Pause ${type} in ${ctx.env}`, id: "pause-dialog", confirm: "Pause",
          note: "Submits are still accepted and wait; nothing of this type runs until it is resumed.",
          fields: [{ name: "reason", label: "Reason" }] });
        if (!form) return;
        await flow.pause(ctx.session.api, type, form.reason);
      } else {
        await flow.resume(ctx.session.api, type);
      }
      notice(`${type}: ${what}d.`);
      refresh();
    } catch (err) {
      notice(`${what} refused: ${errorText(err)}`, "error");
    }
  }

  flow.available(ctx.session.api).then((ok) => {
    canPause = ok;
    flowState.dataset.available = String(ok);
    flowState.textContent = ok ? "Pause and resume: available." : "Pause, resume and circuit breakers: not available on this server.";
    refresh();
  });
  refresh();
  const timer = setInterval(refresh, EVERY_MS);
  return { stop: () => { stopped = true; clearInterval(timer); } };
}
