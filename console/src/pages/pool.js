// The Elastic Muscle pool: each env's running pool jobs (route muscle, status running) against the
// env's muscle_concurrency cap, live from each env's own Firestore, as far as the operator is signed
// in to that env (each env is its own project; nothing here crosses envs on the server).

import { collection, onSnapshot, query, where } from "firebase/firestore";

import { ago, errorText, h } from "../dom.js";

export const title = "Elastic Muscle pool";

export function mount(ctx, el) {
  const cards = h("div", { id: "pool-envs", class: "cards" });
  el.append(h("h1", { text: "Elastic Muscle pool" }),
    h("p", { text: `One pool for every env: prod first, then stg, then dev; ${ctx.cfg.muscle.total_slots} slots per VM, each env held to its own cap.` }),
    cards);
  const stops = [];
  for (const env of [...ctx.cfg.envs].reverse()) { // prod, stg, dev: the pool's priority
    const card = h("section", { class: "card pool-env", data: { env: env.name } }, h("h2", { text: env.name }));
    cards.append(card);
    const session = ctx.sessions.get(env.name);
    if (!env.served) {
      card.append(h("p", {}, "Served by its own deployment: ", h("a", { href: env.console, text: `open ${env.name}'s console` })));
      continue;
    }
    if (!session || !session.user || !session.isOperator) {
      card.append(h("button", { type: "button", class: "sign-in-env", text: `Sign in to ${env.name}…`,
        on: { click: async () => { if (await ctx.signInTo(env.name)) ctx.refresh(); } } }));
      continue;
    }
    const body = h("div", {});
    card.append(body);
    const q = query(collection(session.db, "jobs"), where("route", "==", "muscle"), where("status", "==", "running"));
    stops.push(onSnapshot(q, (snap) => {
      const cap = env.muscle_concurrency;
      card.dataset.running = String(snap.size);
      body.replaceChildren(
        h("p", { class: "meter" }, h("meter", { min: 0, max: cap || 1, value: snap.size, high: cap, optimum: 0 }),
          ` ${snap.size} running of ${cap}`),
        snap.size ? h("ul", {}, snap.docs.map((d) => {
          const j = d.data();
          return h("li", {}, h("a", { href: `#/${env.name}/jobs/${d.id}`, class: "mono", text: d.id }),
            ` ${j.type} · started ${ago(j.started_at)} · ${j.worker_id || ""}`);
        })) : h("p", { class: "dim", text: "Nothing running." }));
    }, (err) => body.replaceChildren(h("p", { class: "error", text: errorText(err) }))));
  }
  return { stop: () => stops.forEach((s) => s()) };
}
