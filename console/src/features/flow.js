// Flow control (docs/flow-control.md): pausing and resuming a job type, and its circuit breaker.
// `GET /v1/envs/{env}/types` answers every type offered in the env with its `type_states/{type}`
// fields (jobrelay/typestates.py: paused, source, reason, paused_by, paused_at, resumed_by, resumed_at,
// breaker {state, opened_at, cool_down_until, probe_job, trips, failures, attempts}), `waiting` (jobs
// parked behind the pause), `breaker_config` (null: the type has no breaker) and its job counts.
// Pure functions here (no DOM, no Firebase): the queues page draws what `stateOf` says.

export function pause(api, type, reason) {
  return api.call("POST", `/types/${encodeURIComponent(type)}:pause`, { body: { reason } });
}

export function resume(api, type) {
  return api.call("POST", `/types/${encodeURIComponent(type)}:resume`, { body: {} });
}

/**
 * What the console shows of one row of GET .../types: whether the type runs, who paused it, since
 * when and why, how many jobs wait behind it, and its breaker (null when the type has none).
 */
export function stateOf(row) {
  const b = row?.breaker || {};
  const paused = row?.paused === true;
  return {
    paused,
    source: paused ? row.source || "operator" : null, // "operator" or "breaker"
    reason: paused ? row.reason || "" : "",
    by: paused ? row.paused_by || "" : "",
    since: paused ? row.paused_at || null : null,
    waiting: Number(row?.waiting || 0),
    breaker: row?.breaker_config
      ? { state: b.state || "closed", coolDownUntil: b.cool_down_until || null, probeJob: b.probe_job || null,
        trips: b.trips || 0, failures: b.failures || 0, attempts: b.attempts || 0 }
      : null,
  };
}

/** The type's state in words: "running", "paused by X: why", "breaker open: why". */
export function stateText(state) {
  if (!state.paused) return "running";
  if (state.source === "breaker") return `stopped by its breaker: ${state.reason}`;
  return `paused by ${state.by || "?"}${state.reason ? `: ${state.reason}` : ""}`;
}

/** The breaker in words: "none", "closed", "open until …", "half open: probe …". */
export function breakerText(breaker, utc = (t) => t) {
  if (!breaker) return "none";
  if (breaker.state === "open") {
    const until = breaker.coolDownUntil ? ` (cool-down until ${utc(breaker.coolDownUntil)})` : "";
    return `open: ${breaker.failures} of ${breaker.attempts} attempts failed${until}`;
  }
  if (breaker.state === "half_open") return `half open: probe ${breaker.probeJob || "?"} decides`;
  return breaker.trips ? `closed (opened ${breaker.trips}× before)` : "closed";
}
