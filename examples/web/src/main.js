// jobrelay web client: sign in with Firebase Auth, submit a job and watch it live, through @jobrelay/client.
//
// Configuration comes from the URL query (local stack, tests) or from config.json next to the page:
//   local:       {api, env, firebase: {projectId, apiKey}, emulator: {auth: "host:port", firestore: "host:port"}, email?}
//   production:  {api, env, firebase: {apiKey, authDomain, projectId, appId}}
// Locally the page signs in with email and password against the stack's Auth emulator
// (connectAuthEmulator) and reads the Firestore emulator; in production "Sign in with Google". Either
// way the library sends the signed-in user's ID token to the API and the rules see the same user.

import { createClient } from "@jobrelay/client";
import { initializeApp } from "firebase/app";
import {
  GoogleAuthProvider,
  connectAuthEmulator,
  getAuth,
  onAuthStateChanged,
  signInWithEmailAndPassword,
  signInWithPopup,
  signOut,
} from "firebase/auth";
import { connectFirestoreEmulator, getFirestore } from "firebase/firestore";

const $ = (id) => document.getElementById(id);

async function loadConfig() {
  const q = new URLSearchParams(location.search);
  if (q.has("api")) {
    return {
      api: q.get("api"),
      env: q.get("env") || "dev",
      firebase: { projectId: q.get("project"), apiKey: "local-emulator" },
      emulator: { auth: q.get("auth"), firestore: q.get("firestore") },
      email: q.get("email") || "",
    };
  }
  // The query goes along so that a local config server can prefill another user (?uid=bob).
  const resp = await fetch(`config.json${location.search}`, { cache: "no-store" });
  if (!resp.ok) {
    throw new Error(`no configuration: open the page with ?api=&project=&auth=&firestore= ` +
      `or serve a config.json next to it (config.json: HTTP ${resp.status})`);
  }
  return resp.json();
}

function need(value, what) {
  if (!value) throw new Error(`configuration is missing ${what}`);
  return value;
}

function hostPort(value, what) {
  const hp = need(value, what);
  const cut = hp.lastIndexOf(":");
  return [hp.slice(0, cut), Number(hp.slice(cut + 1))];
}

// Resolves once a user is signed in: email and password on the local Auth emulator, Google in the cloud.
function signIn(auth, cfg) {
  if (cfg.emulator) {
    const form = $("email-sign-in");
    form.hidden = false;
    $("email").value = cfg.email || "";
    form.onsubmit = (event) => {
      event.preventDefault();
      showAlert($("sign-in-error"), "");
      signInWithEmailAndPassword(auth, $("email").value.trim(), $("password").value).catch((err) =>
        showAlert($("sign-in-error"), `Sign-in failed: ${err.code || err.message}`, err.code || "error"));
    };
  } else {
    $("sign-in").onclick = () => signInWithPopup(auth, new GoogleAuthProvider()).catch(showFatal);
  }
  $("sign-out").onclick = () => signOut(auth).then(() => location.reload());
  return new Promise((resolve) => {
    onAuthStateChanged(auth, (user) => {
      $("sign-in").hidden = Boolean(user) || Boolean(cfg.emulator);
      $("email-sign-in").hidden = Boolean(user) || !cfg.emulator;
      $("sign-out").hidden = !user;
      if (!user) {
        setAppState("signed-out", "Sign in to submit and watch jobs.");
        return;
      }
      resolve(user);
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

function watch(jobrelay, id) {
  if (stopWatching) stopWatching();
  lastStatus = null;
  $("job").hidden = false;
  $("job-id").textContent = id;
  for (const listId of ["statuses", "updates"]) $(listId).replaceChildren();
  for (const elId of ["job-result", "job-error"]) $(elId).hidden = true;
  showAlert($("watch-error"), "");
  renderStatus("");
  renderProgress(null);
  stopWatching = jobrelay.watchJob(id, render, (err) => {
    const denied = err.code === "permission_denied";
    const text = denied
      ? `Permission denied: you may not read job ${id} (only its owner or an admin can).`
      : `Cannot watch job ${id}: ${err.code || ""} ${err.message}`;
    showAlert($("watch-error"), text, denied ? "permission-denied" : err.code || "error");
    renderStatus("");
    renderProgress(null, "");
  });
}

// One update of the job from watchJob: typed status, progress, result and error.
function render(job) {
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

async function submit(cfg, jobrelay) {
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
  try {
    return (await jobrelay.submitJob(spec)).id;
  } catch (err) {
    if (err.code === "unreachable") {
      showAlert(error, `Cannot reach the API at ${cfg.api} (${err.message}); if it is up, is this page's ` +
        `origin ${location.origin} in the env's app_origins?`, "network");
    } else {
      showAlert(error, `HTTP ${err.status} ${err.code}: ${err.message}`, err.code || "http");
    }
    return null;
  }
}

// -- start ------------------------------------------------------------------------------------

async function main() {
  const cfg = await loadConfig();
  need(cfg.api, "api (the jobrelay API's URL)");
  cfg.env = cfg.env || "dev";
  const firebase = need(cfg.firebase, "firebase (at least projectId)");
  need(firebase.projectId, "firebase.projectId");
  const app = initializeApp(firebase);
  const auth = getAuth(app);
  const db = getFirestore(app);
  if (cfg.emulator) {
    connectAuthEmulator(auth, `http://${need(cfg.emulator.auth, "emulator.auth (host:port)")}`, { disableWarnings: true });
    connectFirestoreEmulator(db, ...hostPort(cfg.emulator.firestore, "emulator.firestore (host:port)"));
  }
  const jobrelay = createClient({ apiUrl: cfg.api, env: cfg.env, auth, firestore: db });
  const user = await signIn(auth, cfg);

  $("submit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("submit-button").disabled = true;
    try {
      const id = await submit(cfg, jobrelay);
      if (id) {
        $("watch-id").value = id;
        watch(jobrelay, id);
      }
    } finally {
      $("submit-button").disabled = false;
    }
  });
  $("watch-form").addEventListener("submit", (event) => {
    event.preventDefault();
    watch(jobrelay, $("watch-id").value.trim());
  });
  $("submit-button").disabled = false;
  $("watch-button").disabled = false;
  const where = cfg.emulator ? " (local Auth emulator)" : "";
  setAppState("ready", `Signed in as ${user.email || user.uid}${where} · env ${cfg.env} · project ${firebase.projectId}`);
}

main().catch(showFatal);
