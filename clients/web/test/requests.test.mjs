// Job requests from an app's own transactions (Firebase JS SDK, signed in through the Auth emulator),
// against the local stack. Run by tests/e2e/test_job_requests_node.py, which kills the API while the
// transactions commit and then checks, with the admin SDK, that exactly the committed requests became
// jobs. It passes: JOBRELAY_TEST_API, _AUTH, _FIRESTORE, _PROJECT, _ENV, _PASSWORD, _BUYER, _OTHER,
// _WATCHER (emails), _COUNT (transactions), _MARK (a file to create once a third have committed, the
// cue to kill the API), _RESULT (where to write the request ids, for the Python side's checks).
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { after, before, test } from "node:test";

import { deleteApp, initializeApp } from "firebase/app";
import { connectAuthEmulator, getAuth, signInWithEmailAndPassword } from "firebase/auth";
import {
  collection,
  connectFirestoreEmulator,
  deleteDoc,
  doc,
  getDoc,
  getFirestore,
  runTransaction,
  terminate,
  updateDoc,
  writeBatch,
} from "firebase/firestore";

import { JobrelayError, createClient } from "../dist/index.js";

const E = process.env;
for (const name of ["API", "AUTH", "FIRESTORE", "PROJECT", "ENV", "PASSWORD", "BUYER", "OTHER", "WATCHER", "COUNT", "MARK", "RESULT"]) {
  if (!E[`JOBRELAY_TEST_${name}`]) {
    throw new Error(`JOBRELAY_TEST_${name} is not set: run these tests through tests/e2e/test_job_requests_node.py`);
  }
}
const COUNT = Number(E.JOBRELAY_TEST_COUNT);
const CONCURRENCY = 50;
const sessions = [];
const result = { committed: [], aborted: [], orders: {}, refused: [], extra: [], watched: null };

async function signIn(email) {
  const app = initializeApp({ projectId: E.JOBRELAY_TEST_PROJECT, apiKey: "local-emulator" }, `requests-${sessions.length}`);
  const auth = getAuth(app);
  connectAuthEmulator(auth, `http://${E.JOBRELAY_TEST_AUTH}`, { disableWarnings: true });
  const [host, port] = E.JOBRELAY_TEST_FIRESTORE.split(":");
  const db = getFirestore(app);
  connectFirestoreEmulator(db, host, Number(port));
  const cred = await signInWithEmailAndPassword(auth, email, E.JOBRELAY_TEST_PASSWORD);
  const jobrelay = createClient({ apiUrl: E.JOBRELAY_TEST_API, env: E.JOBRELAY_TEST_ENV, auth, firestore: db });
  const s = { app, db, uid: cred.user.uid, jobrelay };
  sessions.push(s);
  return s;
}

let buyer;
let other;
let watcher;
before(async () => {
  buyer = await signIn(E.JOBRELAY_TEST_BUYER);
  other = await signIn(E.JOBRELAY_TEST_OTHER);
  watcher = await signIn(E.JOBRELAY_TEST_WATCHER);
});
after(async () => {
  writeFileSync(E.JOBRELAY_TEST_RESULT, JSON.stringify(result));
  for (const s of sessions) {
    await terminate(s.db);
    await deleteApp(s.app);
  }
});

class Declined extends Error {}

// About half abort, by a fixed rule (the same set every run): the app changes its mind after writing.
const aborts = (i) => (i * 7919) % 100 < 50;

// One checkout: the order and its invoice job request, written in one transaction.
async function checkout(i) {
  const { db, uid, jobrelay } = buyer;
  const order = doc(collection(db, "orders"));
  let requestId = null;
  const tried = [];
  try {
    await runTransaction(db, async (tx) => {
      tx.set(order, { owner: uid, total: i });
      requestId = await jobrelay.enqueueInTransaction(tx, {
        type: "echo",
        payload: { message: `invoice ${i}` },
        labels: { order: order.id },
      });
      tried.push(requestId);
      if (aborts(i)) throw new Declined(`order ${i} declined`);
    });
  } catch (err) {
    if (!(err instanceof Declined)) throw err;
    result.aborted.push(...tried);
    return;
  }
  result.committed.push(requestId);
  result.aborted.push(...tried.filter((id) => id !== requestId)); // attempts the SDK retried never committed
  result.orders[requestId] = order.id;
}

test(`${COUNT} checkouts, each an order and its job request in one transaction, about half aborted`, async () => {
  let next = 0;
  let marked = false;
  const worker = async () => {
    while (next < COUNT) {
      const i = next++;
      await checkout(i);
      if (!marked && result.committed.length + result.aborted.length >= COUNT / 3) {
        marked = true;
        writeFileSync(E.JOBRELAY_TEST_MARK, "kill the API now");
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const expected = Array.from({ length: COUNT }, (_, i) => i).filter((i) => !aborts(i)).length;
  assert.equal(result.committed.length, expected);
  assert.ok(result.aborted.length >= COUNT - expected);
});

test("the rules refuse a request for another owner, and the whole transaction with it", async () => {
  const { db, jobrelay } = buyer;
  const order = doc(collection(db, "orders"));
  const err = await runTransaction(db, async (tx) => {
    tx.set(order, { owner: buyer.uid, total: 1 });
    tx.set(doc(collection(db, "job_requests")), { type: "echo", owner: other.uid, status: "pending" });
  }).catch((e) => e);
  assert.equal(err?.code, "permission-denied", String(err));
  assert.equal((await getDoc(order)).exists(), false);
  const forged = writeBatch(db);
  forged.set(doc(collection(db, "job_requests")), { type: "echo", owner: buyer.uid, status: "accepted", job_id: "r-forged" });
  assert.equal((await forged.commit().catch((e) => e))?.code, "permission-denied");
  const batch = writeBatch(db);
  const id = await jobrelay.enqueueInBatch(batch, { type: "echo", payload: { message: "mine" } }, { requestId: `own-${Date.now()}` });
  await batch.commit();
  result.extra.push(id); // the buyer's one request outside the checkouts
  const ref = doc(db, "job_requests", id);
  assert.equal((await updateDoc(ref, { status: "refused" }).catch((e) => e))?.code, "permission-denied");
  assert.equal((await deleteDoc(ref).catch((e) => e))?.code, "permission-denied");
  assert.equal((await getDoc(doc(other.db, "job_requests", id)).catch((e) => e))?.code, "permission-denied");
});

test("a request jobrelay refuses ends with the API's error and no job", async () => {
  const { db, jobrelay } = watcher;
  const batch = writeBatch(db);
  const id = await jobrelay.enqueueInBatch(batch, { type: "no-such-type", payload: {} });
  await batch.commit();
  const last = await follow(jobrelay, id);
  assert.equal(last.status, "refused");
  assert.ok(last.error instanceof JobrelayError);
  assert.equal(last.error.status, 422);
  assert.equal(last.error.code, "invalid");
  assert.match(last.error.message, /unknown job type 'no-such-type'/);
  assert.equal(last.jobId, null);
  result.refused.push(id);
});

test("watchRequest follows the request, then its job to the end", async () => {
  const { db, jobrelay } = watcher;
  const id = await runTransaction(db, (tx) => jobrelay.enqueueInTransaction(tx, { type: "echo", payload: { message: "watched" } }));
  const updates = [];
  const last = await follow(jobrelay, id, updates);
  assert.equal(last.status, "accepted");
  assert.equal(last.job.status, "succeeded");
  assert.deepEqual(last.job.result, { message: "watched" });
  assert.ok(updates.some((u) => u.job === null && u.jobId === last.jobId), "the accepted request before its job");
  result.watched = { requestId: id, jobId: last.jobId };
});

test("enqueue refuses what no request may hold before anything is written", async () => {
  const { db, jobrelay } = watcher;
  const batch = writeBatch(db);
  for (const [spec, o] of [
    [{ type: "echo", idempotency_key: "k" }, {}],
    [{ type: "echo" }, { requestId: "a/b" }],
  ]) {
    const err = await jobrelay.enqueueInBatch(batch, spec, o).catch((e) => e);
    assert.ok(err instanceof JobrelayError && err.code === "invalid", String(err));
  }
});

function follow(jobrelay, id, updates = [], timeoutMs = 60000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`request ${id} not final after ${timeoutMs} ms: ${JSON.stringify(updates.map((u) => u.status))}`));
    }, timeoutMs);
    const stop = jobrelay.watchRequest(
      id,
      (u) => {
        updates.push(u);
        if (u.final) {
          clearTimeout(timer);
          stop();
          resolve(u);
        }
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
