// Schedules of this env: next and last run and health from GET /v1/schedules, fetched again whenever
// one of the env's `schedules/{name}` documents changes (a tick, an outcome), which a listener hears.

import { collection, onSnapshot } from "firebase/firestore";

import { ago, errorText, h, utc } from "../dom.js";
import { promote } from "../promote.js";

export const title = "Schedules";

export function mount(ctx, el) {
  const problem = h("p", { class: "error", role: "alert", hidden: true });
  const tbody = h("tbody");
  const table = h("table", { id: "schedules-table", class: "grid" },
    h("thead", {}, h("tr", {}, ["Schedule", "Cron", "Type", "Next run", "Last run", "Last outcome", "Health", "Promoted", ""]
      .map((c) => h("th", { scope: "col", text: c })))), tbody);
  el.append(h("h1", { text: `Schedules in ${ctx.env}` }), problem, h("div", { class: "scroll" }, table));
  const promoted = new Map();
  let timer = null;

  async function refresh() {
    try {
      const body = await ctx.session.api.schedules();
      problem.hidden = true;
      render(body.schedules.filter((s) => s.env === ctx.env));
    } catch (err) {
      problem.textContent = `Cannot read schedules: ${errorText(err)}`;
      problem.hidden = false;
    }
  }

  function render(rows) {
    tbody.replaceChildren(...rows.map((s) => h("tr", { data: { name: s.name, healthy: String(s.healthy) } },
      h("th", { scope: "row" }, s.name, s.description ? h("div", { class: "dim", text: s.description }) : null),
      h("td", { class: "mono", text: `${s.cron} ${s.time_zone}` }),
      h("td", { text: s.type || `pipeline${s.pipeline ? ` ${s.pipeline}` : ""}` }),
      h("td", { title: utc(s.next_run), text: s.enabled ? utc(s.next_run) : "disabled" }),
      h("td", { title: utc(s.last_run), text: s.last_run ? ago(s.last_run) : "never" }),
      h("td", {}, s.last_job_id ? h("a", { href: `#/${ctx.env}/jobs/${s.last_job_id}`, text: s.last_outcome || "?" })
        : s.last_pipeline_id ? h("a", { href: `#/${ctx.env}/pipelines/${s.last_pipeline_id}`, text: s.last_outcome || "running" }) : "—"),
      h("td", { class: s.healthy ? "ok" : "error", text: s.healthy ? `healthy: ${s.reason}` : `unhealthy: ${s.reason}` }),
      h("td", {}, (promoted.get(s.name) || []).map((l) =>
        h("a", { href: `#/${l.env}/${l.kind === "pipeline" ? "pipelines" : "jobs"}/${l.id}`, text: `${l.env} ` }))),
      h("td", {}, ctx.session.env.promotes_to && !s.builtin
        ? h("button", { type: "button", class: "promote", text: `Promote to ${ctx.session.env.promotes_to}…`,
          on: { click: () => promote(ctx, "schedule", s.name) } }) : null))));
  }

  const stop = onSnapshot(collection(ctx.db, "schedules"), (snap) => {
    for (const d of snap.docs) promoted.set(d.id, d.data().promoted_to || []);
    clearTimeout(timer);
    timer = setTimeout(refresh, 200); // several documents change at one tick: one fetch
  }, (err) => { problem.textContent = `Cannot watch schedules: ${errorText(err)}`; problem.hidden = false; });
  const tick = setInterval(refresh, 30_000); // next-run times move on without any document changing
  refresh();
  return { stop: () => { stop(); clearTimeout(timer); clearInterval(tick); } };
}
