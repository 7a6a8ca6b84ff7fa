// The shapes the jobrelay API answers (see the API's /v1/openapi.json) and the job document apps watch.

/** Where a job is in its life; the last four are final ("waiting": a fan-out waiting for its children). */
export type JobStatus =
  | "queued"
  | "running"
  | "retrying"
  | "waiting"
  | "failed"
  | "succeeded"
  | "dead_lettered"
  | "cancelled"
  | "skipped";

export const FINAL_STATUSES: ReadonlySet<JobStatus> = new Set<JobStatus>([
  "succeeded",
  "dead_lettered",
  "cancelled",
  "skipped",
]);

export type JobClass = "A" | "B" | "C" | "D";

/** What a job handler reported with ctx.progress(done, total, message). */
export interface Progress {
  done: number;
  total: number;
  message?: string | null;
}

/** A failed attempt: the handler's error, with secrets masked. */
export interface JobErrorInfo {
  type: string;
  message: string;
  stack?: string | null;
  retryable?: boolean;
  fingerprint?: string | null;
  attempt?: number | null;
  at?: string | null;
}

/** A job spec, as `POST /v1/envs/{env}/jobs` takes it. */
export interface JobSpec<P = Record<string, unknown>> {
  type: string;
  payload?: P;
  class?: JobClass;
  idempotency_key?: string;
  run_at?: string;
  delay_seconds?: number;
  depends_on?: string[];
  labels?: Record<string, string>;
  timeout_seconds?: number;
  max_attempts?: number;
}

/** A job as the API answers it (times in RFC 3339 UTC). */
export interface Job<R = unknown> {
  id: string;
  env: string;
  type: string;
  class: JobClass;
  status: JobStatus;
  owner: string;
  attempt: number;
  max_attempts: number;
  progress: Progress | null;
  result: R | null;
  result_ref?: string | null;
  error: JobErrorInfo | null;
  errors?: JobErrorInfo[];
  log_tail?: string[];
  labels?: Record<string, string>;
  idempotency_key?: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  duration_seconds?: number | null;
  trace_id?: string | null;
  [more: string]: unknown;
}

export interface JobList<R = unknown> {
  jobs: Job<R>[];
  nextPageToken: string | null;
}

export interface ListOptions {
  status?: JobStatus;
  type?: string;
  pageSize?: number;
  pageToken?: string;
  /** Admins only: another user's jobs. */
  owner?: string;
}

/** One step of a pipeline: a job spec plus the steps it waits for. */
export interface PipelineStep extends JobSpec {
  after?: string[];
}

/** A pipeline, as `POST /v1/envs/{env}/pipelines` takes it (issue 16's contract). */
export interface PipelineSpec {
  name: string;
  steps: Record<string, PipelineStep>;
  labels?: Record<string, string>;
  idempotency_key?: string;
}

export type PipelineStatus = "running" | "succeeded" | "failed" | "cancelled";

/** One step of a pipeline as `pipelines/{id}` holds it (docs/pipelines.md). */
export interface PipelineStepState {
  job_id: string;
  status: JobStatus;
  type?: string;
  after?: string[];
  attempt?: number;
  started_at?: string | null;
  finished_at?: string | null;
  /** A fan-out step: how many children it spawned. */
  children?: number | null;
  /** ... and, once its fan-in ended it, how many of them succeeded and how many did not. */
  children_succeeded?: number | null;
  children_failed?: number | null;
}

export interface Pipeline {
  id: string;
  env: string;
  name: string;
  status: PipelineStatus;
  owner: string;
  steps: Record<string, PipelineStepState>;
  /** Step names, each after the steps it waits for. */
  order?: string[];
  /** Steps per job status, and `total`. */
  counts?: Record<string, number>;
  created_at: string;
  finished_at?: string | null;
  [more: string]: unknown;
}

export const PIPELINE_FINAL: ReadonlySet<PipelineStatus> = new Set<PipelineStatus>(["succeeded", "failed", "cancelled"]);

/** What watchPipeline hands the callback on every change of `pipelines/{id}`. */
export interface PipelineUpdate {
  id: string;
  status: PipelineStatus;
  steps: Record<string, PipelineStepState>;
  counts: Record<string, number>;
  /** True once it will not change again (succeeded, failed, cancelled) unless it is retried. */
  final: boolean;
  /** The whole document as Firestore holds it (timestamps are Firestore Timestamps). */
  data: Record<string, unknown>;
}

/** What watchJob hands the callback on every change of the job's document. */
export interface JobUpdate<R = unknown> {
  id: string;
  status: JobStatus;
  progress: Progress | null;
  result: R | null;
  /** The last attempt's error, when the job failed or is retrying. */
  error: JobErrorInfo | null;
  /** True once the job will not change again (succeeded, dead_lettered, cancelled, skipped). */
  final: boolean;
  attempt: number;
  /** The whole document as Firestore holds it (timestamps are Firestore Timestamps). */
  data: Record<string, unknown>;
}
