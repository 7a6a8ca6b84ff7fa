// Promotion from the console (docs/adr/0019): the operator, signed in to both envs, reads the spec from
// this env's API, has the next env's API run it (as them, there), then records the link back here.
// A job's (or a job schedule's) spec becomes a job there; a pipeline's (or a pipeline schedule's) a pipeline.

import { confirmDialog } from "./dialog.js";
import { errorText, h, notice } from "./dom.js";

export async function promote(ctx, kind, id) {
  const from = ctx.session;
  const to = from.env.promotes_to;
  if (!to) return notice(`${from.name} is the last env: there is nothing to promote to.`, "error");
  try {
    const source = await from.api.promotionSource(kind, id, to);
    const what = source.spec.steps ? `pipeline of ${Object.keys(source.spec.steps).length} steps` : "job";
    const ok = await confirmDialog({
      title: `Promote ${kind} ${id} from ${from.name} to ${to}?`,
      id: "promote-dialog",
      body: [
        h("p", { text: `A new ${what} runs in ${to} with this spec, as you (you sign in to ${to} next if you are not yet).` }),
        h("pre", { id: "promote-spec", text: JSON.stringify(source.spec, null, 2) }),
        source.promoted_to.length
          ? h("p", { text: `Promoted before: ${source.promoted_to.map((l) => `${l.env} ${l.id}`).join(", ")}` }) : null,
      ],
      confirm: `Promote to ${to}`,
    });
    if (!ok) return;
    const target = await ctx.signInTo(to);
    if (!target) return notice(`Promotion stopped: not signed in to ${to} as an operator.`, "error");
    const made = await target.api.promote({ from: source.from, spec: source.spec });
    await from.api.recordPromotion(kind, id, { env: to, id: made.id });
    const madeKind = made.steps ? "pipeline" : "job";
    notice(`Promoted to ${to}: ${madeKind} ${made.id}.`);
    const link = document.getElementById("promoted-link");
    link.href = `#/${to}/${madeKind === "pipeline" ? "pipelines" : "jobs"}/${made.id}`;
    link.textContent = `Open ${to} ${madeKind} ${made.id}`;
    link.hidden = false;
  } catch (err) {
    notice(`Promotion refused: ${errorText(err)}`, "error");
  }
}
