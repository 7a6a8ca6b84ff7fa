// The client's HTTP behaviour against a scripted server on 127.0.0.1 (no stack): retries, Retry-After,
// typed errors, the ID token and App Check headers. The same calls run for real in stack.test.mjs.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";

import { JobrelayError, createClient } from "../dist/index.js";

// The script: each request takes the next answer; `null` is a network error (fetch rejects, as it does
// when the connection fails), raised by the fetch the client is given.
let answers = [];
const seen = [];
let server;
let base;

before(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body: body ? JSON.parse(body) : undefined, at: Date.now() });
      const answer = answers.shift() ?? [500, { error: { code: "script", message: "no answer scripted" } }];
      const [status, json, headers = {}] = answer;
      res.writeHead(status, { "Content-Type": "application/json", ...headers });
      res.end(JSON.stringify(json));
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${server.address().port}`;
});
after(() => server.close());

const tokens = [];
const auth = { currentUser: { getIdToken: async (force) => (tokens.push(force), `id-token-${tokens.length}`) } };
const JOB = { id: "j1", status: "queued", progress: null, result: null, error: null };

async function flakyFetch(url, init) {
  if (answers[0] === null) {
    answers.shift();
    seen.push({ method: init.method, url, headers: {}, at: Date.now(), failed: true });
    throw new TypeError("fetch failed");
  }
  return fetch(url, init);
}

function client(extra = {}) {
  answers = [];
  seen.length = 0;
  tokens.length = 0;
  return createClient({ apiUrl: `${base}/`, env: "dev", auth, backoffMs: 1, fetch: flakyFetch, ...extra });
}

test("every call carries the signed-in user's ID token and goes to the env's routes", async () => {
  const jr = client();
  answers = [[202, JOB], [200, JOB], [200, { jobs: [JOB], next_page_token: "n2" }], [202, JOB]];
  await jr.submitJob({ type: "echo", payload: { message: "hi" } });
  await jr.getJob("j1");
  const page = await jr.listJobs({ status: "queued", pageSize: 10 });
  await jr.cancelJob("j1");
  assert.deepEqual(
    seen.map((s) => `${s.method} ${s.url}`),
    ["POST /v1/envs/dev/jobs", "GET /v1/envs/dev/jobs/j1", "GET /v1/envs/dev/jobs?status=queued&page_size=10", "POST /v1/envs/dev/jobs/j1:cancel"],
  );
  assert.ok(seen.every((s) => /^Bearer id-token-\d+$/.test(s.headers.authorization)));
  assert.deepEqual(seen[0].body, { type: "echo", payload: { message: "hi" } });
  assert.equal(page.nextPageToken, "n2");
});

test("a refusal is a JobrelayError with the API's code, message and details", async () => {
  const jr = client();
  const details = [{ field: "type", problem: "unknown job type 'nope'" }];
  answers = [[422, { error: { code: "invalid", message: "type: unknown job type 'nope'", details } }]];
  const err = await jr.submitJob({ type: "nope" }).catch((e) => e);
  assert.ok(err instanceof JobrelayError);
  assert.equal(err.status, 422);
  assert.equal(err.code, "invalid");
  assert.match(err.message, /nope/);
  assert.deepEqual(err.details, details);
  assert.equal(seen.length, 1, "a 422 is not retried");
});

test("429 is retried after the Retry-After it names, for any call", async () => {
  const jr = client();
  answers = [[429, { error: { code: "rate_limited", message: "slow down" } }, { "Retry-After": "1" }], [202, JOB]];
  const job = await jr.submitJob({ type: "echo" }); // not idempotent, but a 429 wrote nothing
  assert.equal(job.id, "j1");
  assert.equal(seen.length, 2);
  assert.ok(seen[1].at - seen[0].at >= 950, `waited ${seen[1].at - seen[0].at} ms`);
});

test("a Retry-After longer than the client waits gives the error back at once", async () => {
  const jr = client({ maxRetryAfterSeconds: 5 });
  answers = [[429, { error: { code: "rate_limited", message: "quota used up" } }, { "Retry-After": "60" }]];
  const err = await jr.getJob("j1").catch((e) => e);
  assert.equal(err.status, 429);
  assert.equal(err.retryAfter, 60);
  assert.equal(seen.length, 1);
});

test("network errors are retried for safe calls only", async () => {
  const jr = client();
  answers = [null, null, [200, JOB]];
  assert.equal((await jr.getJob("j1")).id, "j1");
  assert.equal(seen.length, 3);

  answers = [null, [202, JOB]];
  seen.length = 0;
  const err = await jr.submitJob({ type: "echo" }).catch((e) => e);
  assert.ok(err instanceof JobrelayError && err.code === "unreachable" && err.status === 0, String(err));
  assert.equal(seen.length, 1, "a submit that may have arrived is not sent twice");

  answers = [null, [202, JOB]];
  seen.length = 0;
  assert.equal((await jr.submitJob({ type: "echo", idempotency_key: "k1" })).id, "j1");
  assert.equal(seen.length, 2, "with an idempotency key a repeat returns the first job");
});

test("retries stop after the configured number", async () => {
  const jr = client({ retries: 2 });
  answers = [null, null, null, [200, JOB]];
  const err = await jr.getJob("j1").catch((e) => e);
  assert.equal(err.code, "unreachable");
  assert.equal(seen.length, 3);
});

test("an expired token is refreshed once (getIdToken(true)) and the call repeated", async () => {
  const jr = client();
  answers = [[401, { error: { code: "unauthenticated", message: "token expired; get a fresh ID token" } }], [200, JOB]];
  await jr.getJob("j1");
  assert.deepEqual(tokens, [false, true]);
  answers = [[401, { error: { code: "unauthenticated", message: "token is for Firebase project 'x'" } }]];
  const err = await jr.getJob("j1").catch((e) => e);
  assert.equal(err.status, 401);
  assert.ok(err.isAuth);
});

test("submits carry the App Check token; reads do not need one", async () => {
  const jr = client({ appCheckToken: async () => "app-check-token" });
  answers = [[202, JOB], [202, { jobs: [JOB] }], [200, JOB]];
  await jr.submitJob({ type: "echo" });
  await jr.submitJobs([{ type: "echo" }]);
  await jr.getJob("j1");
  assert.deepEqual(seen.map((s) => s.headers["x-firebase-appcheck"]), ["app-check-token", "app-check-token", undefined]);
});

test("submitPipeline posts issue 16's pipeline spec to /pipelines", async () => {
  const jr = client();
  const spec = { name: "nightly", steps: { a: { type: "echo" }, b: { type: "echo", after: ["a"] } }, idempotency_key: "n-1" };
  answers = [[202, { id: "p1", name: "nightly", status: "running", steps: {} }]];
  const p = await jr.submitPipeline(spec);
  assert.equal(p.id, "p1");
  assert.equal(`${seen[0].method} ${seen[0].url}`, "POST /v1/envs/dev/pipelines");
  assert.deepEqual(seen[0].body, spec);
});

test("no signed-in user, or a job id that is not one, fails before any request", async () => {
  const jr = createClient({ apiUrl: base, env: "dev", auth: { currentUser: null } });
  seen.length = 0;
  const err = await jr.getJob("j1").catch((e) => e);
  assert.equal(err.code, "not_signed_in");
  assert.ok(err.isAuth);
  await assert.rejects(client().getJob("../stats"), /not a job id/);
  assert.equal(seen.length, 0);
  assert.throws(() => client().watchJob("j1", () => {}), /needs the env's Firestore/);
});
