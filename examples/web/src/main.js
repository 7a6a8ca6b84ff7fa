// jobrelay web client: submit a job over the HTTP API, then watch jobs/{id} live with onSnapshot.
//
// Configuration comes from the URL query (local stack, tests) or from config.json next to the page:
//   local:       {api, env, firebase: {projectId}, emulator: {firestore: "host:port", uid, token}}
//   production:  {api, env, firebase: {apiKey, authDomain, projectId, appId}}
// Locally there is no Auth emulator: the API takes the token the stack minted, and Firestore (the
// gcloud emulator) takes the same claims as a mock user token. In production the same code signs in
// with Firebase Auth and sends getIdToken(); the security rules see the real user either way.

import { initializeApp } from "firebase/app";
import { GoogleAuthProvider, getAuth, onAuthStateChanged, signInWithPopup, signOut } from "firebase/auth";
import { connectFirestoreEmulator, doc, getFirestore, onSnapshot } from "firebase/firestore";

const $ = (id) => document.getElementById(id);

async function loadConfig() {
  const q = new URLSearchParams(location.search);
  if (q.has("api")) {
    return {
      api: q.get("api"),
      env: q.get("env") || "dev",
      firebase: { projectId: q.get("project") },
      emulator: { firestore: q.get("firestore"), uid: q.get("uid"), token: q.get("token") },
    };
  }
  // The query goes along so that a local config server can sign in another user (?uid=bob).
  const resp = await fetch(`config.json${location.search}`, { cache: "no-store" });
  if (!resp.ok) {
    throw new Error(`no configuration: open the page with ?api=&project=&firestore=&uid=&token= ` +
      `or serve a config.json next to it (config.json: HTTP ${resp.status})`);
  }
  return resp.json();
}

function need(value, what) {
  if (!value) throw new Error(`configuration is missing ${what}`);
  return value;
}

// The claims of a JWT, without checking it: the emulator's tokens are unsigned, and the page only
// forwards them (the API and the rules decide).
function claimsOf(token) {
  const part = token.split(".")[1] || "";
  const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
  return JSON.parse(json);
}

// Local stack: the Firestore emulator sees the minted token's claims (uid, admin, roles) as the user.
function emulatorSession(db, em) {
  const uid = need(em.uid, "emulator.uid");
  const token = need(em.token, "emulator.token");
  const claims = claimsOf(token);
  if (claims.sub !== uid) throw new Error(`the token is for "${claims.sub}", not for uid "${uid}"`);
  const hostPort = need(em.firestore, "emulator.firestore (host:port)");
  const cut = hostPort.lastIndexOf(":");
  connectFirestoreEmulator(db, hostPort.slice(0, cut), Number(hostPort.slice(cut + 1)),
    { mockUserToken: { ...claims, user_id: uid } });
  return Promise.resolve({ uid, label: `${uid} (local emulator)`, getToken: async () => token });
}

// Production: Firebase Auth. Resolves once a user is signed in; the ID token is refreshed by the SDK.
function firebaseAuthSession(app) {
  const auth = getAuth(app);
  $("sign-in").onclick = () => signInWithPopup(auth, new GoogleAuthProvider()).catch(showFatal);
  $("sign-out").onclick = () => signOut(auth).then(() => location.reload());
  return new Promise((resolve) => {
    onAuthStateChanged(auth, (user) => {
      $("sign-in").hidden = Boolean(user);
      $("sign-out").hidden = !user;
      if (!user) {
        setAppState("signed-out", "Sign in to submit and watch jobs.");
        return;
      }
      resolve({ uid: user.uid, label: user.email || user.uid, getToken: () => user.getIdToken() });
    });
  });
}

function setAppState(state, text) {
  const el = $("app-state");
  el.dataset.state = state;
  el.textContent = text;
}

function showFatal(err) {
  setAppState("error", `Error: ${err.message || err}`);
  $("app-state").classList.add("error");
}

function showAlert(el, text, code = "") {
  el.textContent = text;
  el.dataset.code = code;
  el.hidden = !text;
}

// -- watching one job -------------------------------------------------------------------------

let stopWatching = null;
let lastStatus = null;

function watch(db, id) {
  if (stopWatching) stopWatching();
  lastStatus = null;
  $("job").hidden = false;
  $("job-id").textContent = id;
  for (const listId of ["statuses", "updates"]) $(listId).replaceChildren();
  for (const elId of ["job-result", "job-error"]) $(elId).hidden = true;
  showAlert($("watch-error"), "");
  renderStatus("");
  renderProgress(null);
  stopWatching = onSnapshot(doc(db, "jobs", id), (snap) => render(snap), (err) => {
    const text = err.code === "permission-denied"
      ? `Permission denied: you may not read job ${id} (only its owner or an admin can).`
      : `Cannot watch job ${id}: ${err.code || ""} ${err.message}`;
    showAlert($("watch-error"), text, err.code || "error");
    renderStatus("");
    renderProgress(null, "");
  });
}

function render(snap) {
  if (!snap.exists()) {
    showAlert($("watch-error"), `Job ${snap.id} does not exist.`, "not-found");
    renderProgress(null, "");
    return;
  }
  const job = snap.data();
  renderStatus(job.status);
  renderProgress(job.progress, job.status);
  if (job.status !== lastStatus) {
    lastStatus = job.status;
    const li = document.createElement("li");
    li.dataset.status = job.status;
    li.textContent = job.status;
    $("statuses").append(li);
  }
  const update = document.createElement("li");
  const p = job.progress || {};
  Object.assign(update.dataset, { status: job.status, done: p.done ?? "", total: p.total ?? "" });
  update.textContent = `${new Date().toISOString().slice(11, 23)} ${job.status}` +
    (job.progress ? ` ${p.done}/${p.total} ${p.message || ""}` : "");
  $("updates").append(update);

  $("job-result").hidden = job.result == null;
  $("job-result-json").textContent = job.result == null ? "" : JSON.stringify(job.result, null, 2);
  $("job-error").hidden = !job.error;
  $("job-error-text").textContent = job.error ? `${job.error.type}: ${job.error.message}` : "";
}

function renderStatus(status) {
  $("job-status").dataset.status = status;
  $("job-status").textContent = status || "—";
}

const WAITING = new Set(["queued", "running", "retrying"]);

// A bar with a total shows it; a job still waiting or running without one gets the moving
// (indeterminate) bar; a finished job, or one the page may not read, gets a still bar (full when it
// succeeded), so nothing moves once there is nothing left to wait for.
function renderProgress(progress, status) {
  const bar = $("job-progress");
  if (progress && progress.total > 0) {
    bar.max = progress.total;
    bar.value = progress.done;
    $("job-progress-text").textContent = `${progress.done} / ${progress.total}`;
  } else if (WAITING.has(status) || status === undefined) {
    bar.removeAttribute("value"); // indeterminate: waiting for the first snapshot, or for the job
    $("job-progress-text").textContent = "";
  } else {
    bar.max = 1;
    bar.value = status === "succeeded" ? 1 : 0;
    $("job-progress-text").textContent = "";
  }
  $("job-message").textContent = (progress && progress.message) || "";
}

// -- submitting -------------------------------------------------------------------------------

async function submit(cfg, session) {
  const error = $("submit-error");
  showAlert(error, "");
  let payload;
  try {
    payload = JSON.parse($("job-payload").value || "{}");
  } catch (err) {
    showAlert(error, `The payload is not valid JSON: ${err.message}`, "bad-payload");
    return null;
  }
  const spec = { type: $("job-type").value.trim(), payload };
  const delay = $("job-delay").value.trim();
  if (delay) spec.delay_seconds = Number(delay);
  const url = `${cfg.api}/v1/envs/${encodeURIComponent(cfg.env)}/jobs`;
  let resp;
  try {
    resp = await fetch(url, {
      method: "POST",
      headers: { Authorization: `Bearer ${await session.getToken()}`, "Content-Type": "application/json" },
      body: JSON.stringify(spec),
    });
  } catch (err) {
    showAlert(error, `Cannot reach the API at ${cfg.api} (${err.message}); if it is up, is this page's ` +
      `origin ${location.origin} in the env's app_origins?`, "network");
    return null;
  }
  const body = await resp.json().catch(() => null);
  if (!resp.ok) {
    const e = (body && body.error) || {};
    showAlert(error, `HTTP ${resp.status} ${e.code || ""}: ${e.message || resp.statusText}`, e.code || "http");
    return null;
  }
  return body.id;
}

// -- start ------------------------------------------------------------------------------------

async function main() {
  const cfg = await loadConfig();
  need(cfg.api, "api (the jobrelay API's URL)");
  cfg.env = cfg.env || "dev";
  const firebase = need(cfg.firebase, "firebase (at least projectId)");
  need(firebase.projectId, "firebase.projectId");
  const app = initializeApp(firebase);
  const db = getFirestore(app);
  const session = await (cfg.emulator ? emulatorSession(db, cfg.emulator) : firebaseAuthSession(app));

  $("submit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("submit-button").disabled = true;
    try {
      const id = await submit(cfg, session);
      if (id) {
        $("watch-id").value = id;
        watch(db, id);
      }
    } finally {
      $("submit-button").disabled = false;
    }
  });
  $("watch-form").addEventListener("submit", (event) => {
    event.preventDefault();
    watch(db, $("watch-id").value.trim());
  });
  $("submit-button").disabled = false;
  $("watch-button").disabled = false;
  setAppState("ready", `Signed in as ${session.label} · env ${cfg.env} · project ${firebase.projectId}`);
}

main().catch(showFatal);
