// Every failure of a call: the API's {"error": {code, message, details}} or a transport problem.

/** A refused or failed call. `status` 0: the API was not reached (code "unreachable") or no user is signed in. */
export class JobrelayError extends Error {
  override readonly name = "JobrelayError";

  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    /** Seconds the API asked to wait (429, 503), when it said. */
    readonly retryAfter?: number,
  ) {
    super(message);
  }

  /** 401 or 403: not signed in, or not allowed (refresh the ID token after an access change). */
  get isAuth(): boolean {
    return this.status === 401 || this.status === 403 || this.code === "not_signed_in";
  }

  /** Trying again later may work: unreachable, 429 or 5xx. */
  get isTransient(): boolean {
    return this.status === 0 ? this.code === "unreachable" : this.status === 429 || this.status >= 500;
  }
}

/** The error of an answer that is not 2xx. */
export async function errorOf(resp: Response): Promise<JobrelayError> {
  let body: unknown = null;
  try {
    body = await resp.json();
  } catch {
    // not JSON: a proxy's page, an empty body
  }
  const err = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null)?.error;
  const code = typeof err?.code === "string" ? err.code : `http_${resp.status}`;
  const message = typeof err?.message === "string" ? err.message : `HTTP ${resp.status} ${resp.statusText}`.trim();
  return new JobrelayError(resp.status, code, message, err?.details, retryAfterSeconds(resp.headers.get("retry-after")));
}

/** Retry-After as seconds: a number of seconds or an HTTP date. */
export function retryAfterSeconds(value: string | null): number | undefined {
  if (value == null || value.trim() === "") return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - Date.now()) / 1000);
}
