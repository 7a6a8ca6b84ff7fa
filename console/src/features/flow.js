// Flow control (issue 17): pausing and resuming a job type, and circuit breakers. Built to the issue's
// contract, `POST /v1/envs/{env}/types/{type}:pause` {"reason"} and `:resume`, on a server that may not
// have it yet: `available` asks the server without calling it (see OperatorApi.has), and the console
// says "not available on this server" where it answers that no such route exists.
//
// What is paused or breaker-open is read from the API's answers once they carry it (the issue: "Stats,
// queues and the CLI show what is paused, since when, by whom and why"): `pausedOf` looks for a
// `paused` member on a type's row or a `paused` list on the queues answer.

const known = new Map();

export async function available(api) {
  if (!known.has(api.env)) known.set(api.env, api.has("/types/jobrelay-probe:pause").catch(() => false));
  return known.get(api.env);
}

export function pause(api, type, reason) {
  return api.call("POST", `/types/${encodeURIComponent(type)}:pause`, { body: { reason } });
}

export function resume(api, type) {
  return api.call("POST", `/types/${encodeURIComponent(type)}:resume`, { body: {} });
}

/** {paused: bool, breaker: bool, since, by, reason} of a type, from whatever the answers say. */
export function pausedOf(type, row, queues) {
  const listed = (queues?.paused || []).find((p) => p.type === type);
  const p = row?.paused ?? listed ?? null;
  if (!p) return { paused: false, breaker: false };
  const info = typeof p === "object" ? p : {};
  return { paused: true, breaker: info.reason === "breaker" || Boolean(row?.breaker_open), ...info };
}
