// The client against the local stack, with users signed in for real through the Auth emulator (Firebase
// JS SDK: connectAuthEmulator + signInWithEmailAndPassword) and jobs watched on the Firestore emulator.
// Run by tests/e2e/test_client_library.py, which starts the stack and passes its addresses:
//   JOBRELAY_TEST_API, JOBRELAY_TEST_AUTH (host:port), JOBRELAY_TEST_FIRESTORE (host:port),
//   JOBRELAY_TEST_PROJECT, JOBRELAY_TEST_ENV, JOBRELAY_TEST_PASSWORD, JOBRELAY_TEST_ALICE, JOBRELAY_TEST_BOB
//   (emails), JOBRELAY_TEST_PIPELINES ("1" when the API serves pipelines).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { deleteApp, initializeApp } from "firebase/app";
import { connectAuthEmulator, getAuth, signInWithEmailAndPassword, signOut } from "firebase/auth";
import { connectFirestoreEmulator, getFirestore, terminate } from "firebase/firestore";

import { JobrelayError, createClient } from "../dist/index.js";

const E = process.env;
for (const name of ["API", "AUTH", "FIRESTORE", "PROJECT", "ENV", "PASSWORD", "ALICE", "BOB"]) {
  if (!E[`JOBRELAY_TEST_${name}`]) {
    throw new Error(`JOBRELAY_TEST_${name} is not set: run these tests through tests/e2e/test_client_library.py`);
  }
}

const sessions = [];

// What an app does at start-up: its Firebase app, Auth and Firestore (on the emulators here), a sign-in.
async function signIn(email) {
  const app = initializeApp({ projectId: E.JOBRELAY_TEST_PROJECT, apiKey: "local-emulator" }, `app-${sessions.length}`);
  const auth = getAuth(app);
  connectAuthEmulator(auth, `http://${E.JOBRELAY_TEST_AUTH}`, { disableWarnings: true });
  const db = getFirestore(app);
  const [host, port] = E.JOBRELAY_TEST_FIRESTORE.split(":");
  connectFirestoreEmulator(db, host, Number(port));
  const cred = await signInWithEmailAndPassword(auth, email, E.JOBRELAY_TEST_PASSWORD);
  const jobrelay = createClient({ apiUrl: E.JOBRELAY_TEST_API, env: E.JOBRELAY_TEST_ENV, auth, firestore: db });
  const session = { app, auth, db, user: cred.user, jobrelay };
  sessions.push(session);
  return session;
}

let alice;
let bob;
before(async () => {
  alice = await signIn(E.JOBRELAY_TEST_ALICE);
  bob = await signIn(E.JOBRELAY_TEST_BOB);
  // One job through first, watched: the Firestore connection of this process is up before a test
  // counts on seeing a job's first state.
  const warm = await alice.jobrelay.submitJob({ type: "echo", payload: { message: "warm-up" } });
  await watchToEnd(alice.jobrelay, warm.id);
});
after(async () => {
  for (const s of sessions) {
    await terminate(s.db);
    await deleteApp(s.app);
  }
});

// Watch until the job is final; resolve with every update seen.
function watchToEnd(jobrelay, id, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    const updates = [];
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`job ${id} not final after ${timeoutMs} ms: ${JSON.stringify(updates.map((u) => u.status))}`));
    }, timeoutMs);
    const stop = jobrelay.watchJob(
      id,
      (u) => {
        updates.push(u);
        if (u.final) {
          clearTimeout(timer);
          stop();
          resolve(updates);
        }
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

test("the signed-in user's token is the emulator's, for the env's project", () => {
  assert.equal(alice.user.email, E.JOBRELAY_TEST_ALICE);
  assert.equal(alice.auth.app.options.projectId, E.JOBRELAY_TEST_PROJECT);
});

test("submit, watch queued -> running -> succeeded with progress, then read and list it", async () => {
  const { jobrelay } = alice;
  // A delay keeps the job queued until the listener is attached, so its first snapshot is the queued job.
  const job = await jobrelay.submitJob({ type: "sleep", payload: { seconds: 2 }, delay_seconds: 3, labels: { by: "node" } });
  assert.equal(job.status, "queued");
  assert.equal(job.owner, alice.user.uid);
  const updates = await watchToEnd(jobrelay, job.id);
  const statuses = updates.map((u) => u.status).filter((s, i, all) => s !== all[i - 1]);
  assert.deepEqual(statuses, ["queued", "running", "succeeded"]);
  assert.ok(updates.some((u) => u.status === "running" && u.progress && u.progress.done < u.progress.total), "a partial progress update");
  const last = updates.at(-1);
  assert.deepEqual(last.result, { slept: 2 });
  assert.equal(last.error, null);
  assert.equal(last.final, true);

  const read = await jobrelay.getJob(job.id);
  assert.equal(read.status, "succeeded");
  assert.deepEqual(read.progress, { done: 2, total: 2, message: "slept 2s of 2s" });
  const listed = await jobrelay.listJobs({ status: "succeeded", pageSize: 50 });
  assert.ok(listed.jobs.some((j) => j.id === job.id));
});

test("cancel a waiting job: the answer and the watch both say cancelled", async () => {
  const { jobrelay } = alice;
  const job = await jobrelay.submitJob({ type: "echo", payload: { message: "never" }, delay_seconds: 120 });
  const watching = watchToEnd(jobrelay, job.id);
  const cancelled = await jobrelay.cancelJob(job.id);
  assert.equal(cancelled.status, "cancelled");
  const updates = await watching;
  assert.equal(updates.at(-1).status, "cancelled");
});

test("a job that fails for good shows its typed error", async () => {
  const { jobrelay } = alice;
  const job = await jobrelay.submitJob({ type: "flaky", payload: { fatal: true, message: "disk on fire" } });
  const last = (await watchToEnd(jobrelay, job.id)).at(-1);
  assert.equal(last.status, "dead_lettered");
  assert.equal(last.error.type, "Fatal");
  assert.match(last.error.message, /disk on fire/);
});

test("the API's refusals arrive as JobrelayError with code, message and details", async () => {
  const err = await alice.jobrelay.submitJob({ type: "nope", payload: {} }).catch((e) => e);
  assert.ok(err instanceof JobrelayError, String(err));
  assert.equal(err.status, 422);
  assert.equal(err.code, "invalid");
  assert.match(err.message, /unknown job type 'nope'/);
  assert.ok(Array.isArray(err.details) && err.details[0].field === "type", JSON.stringify(err.details));
});

test("another user's job: the API refuses it and the watch is denied by the rules", async () => {
  const job = await alice.jobrelay.submitJob({ type: "echo", payload: { message: "alice only" } });
  const err = await bob.jobrelay.getJob(job.id).catch((e) => e);
  assert.equal(err.status, 404); // another user's job answers exactly as a missing one
  assert.equal(err.code, "not_found");
  const denied = await new Promise((resolve) => {
    const stop = bob.jobrelay.watchJob(
      job.id,
      () => resolve(new Error("bob saw alice's job")),
      (e) => {
        stop();
        resolve(e);
      },
    );
  });
  assert.ok(denied instanceof JobrelayError, String(denied));
  assert.equal(denied.code, "permission_denied");
});

test("signed out, a call fails with not_signed_in before reaching the API", async () => {
  const s = await signIn(E.JOBRELAY_TEST_BOB);
  await signOut(s.auth);
  const err = await s.jobrelay.listJobs().catch((e) => e);
  assert.equal(err.code, "not_signed_in");
});

// Issue 16's pipelines route: tested only where the API serves it (tests/e2e/test_client_library.py
// says whether); until then submitPipeline is tested against a scripted server (unit.test.mjs).
if (E.JOBRELAY_TEST_PIPELINES === "1") {
  test("submit a pipeline and read its steps", async () => {
    const p = await alice.jobrelay.submitPipeline({
      name: "node-diamond",
      steps: {
        a: { type: "echo", payload: { message: "a" } },
        b: { type: "echo", payload: { message: "b" }, after: ["a"] },
        c: { type: "echo", payload: { message: "c" }, after: ["a"] },
        d: { type: "echo", payload: { message: "d" }, after: ["b", "c"] },
      },
    });
    assert.equal(p.status, "running");
    assert.deepEqual(Object.keys(p.steps).sort(), ["a", "b", "c", "d"]);
  });
}
