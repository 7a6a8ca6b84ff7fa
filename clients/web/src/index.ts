// @jobrelay/client: jobrelay for Firebase apps. See docs/web-client.md.
export { JobrelayClient, createClient } from "./client.js";
export type { CallOptions, JobrelayOptions, Unsubscribe } from "./client.js";
export { JobrelayError } from "./errors.js";
export { REQUESTS } from "./requests.js";
export type { EnqueueOptions, RequestSpec, RequestStatus, RequestUpdate } from "./requests.js";
export { FINAL_STATUSES, PIPELINE_FINAL } from "./types.js";
export type {
  Job,
  JobClass,
  JobErrorInfo,
  JobList,
  JobSpec,
  JobStatus,
  JobUpdate,
  ListOptions,
  Pipeline,
  PipelineSpec,
  PipelineStatus,
  PipelineStep,
  PipelineStepState,
  PipelineUpdate,
  Progress,
} from "./types.js";
