"""What operators do without HTTP: dead letters (list, show, redrive), stats and queue depths.

The API checks that the caller is an operator of the env and hands the request here; this module
reads and writes the env's Firestore and Cloud Tasks through the library's own modules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from jobrelay import deadletters
from jobrelay.auth import Caller
from jobrelay.errors import NotFound, Unprocessable
from jobrelay.flow import Flow
from jobrelay.models import is_job_id
from jobrelay.settings import Infra
from jobrelay.store import JobStore
from jobrelay.validation import validation_details

log = logging.getLogger("jobrelay.operator")

MIN_WINDOW, MAX_WINDOW = 60, 30 * 86400


class Operator:
    """Dead letters, stats and queues of the envs whose stores it holds."""

    def __init__(
        self,
        infra: Infra,
        stores: Mapping[str, JobStore],
        flow: Flow,
        tasks_client: Callable[[str], Any],
        paused: Callable[[str], list[dict[str, Any]]] = lambda env: [],
    ) -> None:
        self.infra = infra
        self.stores = stores
        self.flow = flow
        self._tasks_client = tasks_client
        self._paused = paused  # the env's paused types (jobrelay.flowcontrol), shown with stats and queues

    def dead_letters(self, env: str, fingerprint: str | None) -> dict[str, Any]:
        """Open dead letters, grouped by fingerprint; groups cover the newest 500, `total` counts all.

        `fingerprint` None lists every group; given, it must be one (an empty one is not "all").
        """
        if fingerprint is not None and not deadletters.is_fingerprint(fingerprint):
            raise Unprocessable(
                f"fingerprint: {deadletters.FINGERPRINT_RULE}",
                [{"field": "fingerprint", "problem": "not a fingerprint"}],
            )
        client = self.stores[env].client
        letters = deadletters.list_open(client, fingerprint=fingerprint)
        return {
            "groups": deadletters.group(letters),
            "dead_letters": letters[:100],
            "total": deadletters.count_open(client, fingerprint=fingerprint),
        }

    def dead_letter(self, env: str, job_id: str) -> dict[str, Any]:
        store = self.stores[env]
        letter = deadletters.get(store.client, job_id) if is_job_id(job_id) else None
        if letter is None:
            raise NotFound(f"no dead letter for job {job_id} in env {env}", {"job_id": job_id})
        job = store.get(job_id)
        return {**letter, "job": job.public() if job else None}

    def redrive(self, env: str, caller: Caller, raw: Any) -> dict[str, Any]:
        """Redrive the dead letters a request selects (a dry run only says what would happen)."""
        try:
            body = deadletters.RedriveRequest.model_validate(raw)
        except ValidationError as exc:
            details = validation_details(exc)
            raise Unprocessable(
                f"invalid redrive request: {details[0]['field']}: {details[0]['problem']}", details
            ) from exc
        if body.selectors() != 1:
            raise Unprocessable(
                'give exactly one of "job_ids", "fingerprint" or "all": true',
                [{"field": "body", "problem": "one selector needed"}],
            )
        store = self.stores[env]
        ids = deadletters.select(store.client, body)
        if body.fingerprint is not None and not ids:
            raise NotFound(
                f"no open dead letter has fingerprint {body.fingerprint!r} in env {env}; "
                "`jobrelay dlq list` shows the open groups",
                {"fingerprint": body.fingerprint},
            )
        # Each redriven job is followed by the flow: a pipeline step brings back the steps skipped
        # because of it, a fan-out that failed for its children runs those again.
        results = self.flow.redrive(env, ids, by=caller.uid, dry_run=body.dry_run)
        log.warning("redrive by %s in %s: %d selected, dry_run=%s", caller.uid, env, len(ids), body.dry_run)
        return {
            "dry_run": body.dry_run,
            "count": len(results),
            "redriven": sum(1 for r in results if r.outcome == "redriven"),
            "results": [r.as_dict() for r in results],
        }

    def stats(self, env: str, window_seconds: int) -> dict[str, Any]:
        if not MIN_WINDOW <= window_seconds <= MAX_WINDOW:
            raise Unprocessable(
                f"window_seconds must be between {MIN_WINDOW} and {MAX_WINDOW}",
                [{"field": "window_seconds", "problem": "range"}],
            )
        from jobrelay.stats import env_stats

        stats = env_stats(
            self.stores[env].client,
            env=env,
            classes=sorted(self.infra.classes),
            window=timedelta(seconds=window_seconds),
        )
        return {**stats, "paused": self._paused(env)}

    def queues(self, env: str) -> dict[str, Any]:
        from jobrelay.stats import queue_depths

        env_settings = self.infra.env(env)
        rows = queue_depths(
            self._tasks_client(env),
            self.stores[env].client,
            project=env_settings.project,
            region=env_settings.region,
            classes=[(c.name, c.queues, c.route.value) for c in self.infra.classes.values()],
        )
        return {"env": env, "queues": rows, "paused": self._paused(env)}
