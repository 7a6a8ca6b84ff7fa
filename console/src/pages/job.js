// One job, live (@jobrelay/client's watchJob: onSnapshot on jobs/{id}): its attempts with their errors
// and stacks, progress, log tail and result, links to its logs and trace in the env's Cloud project,
// where it was promoted from and to; cancel, and promote to the next env.

import { FINAL_STATUSES } from "@jobrelay/client";

import { ago, errorText, h, notice, span, status, toDate, utc } from "../dom.js";
import { promote } from "../promote.js";

export const title = "Job";

export function logsUrl(project, jobId) {
  const q = encodeURIComponent(`labels.job_id="${jobId}"`);
  return `https://console.cloud.google.com/logs/query;query=${q}?project=${encodeURIComponent(project)}`;
}

export function traceUrl(project, traceId) {
  return `https://console.cloud.google.com/traces/list?tid=${encodeURIComponent(traceId)}&project=${encodeURIComponent(project)}`;
}

export function mount(ctx, el, params, id) {
  const head = h("h1", {}, "Job ", h("code", { id: "job-id", text: id }));
  const body = h("div", { id: "job-view", "aria-live": "polite" }, h("p", { text: "Loading…" }));
  const statuses = h("ol", { id: "job-statuses", class: "inline" });
  el.append(head, body, h("h2", { text: "Statuses seen here" }), statuses);
  let last = null;

  const stop = ctx.session.client.watchJob(id, (u) => {
    if (u.status !== last) {
      last = u.status;
      statuses.append(h("li", { data: { status: u.status }, text: u.status }));
    }
    render(u.data, u.final);
  }, (err) => body.replaceChildren(h("p", { class: "error", role: "alert", id: "job-error", text: errorText(err) })));

  function render(j, final) {
    const project = ctx.session.env.project;
    const p = j.progress;
    const started = toDate(j.started_at);
    const finished = toDate(j.finished_at);
    const actions = h("div", { class: "actions" });
    if (!final) {
      actions.append(h("button", { type: "button", id: "job-cancel", text: j.cancel_requested ? "Cancel requested" : "Cancel",
        disabled: j.cancel_requested, on: { click: () => cancel() } }));
    }
    if (ctx.session.env.promotes_to) {
      actions.append(h("button", { type: "button", id: "job-promote", text: `Promote to ${ctx.session.env.promotes_to}…`,
        on: { click: () => promote(ctx, "job", id) } }));
    }
    body.replaceChildren(...[
      h("dl", { class: "facts" },
        fact("Status", status(j.status), "job-status"),
        fact("Type", j.type), fact("Class", `${j.class} (${j.route || "tasks"})`), fact("Owner", j.owner),
        fact("Attempt", `${j.attempt ?? 0} of ${j.max_attempts ?? "?"}`),
        fact("Created", utc(j.created_at)), fact("Started", utc(j.started_at)), fact("Finished", utc(j.finished_at)),
        fact("Run time", j.duration_seconds != null ? span(j.duration_seconds)
          : started && !finished ? `${span((Date.now() - started.getTime()) / 1000)} so far` : "—"),
        fact("Labels", Object.entries(j.labels || {}).map(([k, v]) => `${k}=${v}`).join(" ") || "—"),
        j.pipeline_id ? fact("Pipeline", h("a", { id: "job-pipeline", href: `#/${ctx.env}/pipelines/${j.pipeline_id}` },
          `step ${j.step} of ${j.pipeline_id}`)) : null,
        j.parent_id ? fact("Spawned by", h("a", { href: `#/${ctx.env}/jobs/${j.parent_id}`, text: `${j.parent_id} (child ${j.child_index ?? "?"})` })) : null,
        j.worker_id ? fact("Worker", j.worker_id) : null,
        j.skip_reason ? fact("Skipped", j.skip_reason) : null),
      h("p", {}, h("label", {}, "Progress ",
        h("progress", { id: "job-progress", max: p && p.total ? p.total : 1, value: p && p.total ? p.done : final && j.status === "succeeded" ? 1 : 0 })),
        " ", h("span", { id: "job-progress-text", text: p ? `${p.done ?? 0}/${p.total ?? "?"} ${p.message || ""}` : "" })),
      actions,
      h("p", { class: "links" },
        h("a", { href: logsUrl(project, j.id || id), target: "_blank", rel: "noopener", id: "job-logs", text: "Logs in Cloud Logging" }),
        j.trace_id ? h("a", { href: traceUrl(project, j.trace_id), target: "_blank", rel: "noopener", id: "job-trace", text: "Trace in Cloud Trace" }) : null,
        j.status === "dead_lettered" ? h("a", { href: `#/${ctx.env}/dead-letters`, text: "Dead letters" }) : null),
      promotions(j),
      h("h2", { text: "Attempts" }), timeline(j),
      h("h2", { text: "Log tail" }),
      h("pre", { id: "job-log", class: "log", text: (j.log_tail || []).join("\n") || "(empty)" }),
      h("h2", { text: "Result" }),
      h("pre", { id: "job-result", text: j.result != null ? JSON.stringify(j.result, null, 2) : j.result_ref ? `stored in ${j.result_ref}` : "—" }),
      h("h2", { text: "Payload" }), h("pre", { text: JSON.stringify(j.payload ?? {}, null, 2) }),
    ].filter(Boolean));
  }

  function promotions(j) {
    const from = j.promoted_from;
    const to = j.promoted_to || [];
    if (!from && !to.length) return null;
    const link = (l) => h("a", { href: `#/${l.env}/jobs/${l.id}`, text: `${l.env} ${l.id}` });
    return h("div", { id: "job-promotions", class: "promotions" },
      from ? h("p", { id: "job-promoted-from" }, "Promoted from ", from.kind === "job" ? link(from)
        : `${from.env} ${from.kind} ${from.id}`, ` by ${from.by || "?"}, ${ago(from.at)}`) : null,
      to.length ? h("p", { id: "job-promoted-to" }, "Promoted to ", to.map((l, i) => [i ? ", " : "", link(l)])) : null);
  }

  async function cancel() {
    try {
      await ctx.session.client.cancelJob(id);
      notice(`Cancel of ${id} sent.`);
    } catch (err) {
      notice(`Cancel refused: ${errorText(err)}`, "error");
    }
  }

  return { stop };
}

function fact(label, value, id) {
  return [h("dt", { text: label }), h("dd", { id }, value)];
}

function timeline(j) {
  const errors = j.errors || [];
  const items = errors.map((e) => h("li", { class: "attempt", data: { attempt: e.attempt ?? "" } },
    h("strong", { text: `Attempt ${e.attempt ?? "?"}` }), ` ${utc(e.at)} `,
    h("span", { class: e.retryable ? "warn" : "error", text: `${e.type}: ${e.message}` }),
    ` ${e.retryable ? "(retryable)" : "(final)"} `, h("code", { text: e.fingerprint || "" }),
    e.stack ? h("details", {}, h("summary", { text: "stack" }), h("pre", { class: "stack", text: e.stack })) : null));
  if (j.status === "running" || FINAL_STATUSES.has(j.status)) {
    items.push(h("li", { class: "attempt", data: { attempt: j.attempt ?? "" } }, h("strong", { text: `Attempt ${j.attempt ?? "?"}` }),
      ` ${utc(j.attempt_started_at || j.started_at)} `, status(j.status)));
  }
  return items.length ? h("ol", { id: "job-timeline", class: "timeline" }, items) : h("p", { id: "job-timeline", text: "Not run yet." });
}
