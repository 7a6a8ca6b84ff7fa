// The console's pure logic under Node's own test runner (no browser, no Firebase): how a pipeline's
// steps are laid out and labelled, and how a type's pause and breaker read. Run by
// tests/unit/test_console_logic.py; the pages themselves run in tests/e2e/test_console.py.
import assert from "node:assert/strict";
import { test } from "node:test";

import { breakerText, stateOf, stateText } from "../src/features/flow.js";
import { childrenText, countsText, edges, layers } from "../src/features/graph.js";

const diamond = {
  d: { after: ["b", "c"] },
  c: { after: ["a"] },
  b: { after: ["a"] },
  a: { after: [] },
};

test("steps are laid out in layers by after, in the pipeline's order", () => {
  assert.deepEqual(layers(diamond, ["a", "c", "b", "d"]), [["a"], ["c", "b"], ["d"]]);
  assert.deepEqual(layers(diamond), [["a"], ["b", "c"], ["d"]]);
  assert.deepEqual(layers({ x: { after: ["gone"] } }), [["x"]]); // an unknown name draws no layer
});

test("every after edge runs from the step waited for", () => {
  assert.deepEqual(edges(diamond).sort(), [["a", "b"], ["a", "c"], ["b", "d"], ["c", "d"]]);
});

test("a fan-out's children read from the document once counted, else from the live count", () => {
  assert.equal(childrenText({ children: null }), "");
  assert.equal(childrenText({ children: 3 }), "3 children");
  assert.equal(childrenText({ children: 3 }, { ended: 1, succeeded: 1 }), "3 children: 1 ended, 1 succeeded");
  assert.equal(childrenText({ children: 3, children_succeeded: 2, children_failed: 1 }, { ended: 0, succeeded: 0 }),
    "3 children: 2 succeeded, 1 failed");
});

test("a pipeline's counts read as words", () => {
  assert.equal(countsText({ total: 4, succeeded: 2, running: 1, queued: 1, failed: 0 }), "2 of 4 succeeded, 1 running, 1 queued");
  assert.equal(countsText({ total: 2, succeeded: 0, dead_lettered: 1, skipped: 1 }), "0 of 2 succeeded, 1 dead lettered, 1 skipped");
});

// Rows as GET /v1/envs/{env}/types answers them (jobrelay/flowcontrol.py _state_view + type counts).
const running = { type: "echo", paused: false, source: null, reason: "incident 1", paused_by: "ops", waiting: 0,
  breaker: { state: "closed", trips: 0 }, breaker_config: null, queued: 1, retrying: 0, running: 0 };
const byOperator = { ...running, paused: true, source: "operator", reason: "incident 42", paused_by: "ops",
  paused_at: "2026-01-01T00:00:00Z", waiting: 5 };
const byBreaker = { ...running, type: "downstream", paused: true, source: "breaker", reason: "breaker: 4 of the last 4 attempts failed",
  paused_by: "breaker", waiting: 6, breaker_config: { window: 4 },
  breaker: { state: "open", cool_down_until: "2026-01-01T00:00:03Z", trips: 1, failures: 4, attempts: 4, probe_job: null } };

test("a type's pause reads from its row: who, why, since when, how many wait", () => {
  const s = stateOf(byOperator);
  assert.deepEqual([s.paused, s.source, s.by, s.reason, s.since, s.waiting], [true, "operator", "ops", "incident 42", "2026-01-01T00:00:00Z", 5]);
  assert.equal(stateText(s), "paused by ops: incident 42");
  assert.equal(s.breaker, null);
  // A resumed type keeps its last reason in the document; the console does not show it as a pause.
  const r = stateOf(running);
  assert.deepEqual([r.paused, r.reason, r.by, stateText(r)], [false, "", "", "running"]);
});

test("a breaker reads none, closed, open with its cool-down, or half open with its probe", () => {
  assert.equal(breakerText(stateOf(running).breaker), "none");
  const open = stateOf(byBreaker);
  assert.equal(stateText(open), "stopped by its breaker: breaker: 4 of the last 4 attempts failed");
  assert.equal(breakerText(open.breaker), "open: 4 of 4 attempts failed (cool-down until 2026-01-01T00:00:03Z)");
  const half = stateOf({ ...byBreaker, breaker: { ...byBreaker.breaker, state: "half_open", probe_job: "job-1" } });
  assert.equal(breakerText(half.breaker), "half open: probe job-1 decides");
  const closed = stateOf({ ...running, breaker_config: { window: 4 }, breaker: { state: "closed", trips: 2 } });
  assert.equal(breakerText(closed.breaker), "closed (opened 2× before)");
});
