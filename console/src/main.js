// The jobrelay operator console: sign in, check the admin claim, then one page at a time under a hash
// route (#/{env}/{page}/{id}?filters), each page live while it is shown and stopped when left.

import { envOf, loadConfig } from "./config.js";
import { formDialog } from "./dialog.js";
import { $, errorText, h, notice } from "./dom.js";
import { bindKeys } from "./keys.js";
import * as deadLetters from "./pages/deadletters.js";
import * as job from "./pages/job.js";
import * as jobs from "./pages/jobs.js";
import * as pipelines from "./pages/pipelines.js";
import * as pool from "./pages/pool.js";
import * as queues from "./pages/queues.js";
import * as schedules from "./pages/schedules.js";
import { EnvSession } from "./session.js";

export const PAGES = {
  jobs: { module: jobs, key: "j", item: job },
  "dead-letters": { module: deadLetters, key: "d" },
  schedules: { module: schedules, key: "s" },
  queues: { module: queues, key: "q" },
  pipelines: { module: pipelines, key: "p", item: pipelines },
  pool: { module: pool, key: "m" },
};

const sessions = new Map();
let cfg = null;
let current = null; // {stop, keys}

function setState(state, text) {
  const el = $("app-state");
  el.dataset.state = state;
  el.textContent = text;
}

function route() {
  const [path, qs] = location.hash.replace(/^#\/?/, "").split("?");
  const [env, page, ...rest] = path.split("/").map(decodeURIComponent);
  return { env, page, id: rest.join("/") || null, params: new URLSearchParams(qs || "") };
}

function go(env, page, params) {
  const qs = params && params.toString();
  location.hash = `#/${env}/${page}${qs ? `?${qs}` : ""}`;
}

function session(name) {
  if (!sessions.has(name)) sessions.set(name, new EnvSession(cfg, envOf(cfg, name)));
  return sessions.get(name);
}

/** The operator's session in env `name`, signing in through a dialog when needed; null if not an operator. */
async function signInTo(name) {
  const s = session(name);
  if (!s.user) await s.restore();
  while (!s.user) {
    if (s.method === "google") {
      try { await s.signInWithGoogle(); } catch (err) { notice(`Sign-in to ${name} failed: ${errorText(err)}`, "error"); return null; }
      break;
    }
    const form = await formDialog({ title: `Sign in to ${name}`, id: "env-sign-in", confirm: "Sign in",
      note: `Env ${name} is project ${s.env.project}: sign in to it as an operator.`,
      fields: [{ name: "email", label: "Email", type: "email", value: sessions.get(route().env)?.user?.email, autocomplete: "username" },
        { name: "password", label: "Password", type: "password", autocomplete: "current-password" }] });
    if (!form) return null;
    try { await s.signInWithPassword(form.email, form.password); } catch (err) { notice(errorText(err), "error"); }
  }
  if (!s.isOperator) {
    notice(`${s.user.email} is not an operator of ${name} (no admin claim there).`, "error");
    return null;
  }
  return s;
}

function signInForm(s) {
  const box = $("sign-in");
  box.hidden = false;
  $("sign-in-env").textContent = `${s.name} (${s.env.project})`;
  $("email-sign-in").hidden = s.method !== "password";
  $("google-sign-in").hidden = s.method !== "google";
  $("google-sign-in").onclick = () => s.signInWithGoogle().then(render, (err) => showSignInError(err));
  $("email-sign-in").onsubmit = (event) => {
    event.preventDefault();
    showSignInError(null);
    s.signInWithPassword($("email").value.trim(), $("password").value).then(render, showSignInError);
  };
  setState("signed-out", `Sign in to ${s.name} to use the console.`);
}

function showSignInError(err) {
  const el = $("sign-in-error");
  el.textContent = err ? `Sign-in failed: ${err.code || err.message}` : "";
  el.hidden = !err;
}

function refuse(s) {
  const el = $("refused");
  el.hidden = false;
  el.replaceChildren(
    h("h1", { text: "Not an operator" }),
    h("p", { text: `You are signed in to ${s.name} as ${s.user.email}, who does not hold the admin claim there. ` +
      "The console is for operators: ask one to run" }),
    h("pre", { text: `jobrelay --env ${s.name} --admin access grant ${s.user.email} --env ${s.name} --admin` }),
    h("p", { text: "then sign out and in again (the claim arrives with a new ID token)." }));
  setState("refused", `Refused: ${s.user.email} is not an operator of ${s.name}.`);
}

async function render() {
  if (current) current.stop();
  current = null;
  notice(""); // what the last page said is about the last page
  $("promoted-link").hidden = true;
  const r = route();
  const served = cfg.envs.filter((e) => e.served);
  if (!envOf(cfg, r.env)?.served || !PAGES[r.page]) {
    const env = envOf(cfg, r.env)?.served ? r.env : served[0].name;
    return go(env, "jobs");
  }
  const s = session(r.env);
  for (const id of ["sign-in", "refused"]) $(id).hidden = true;
  $("nav").hidden = true;
  $("main").replaceChildren();
  if (!s.user) await s.restore();
  $("sign-out").hidden = !s.user;
  $("who").textContent = s.user ? s.user.email : "";
  if (!s.user) return signInForm(s);
  if (!s.isOperator) return refuse(s);
  $("nav").hidden = false;
  $("env").value = r.env;
  for (const a of $("nav").querySelectorAll("a")) {
    a.href = `#/${r.env}/${a.dataset.page}`;
    if (a.dataset.page === r.page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const page = PAGES[r.page];
  const module = r.id && page.item ? page.item : page.module;
  const ctx = {
    cfg, sessions, session: s, env: r.env, db: s.db,
    go: (p, params) => go(r.env, p, params), signInTo, refresh: render,
  };
  document.title = `${module.title} · ${r.env} · jobrelay`;
  const el = $("main");
  current = module.mount(ctx, el, r.params, r.id) || null;
  setState("ready", `Signed in to ${r.env} as ${s.user.email}${cfg.emulator ? " (local Auth emulator)" : ""}`);
}

function nav() {
  $("nav").replaceChildren(...Object.entries(PAGES).map(([name, p]) =>
    h("a", { data: { page: name }, href: "#", "aria-keyshortcuts": `g ${p.key}`, text: p.module.title })));
  const select = $("env");
  select.replaceChildren(...cfg.envs.filter((e) => e.served).map((e) => h("option", { value: e.name, text: e.name })));
  select.onchange = () => go(select.value, route().page || "jobs");
  // Envs served by other deployments (the cloud: one env each) open their own console.
  $("other-envs").replaceChildren(...cfg.envs.filter((e) => !e.served).map((e) =>
    h("a", { href: e.console, text: e.name })));
  $("sign-out").onclick = async () => {
    await session(route().env).signOut();
    render();
  };
}

async function main() {
  cfg = await loadConfig();
  nav();
  bindKeys({
    go: (page) => go(route().env, page),
    pages: Object.fromEntries(Object.entries(PAGES).map(([name, p]) => [p.key, name])),
    page: () => current?.keys,
  });
  window.addEventListener("hashchange", render);
  await render();
}

main().catch((err) => {
  setState("error", `Error: ${err.message || err}`);
  console.error(err);
});
