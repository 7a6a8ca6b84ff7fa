"""What one process is told by its environment (`JOBRELAY_*` variables), read by pydantic-settings.

Which envs it serves, where the worker and the API live, how it signs in and exports traces. The
shared `infra/` settings are jobrelay.settings; these are per process (Cloud Run env vars, tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobrelay.settings import DEFAULT_INFRA_DIR, ENV_NAMES


class RuntimeSettings(BaseSettings):
    """What one process is told by its environment (`JOBRELAY_*`)."""

    model_config = SettingsConfigDict(env_prefix="JOBRELAY_", frozen=True, extra="ignore")

    infra_dir: Path = DEFAULT_INFRA_DIR
    envs: str = "prod,stg,dev"
    # Where Cloud Tasks delivers (the worker's base URL) and the audience its OIDC token carries.
    worker_url: str = "http://127.0.0.1:8081"
    worker_audience: str | None = None
    # Per-env worker URLs, for a process serving several envs in the cloud (the Elastic Muscle pool):
    # JSON, e.g. {"prod": "https://jobrelay-worker-123.us-central1.run.app", ...}. Falls back to worker_url.
    worker_urls: dict[str, str] = Field(default_factory=dict)
    # Use each env's own `muscle` service account (impersonated) for that env's clients: the pool's VMs
    # run with an identity that may only impersonate those, so no credential crosses envs.
    impersonate: bool = False
    # Overrides infra's muscle.total_slots on this VM (smaller machines, tests).
    muscle_total_slots: int | None = None
    # Where Pub/Sub pushes dead letters, and the audience of that push's OIDC token.
    deadletter_url: str = "http://127.0.0.1:8082"
    # The public URL of this API (the cron route's OIDC audience).
    api_url: str = "http://127.0.0.1:8080"
    # Where Google-signed OIDC tokens' public keys live; the local stack points this at its emulator.
    oidc_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    # Firebase App Check's public keys (envs with `app_check: required`); tests serve their own.
    app_check_jwks_url: str = "https://firebaseappcheck.googleapis.com/v1/jwks"
    # local | cloud: "local" allows unsigned Firebase emulator tokens; "cloud" refuses to start with them.
    mode: Literal["local", "cloud"] = "cloud"
    # Extra job modules to import (comma separated), besides the built-in `jobs` package.
    job_modules: str = "jobs"
    # Where a job's secrets come from: none | file (local: {secrets_dir}/{env}.json) | secretmanager
    # (secrets labelled jobrelay=true in the env's project) | doppler (DOPPLER_TOKEN_<ENV> service tokens).
    secrets_backend: Literal["none", "file", "secretmanager", "doppler"] = "none"
    secrets_dir: Path | None = None
    # Create a new job's document and its Cloud Task at once instead of one after the other
    # (docs/adr/0012-submit-writes-the-document-then-the-task.md).
    submit_overlap: bool = False
    # Seconds a running job's lease lasts; the worker renews it every third of that.
    lease_seconds: float = 60.0
    # A job request still pending this long after it was written had its event lost: the maintenance
    # pass processes it (jobrelay.intake).
    request_sweep_seconds: float = Field(default=30.0, ge=0)
    # Span export: none (default; trace ids still flow through logs) | console (stderr) | cloud (Cloud Trace).
    trace_export: Literal["none", "console", "cloud"] = "none"
    log_level: str = "INFO"

    @field_validator("envs")
    @classmethod
    def _envs(cls, v: str) -> str:
        names = [n.strip() for n in v.split(",") if n.strip()]
        bad = [n for n in names if n not in ENV_NAMES]
        if bad or not names:
            raise ValueError(f"JOBRELAY_ENVS must list some of {ENV_NAMES}, got {v!r}")
        return ",".join(names)

    @property
    def env_names(self) -> tuple[str, ...]:
        return tuple(self.envs.split(","))

    def worker_url_for(self, env: str) -> str:
        return self.worker_urls.get(env, self.worker_url)
