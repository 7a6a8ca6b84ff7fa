// The API's operator routes as the signed-in operator of one env (jobs and pipelines themselves go
// through @jobrelay/client; pause and resume: features/flow.js). Errors are the client library's
// JobrelayError: status, code, message, details.

import { JobrelayError } from "@jobrelay/client";

export class OperatorApi {
  /** base: the API's origin ("" = this page's); token(): the operator's ID token in this env. */
  constructor(base, env, token) {
    this.base = (base || location.origin).replace(/\/+$/, "");
    this.env = env;
    this.token = token;
  }

  url(path, query = {}, envPath = true) {
    const prefix = envPath ? `/v1/envs/${encodeURIComponent(this.env)}` : "";
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") params.set(k, v);
    const qs = params.toString();
    return `${this.base}${prefix}${path}${qs ? `?${qs}` : ""}`;
  }

  async call(method, path, { body, query, envPath = true } = {}) {
    const resp = await this.send(method, this.url(path, query, envPath), body);
    const data = await resp.json().catch(() => null);
    if (resp.ok || (resp.status === 503 && path === "/v1/schedules")) return data;
    const err = data?.error || {};
    throw new JobrelayError(resp.status, err.code || `http_${resp.status}`, err.message || `HTTP ${resp.status}`, err.details);
  }

  async send(method, url, body) {
    const headers = { Authorization: `Bearer ${await this.token()}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    try {
      return await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (cause) {
      throw new JobrelayError(0, "unreachable", `cannot reach ${url}: ${cause?.message || cause}`);
    }
  }

  deadLetters() { return this.call("GET", "/dead-letters"); }
  redrive(body) { return this.call("POST", "/dead-letters:redrive", { body }); }
  queues() { return this.call("GET", "/queues"); }
  types() { return this.call("GET", "/types"); }
  stats() { return this.call("GET", "/stats"); }
  schedules() { return this.call("GET", "/v1/schedules", { envPath: false }); }

  // Promotion (docs/adr/0019): 1 in the source env, 2 in the target env, 3 in the source env again.
  promotionSource(kind, id, to) { return this.call("GET", `/promotions/${kind}/${encodeURIComponent(id)}`, { query: { to } }); }
  promote(body) { return this.call("POST", "/promotions", { body }); }
  recordPromotion(kind, id, to) {
    return this.call("POST", `/promotions/${kind}/${encodeURIComponent(id)}:record`, { body: { to } });
  }
}
