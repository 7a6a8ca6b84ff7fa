// The jobrelay client: the HTTP API with the signed-in user's ID token, and job documents watched live.

import type { Auth } from "firebase/auth";
import {
  doc,
  onSnapshot,
  type DocumentSnapshot,
  type Firestore,
  type FirestoreError,
  type Transaction,
  type WriteBatch,
} from "firebase/firestore";

import { JobrelayError, errorOf } from "./errors.js";
import { requestFor, watchRequest, type EnqueueOptions, type RequestSpec, type RequestUpdate } from "./requests.js";
import {
  FINAL_STATUSES,
  PIPELINE_FINAL,
  type Job,
  type JobList,
  type JobSpec,
  type JobStatus,
  type JobUpdate,
  type ListOptions,
  type Pipeline,
  type PipelineSpec,
  type PipelineStatus,
  type PipelineStepState,
  type PipelineUpdate,
} from "./types.js";

export interface JobrelayOptions {
  /** The jobrelay API's base URL, e.g. https://jobrelay-api-….run.app (locally, local.json's "api"). */
  apiUrl: string;
  /** dev, stg or prod: the env whose Firebase project `auth` signs users in to. */
  env: string;
  /** Firebase Auth: every call carries `auth.currentUser.getIdToken()`. */
  auth: Auth;
  /** The env's Firestore, for watchJob (onSnapshot on jobs/{id}). */
  firestore?: Firestore;
  /**
   * The app's App Check token, sent as X-Firebase-AppCheck on submits (an env with app_check: required
   * refuses submits without one), e.g. `async () => (await getToken(appCheck)).token`.
   */
  appCheckToken?: () => Promise<string>;
  /** Tries after the first for a call that may be repeated (default 4). */
  retries?: number;
  /** The longest Retry-After the client waits out before giving up with the error (default 30 s). */
  maxRetryAfterSeconds?: number;
  /** First backoff pause on network errors, doubling each try (default 250 ms). */
  backoffMs?: number;
  /** A fetch of your own (tests, instrumentation); default globalThis.fetch. */
  fetch?: typeof fetch;
}

interface Call {
  method: "GET" | "POST";
  path: string;
  body?: unknown;
  query?: Record<string, string | number | undefined>;
  /** Repeating it cannot do anything twice: reads, cancels, submits with an idempotency key. */
  safe: boolean;
  appCheck?: boolean;
  signal?: AbortSignal;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export type Unsubscribe = () => void;

/** One env's jobs, as the signed-in user. */
export class JobrelayClient {
  readonly apiUrl: string;
  readonly env: string;
  private readonly opts: JobrelayOptions;
  private readonly fetcher: typeof fetch;

  constructor(opts: JobrelayOptions) {
    if (!opts.apiUrl) throw new TypeError("apiUrl is required: the jobrelay API's base URL");
    if (!opts.env) throw new TypeError("env is required: dev, stg or prod");
    this.opts = opts;
    this.apiUrl = opts.apiUrl.replace(/\/+$/, "");
    this.env = opts.env;
    this.fetcher = opts.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** Submit one job; 202 a new job, 200 the first job of a repeated idempotency key. */
  async submitJob<R = unknown, P = Record<string, unknown>>(spec: JobSpec<P>, o: CallOptions = {}): Promise<Job<R>> {
    return this.call({ method: "POST", path: "/jobs", body: spec, safe: Boolean(spec.idempotency_key), appCheck: true, ...o });
  }

  /** Submit up to 500 specs in one call, all valid or none written; the jobs come back in order. */
  async submitJobs<R = unknown>(specs: JobSpec[], o: CallOptions = {}): Promise<Job<R>[]> {
    const safe = specs.length > 0 && specs.every((s) => Boolean(s.idempotency_key));
    const body = await this.call<{ jobs: Job<R>[] }>({
      method: "POST",
      path: "/jobs:batch",
      body: { jobs: specs },
      safe,
      appCheck: true,
      ...o,
    });
    return body.jobs;
  }

  /**
   * Submit a pipeline (steps with `after`), all valid or nothing written. Needs a jobrelay API that
   * serves pipelines (`POST /v1/envs/{env}/pipelines`); an older one answers 404 "no route".
   */
  async submitPipeline(spec: PipelineSpec, o: CallOptions = {}): Promise<Pipeline> {
    return this.call({ method: "POST", path: "/pipelines", body: spec, safe: Boolean(spec.idempotency_key), appCheck: true, ...o });
  }

  /** One pipeline with each step's job id and status (yours, or anyone's for an admin). */
  async getPipeline(id: string, o: CallOptions = {}): Promise<Pipeline> {
    return this.call({ method: "GET", path: `/pipelines/${segment(id)}`, safe: true, ...o });
  }

  /** Cancel every step that has not ended (running ones stop at their next check). */
  async cancelPipeline(id: string, o: CallOptions = {}): Promise<Pipeline> {
    return this.call({ method: "POST", path: `/pipelines/${segment(id)}:cancel`, safe: true, ...o });
  }

  /** Run a failed pipeline's failed steps again, and the steps skipped because of them. */
  async retryPipeline(id: string, o: CallOptions = {}): Promise<Pipeline> {
    return this.call({ method: "POST", path: `/pipelines/${segment(id)}:retry`, safe: false, ...o });
  }

  /**
   * Follow pipelines/{id} live (onSnapshot; the rules let its owner or an admin read it): every step's
   * status and the counts, on every step event. Returns the function that stops watching.
   */
  watchPipeline(
    id: string,
    onUpdate: (update: PipelineUpdate) => void,
    onError: (error: JobrelayError) => void = (e) => console.error(e),
  ): Unsubscribe {
    const db = this.opts.firestore;
    if (!db) throw new JobrelayError(0, "no_firestore", "watchPipeline needs the env's Firestore: pass `firestore` to createClient");
    return onSnapshot(
      doc(db, "pipelines", id),
      (snap) => {
        if (!snap.exists()) {
          onError(new JobrelayError(404, "not_found", `pipeline ${id} does not exist in env ${this.env}`));
          return;
        }
        const data = (snap.data() ?? {}) as Record<string, unknown>;
        const status = data["status"] as PipelineStatus;
        onUpdate({
          id: snap.id,
          status,
          steps: (data["steps"] as Record<string, PipelineStepState>) ?? {},
          counts: (data["counts"] as Record<string, number>) ?? {},
          final: PIPELINE_FINAL.has(status),
          data,
        });
      },
      (err: FirestoreError) => onError(watchError(id, err, "pipeline")),
    );
  }

  /** One job (yours, or anyone's for an admin). */
  async getJob<R = unknown>(id: string, o: CallOptions = {}): Promise<Job<R>> {
    return this.call({ method: "GET", path: `/jobs/${segment(id)}`, safe: true, ...o });
  }

  /** Your jobs, newest first, one page at a time (pass nextPageToken back as pageToken). */
  async listJobs<R = unknown>(options: ListOptions = {}, o: CallOptions = {}): Promise<JobList<R>> {
    const body = await this.call<{ jobs: Job<R>[]; next_page_token?: string | null }>({
      method: "GET",
      path: "/jobs",
      query: {
        status: options.status,
        type: options.type,
        page_size: options.pageSize,
        page_token: options.pageToken,
        owner: options.owner,
      },
      safe: true,
      ...o,
    });
    return { jobs: body.jobs, nextPageToken: body.next_page_token ?? null };
  }

  /** Cancel: a waiting job ends cancelled now; a running one is asked to stop (watch it for the end). */
  async cancelJob<R = unknown>(id: string, o: CallOptions = {}): Promise<Job<R>> {
    return this.call({ method: "POST", path: `/jobs/${segment(id)}:cancel`, safe: true, ...o });
  }

  /**
   * Follow jobs/{id} live (Firestore onSnapshot; the rules let its owner or an admin read it).
   * `onUpdate` gets the typed status, progress, result and error on every change; `onError` a
   * JobrelayError (403 permission_denied for another user's job or one that does not exist).
   * Returns the function that stops watching.
   */
  watchJob<R = unknown>(
    id: string,
    onUpdate: (update: JobUpdate<R>) => void,
    onError: (error: JobrelayError) => void = (e) => console.error(e),
  ): Unsubscribe {
    const db = this.opts.firestore;
    if (!db) throw new JobrelayError(0, "no_firestore", "watchJob needs the env's Firestore: pass `firestore` to createClient");
    return onSnapshot(
      doc(db, "jobs", id),
      (snap) => {
        if (!snap.exists()) {
          onError(new JobrelayError(404, "not_found", `job ${id} does not exist in env ${this.env}`));
          return;
        }
        onUpdate(updateOf<R>(snap));
      },
      (err: FirestoreError) => onError(watchError(id, err)),
    );
  }

  // -- job requests: enqueue inside your own transaction or batch (docs/job-requests.md) ----------

  /**
   * Write a job request in `tx` (Firestore's runTransaction); returns its id. If the transaction
   * commits, jobrelay makes exactly one job of it; if it aborts, there is neither request nor job.
   * Await it inside the transaction's function: it may fetch the App Check token first.
   */
  async enqueueInTransaction<P = Record<string, unknown>>(
    tx: Transaction,
    spec: RequestSpec<P>,
    o: EnqueueOptions = {},
  ): Promise<string> {
    const { ref, data } = await requestFor(this.opts, spec as RequestSpec, o);
    tx.set(ref, data);
    return ref.id;
  }

  /** Write a job request in a write batch; returns its id. It becomes a job once the batch commits. */
  async enqueueInBatch<P = Record<string, unknown>>(
    batch: WriteBatch,
    spec: RequestSpec<P>,
    o: EnqueueOptions = {},
  ): Promise<string> {
    const { ref, data } = await requestFor(this.opts, spec as RequestSpec, o);
    batch.set(ref, data);
    return ref.id;
  }

  /**
   * Follow job_requests/{id} (onSnapshot) until jobrelay decides it: refused ends with the error the API
   * would have answered; accepted goes on with the job's own updates (watchJob) until it is final.
   */
  watchRequest<R = unknown>(
    requestId: string,
    onUpdate: (update: RequestUpdate<R>) => void,
    onError: (error: JobrelayError) => void = (e) => console.error(e),
  ): Unsubscribe {
    return watchRequest<R>(this.opts, this, requestId, onUpdate, onError);
  }

  // -- plumbing --------------------------------------------------------------------------------

  private async idToken(force: boolean): Promise<string> {
    const user = this.opts.auth.currentUser;
    if (!user) throw new JobrelayError(0, "not_signed_in", "no user is signed in: sign in with Firebase Auth first");
    return user.getIdToken(force);
  }

  private async call<T>(c: Call): Promise<T> {
    const retries = this.opts.retries ?? 4;
    const maxWait = this.opts.maxRetryAfterSeconds ?? 30;
    const backoff = this.opts.backoffMs ?? 250;
    const url = this.url(c.path, c.query);
    let refreshed = false;
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = { Authorization: `Bearer ${await this.idToken(refreshed)}` };
      if (c.body !== undefined) headers["Content-Type"] = "application/json";
      if (c.appCheck && this.opts.appCheckToken) headers["X-Firebase-AppCheck"] = await this.opts.appCheckToken();
      let resp: Response;
      try {
        resp = await this.fetcher(url, {
          method: c.method,
          headers,
          body: c.body === undefined ? undefined : JSON.stringify(c.body),
          signal: c.signal,
        });
      } catch (cause) {
        if (c.signal?.aborted) throw cause;
        const err = new JobrelayError(0, "unreachable", `cannot reach ${url}: ${(cause as Error)?.message ?? cause}`);
        // A request that may have arrived is repeated only when repeating it is harmless.
        if (c.safe && attempt < retries) {
          await sleep(backoff * 2 ** attempt * (0.5 + Math.random() / 2), c.signal);
          continue;
        }
        throw err;
      }
      if (resp.ok) return (await resp.json()) as T;
      const err = await errorOf(resp);
      if (resp.status === 401 && !refreshed && /expired/i.test(err.message)) {
        refreshed = true; // the SDK's cached token outlived its hour: once with a fresh one
        continue;
      }
      // 429 refuses before anything is written, so any call may try again; 503 only when safe.
      const again = resp.status === 429 || (c.safe && resp.status === 503);
      const wait = err.retryAfter ?? (backoff * 2 ** attempt) / 1000;
      if (again && attempt < retries && wait <= maxWait) {
        await sleep(wait * 1000, c.signal);
        continue;
      }
      throw err;
    }
  }

  private url(path: string, query?: Record<string, string | number | undefined>): string {
    const url = `${this.apiUrl}/v1/envs/${encodeURIComponent(this.env)}${path}`;
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== "") params.set(k, String(v));
    const qs = params.toString();
    return qs ? `${url}?${qs}` : url;
  }
}

/** A client for one env of jobrelay. */
export function createClient(opts: JobrelayOptions): JobrelayClient {
  return new JobrelayClient(opts);
}

function segment(id: string): string {
  if (!id || /[/?#]/.test(id)) throw new JobrelayError(0, "invalid", `not a job id: ${JSON.stringify(id)}`);
  return encodeURIComponent(id);
}

function updateOf<R>(snap: DocumentSnapshot): JobUpdate<R> {
  const data = (snap.data() ?? {}) as Record<string, unknown>;
  const status = data["status"] as JobStatus;
  return {
    id: snap.id,
    status,
    progress: (data["progress"] as JobUpdate["progress"]) ?? null,
    result: (data["result"] as R | undefined) ?? null,
    error: (data["error"] as JobUpdate["error"]) ?? null,
    final: FINAL_STATUSES.has(status),
    attempt: Number(data["attempt"] ?? 0),
    data,
  };
}

function watchError(id: string, err: FirestoreError, what = "job"): JobrelayError {
  if (err.code === "permission-denied") {
    return new JobrelayError(
      403,
      "permission_denied",
      `you may not read ${what} ${id}: only its owner or an admin can (or it does not exist)`,
    );
  }
  if (err.code === "unauthenticated") return new JobrelayError(401, "unauthenticated", `sign in to watch ${what} ${id}`);
  return new JobrelayError(0, err.code, `cannot watch ${what} ${id}: ${err.message}`);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}
