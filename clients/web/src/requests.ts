// Job requests: enqueue a job inside the app's own Firestore transaction or batch (docs/job-requests.md).
//
// The request is a document, job_requests/{id}, written in the same commit as the app's own data: if
// the commit fails, there is no request and no job; once it commits, jobrelay turns it into exactly one
// job and writes back status "accepted" with job_id, or "refused" with error {code, message, details}
// (what the API would have answered a submit of the same spec). The security rules let a signed-in
// user create a request only as its owner, pending, with a job spec's fields.

import type { Auth } from "firebase/auth";
import {
  collection,
  doc,
  onSnapshot,
  type DocumentReference,
  type Firestore,
  type FirestoreError,
  type Transaction,
  type WriteBatch,
} from "firebase/firestore";

import { JobrelayError } from "./errors.js";
import type { JobSpec, JobUpdate } from "./types.js";

export const REQUESTS = "job_requests";

/** pending: written, not yet read by jobrelay; accepted: job_id names its job; refused: error says why. */
export type RequestStatus = "pending" | "accepted" | "refused";

/** A job spec as a request carries it: the request id is its idempotency key. */
export type RequestSpec<P = Record<string, unknown>> = Omit<JobSpec<P>, "idempotency_key">;

export interface EnqueueOptions {
  /**
   * An id of your own (6-100 letters, digits, _ and -), e.g. derived from the order: a retry of your own
   * code then finds the first request instead of making a second. Default: a random id.
   */
  requestId?: string;
}

/** What watchRequest reports: the request, then its job's updates once it has one. */
export interface RequestUpdate<R = unknown> {
  requestId: string;
  status: RequestStatus;
  jobId: string | null;
  /** Why jobrelay refused it: the same code, message and details the API would have answered. */
  error: JobrelayError | null;
  /** The job's latest state, once the request was accepted (watchJob's update). */
  job: JobUpdate<R> | null;
  /** Nothing more will change: refused, or the job is final. */
  final: boolean;
}

// The HTTP status the API answers with each refusal code (a request's error names only the code).
const STATUS_OF: Record<string, number> = {
  bad_request: 400,
  unauthenticated: 401,
  app_check_required: 401,
  app_check_invalid: 401,
  permission_denied: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  invalid: 422,
  rate_limited: 429,
};
const REQUEST_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{5,99}$/;

export interface RequestContext {
  env: string;
  auth: Auth;
  firestore?: Firestore;
  appCheckToken?: () => Promise<string>;
}

/** The request document for `spec`, and where it goes. Throws JobrelayError before anything is written. */
export async function requestFor(
  c: RequestContext,
  spec: RequestSpec,
  o: EnqueueOptions = {},
): Promise<{ ref: DocumentReference; data: Record<string, unknown> }> {
  const db = c.firestore;
  if (!db) throw new JobrelayError(0, "no_firestore", "job requests need the env's Firestore: pass `firestore` to createClient");
  const user = c.auth.currentUser;
  if (!user) throw new JobrelayError(0, "not_signed_in", "no user is signed in: sign in with Firebase Auth first");
  if ("idempotency_key" in spec) {
    throw new JobrelayError(0, "invalid", "a job request's id is its idempotency key: pass requestId instead");
  }
  if (o.requestId !== undefined && !REQUEST_ID.test(o.requestId)) {
    throw new JobrelayError(0, "invalid", `not a request id: ${JSON.stringify(o.requestId)} (6-100 letters, digits, _ and -)`);
  }
  const ref = o.requestId ? doc(db, REQUESTS, o.requestId) : doc(collection(db, REQUESTS));
  const data: Record<string, unknown> = { owner: user.uid, status: "pending" };
  for (const [k, v] of Object.entries(spec)) if (v !== undefined) data[k] = v;
  if (c.appCheckToken) data["app_check"] = await c.appCheckToken();
  return { ref, data };
}

interface JobWatcher {
  watchJob<R>(id: string, onUpdate: (u: JobUpdate<R>) => void, onError: (e: JobrelayError) => void): () => void;
}

/** Follow a request until it is decided, then its job until the job is final (or until stopped). */
export function watchRequest<R>(
  c: RequestContext,
  jobs: JobWatcher,
  requestId: string,
  onUpdate: (u: RequestUpdate<R>) => void,
  onError: (e: JobrelayError) => void,
): () => void {
  const db = c.firestore;
  if (!db) throw new JobrelayError(0, "no_firestore", "watchRequest needs the env's Firestore: pass `firestore` to createClient");
  let stopJob: (() => void) | null = null;
  let stopRequest: (() => void) | null = null;
  let done = false;
  const stopAll = () => {
    done = true;
    stopRequest?.();
    stopJob?.();
  };
  stopRequest = onSnapshot(
    doc(db, REQUESTS, requestId),
    (snap) => {
      if (done) return;
      if (!snap.exists()) {
        onError(new JobrelayError(404, "not_found", `job request ${requestId} does not exist in env ${c.env}`));
        return;
      }
      const data = snap.data() as Record<string, unknown>;
      const status = data["status"] as RequestStatus;
      const jobId = typeof data["job_id"] === "string" ? (data["job_id"] as string) : null;
      if (status === "refused") {
        onUpdate({ requestId, status, jobId: null, error: refusal(data["error"]), job: null, final: true });
        stopAll();
      } else if (status === "accepted" && jobId) {
        stopRequest?.(); // decided for good: from here on the job is what changes
        onUpdate({ requestId, status, jobId, error: null, job: null, final: false });
        stopJob = jobs.watchJob<R>(
          jobId,
          (job) => {
            if (!done) onUpdate({ requestId, status, jobId, error: null, job, final: job.final });
          },
          onError,
        );
      } else {
        onUpdate({ requestId, status: "pending", jobId: null, error: null, job: null, final: false });
      }
    },
    (err: FirestoreError) => onError(watchError(requestId, err)),
  );
  return stopAll;
}

function refusal(raw: unknown): JobrelayError {
  const e = (raw ?? {}) as { code?: unknown; message?: unknown; details?: unknown };
  const code = typeof e.code === "string" ? e.code : "refused";
  const message = typeof e.message === "string" ? e.message : "refused by jobrelay";
  return new JobrelayError(STATUS_OF[code] ?? 400, code, message, e.details);
}

function watchError(id: string, err: FirestoreError): JobrelayError {
  if (err.code === "permission-denied") {
    return new JobrelayError(403, "permission_denied", `you may not read job request ${id}: only its owner or an admin can`);
  }
  return new JobrelayError(0, err.code, `cannot watch job request ${id}: ${err.message}`);
}

export type { Transaction, WriteBatch };
