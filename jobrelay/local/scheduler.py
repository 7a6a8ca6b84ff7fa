"""The local stack's Cloud Scheduler: calls `POST /v1/cron/{name}` for every schedule as it falls due.

It behaves as Cloud Scheduler does for the API: an OIDC token of the env's scheduler service account
(signed by the local key the API trusts, with the API URL as audience) and the scheduled time in
`X-CloudScheduler-ScheduleTime`. It keeps no state but the last time it looked: no backfill.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import requests

from jobrelay import cron
from jobrelay.local.oidc import LocalSigner
from jobrelay.settings import Infra

log = logging.getLogger("jobrelay.local.scheduler")


class LocalScheduler:
    def __init__(
        self,
        infra: Infra,
        envs: Sequence[str],
        api_url: str,
        signer: LocalSigner,
        start: datetime | None = None,
    ) -> None:
        self.infra = infra
        self.envs = list(envs)
        self.api_url = api_url.rstrip("/")
        self.signer = signer
        self.last = start or datetime.now(UTC)

    def tick(self, at: datetime | None = None) -> list[tuple[str, str, int]]:
        """Fire what fell due since the last tick; returns (schedule, env, HTTP status) per call."""
        at = at or datetime.now(UTC)
        fired = []
        for s in self.infra.schedules.values():
            if not s.enabled:
                continue
            for when in cron.fire_times(s, self.last, at):
                for env in (e for e in s.envs if e in self.envs):
                    fired.append((s.name, env, self.call(s.name, env, when)))
        self.last = at
        return fired

    def call(self, name: str, env: str, scheduled: datetime) -> int:
        email = self.infra.env(env).service_accounts.scheduler
        token = self.signer.mint(self.api_url, email)
        r = requests.post(
            f"{self.api_url}/v1/cron/{name}",
            params={"env": env},
            headers={
                "Authorization": f"Bearer {token}",
                "X-CloudScheduler": "true",
                "X-CloudScheduler-JobName": f"jobrelay-{name}",
                "X-CloudScheduler-ScheduleTime": scheduled.isoformat().replace("+00:00", "Z"),
            },
            timeout=30,
        )
        level = logging.INFO if r.status_code < 300 else logging.ERROR
        log.log(level, "tick %s in %s for %s -> %d", name, env, scheduled.isoformat(), r.status_code)
        return r.status_code
