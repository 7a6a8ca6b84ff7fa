"""Delivery: one Cloud Task per job dispatch, named after the job, on its class's queue.

Task ids are `{job_id}-{n}` where n counts the job's dispatches: the first submit uses 0, so a
repeated submit hits Cloud Tasks' name de-duplication; a re-dispatch (lease expired, task lost,
redrive, `Retry(delay=)`) takes the next number. Heavy classes go to the env's Pub/Sub topic for
the Elastic Muscle pool instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc
from pydantic import BaseModel, ConfigDict, field_validator

from jobrelay.logging import current_span_id
from jobrelay.models import JOB_ID_RULE, Job, is_job_id
from jobrelay.process_settings import RuntimeSettings
from jobrelay.settings import Environment, Infra, JobClass, Route
from jobrelay.tracing import new_span_id, traceparent

if TYPE_CHECKING:
    from google.cloud import tasks_v2
    from google.cloud.pubsub_v1 import PublisherClient

log = logging.getLogger("jobrelay.dispatch")

# Called with (env, job, dispatch number) once Pub/Sub accepted a pool message.
PublishedHook = Callable[[Environment, Job, int], None]


class TaskMessage(BaseModel):
    """The body of every task and pool message: which job to run, and its trace."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    env: str
    job_id: str
    dispatch: int = 0
    trace_id: str | None = None
    span_id: str | None = None  # the span that dispatched it: the parent of the run's span
    check: bool = False  # a fan-in check of a waiting job (jobrelay.fanin), not a run of it

    @field_validator("job_id")
    @classmethod
    def _job_id(cls, v: str) -> str:
        # It becomes a Firestore document path: `a/b`, `../x` or `__x__` must never get that far.
        if not is_job_id(v):
            raise ValueError(JOB_ID_RULE)
        return v


def task_id(job_id: str, n: int) -> str:
    return f"{job_id}-{n}"


def dispatch_deadline(job_class: JobClass, timeout_seconds: int) -> int:
    """Cloud Tasks must wait for the whole handler run (15 s - 30 min)."""
    return max(15, min(1800, max(job_class.dispatch_deadline_seconds, timeout_seconds + 30)))


class Dispatcher:
    """Creates and deletes the deliveries of jobs."""

    def __init__(
        self,
        infra: Infra,
        settings: RuntimeSettings,
        tasks: tasks_v2.CloudTasksClient,
        publisher: PublisherClient | None = None,
        published_hook: PublishedHook | None = None,
    ) -> None:
        self.infra = infra
        self.settings = settings
        self.tasks = tasks
        self.publisher = publisher
        self.published_hook = published_hook
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="dispatch")

    def for_clients(self, tasks: tasks_v2.CloudTasksClient, publisher: PublisherClient | None) -> Dispatcher:
        """The same dispatcher speaking through other clients (another env's identity)."""
        return Dispatcher(self.infra, self.settings, tasks, publisher, self.published_hook)

    def task_path(self, env: Environment, job: Job, n: int) -> str:
        job_class = self.infra.classes[job.job_class]
        return self.tasks.task_path(env.project, env.region, job_class.queue_for(job.id), task_id(job.id, n))

    def route(self, job: Job) -> Route:
        return Route(job.route)

    def dispatch(self, env: Environment, job: Job, *, n: int, when: datetime | None) -> str:
        """Create the delivery for dispatch number `n`; an existing one counts as done."""
        if self.route(job) == Route.MUSCLE and when is None:
            return self._publish(env, job, n)
        return self._create_task(env, job, n, when)

    def dispatch_soon(self, env: Environment, job: Job, *, n: int, when: datetime | None) -> Future[str]:
        """`dispatch`, started in this dispatcher's threads; the future holds the task name or the error."""
        return self._pool.submit(self.dispatch, env, job, n=n, when=when)

    def dispatch_many(
        self, env: Environment, jobs: Sequence[tuple[Job, int, datetime | None]]
    ) -> list[BaseException | None]:
        """Dispatch concurrently; returns, per job, None or the error that stopped it."""

        def one(item: tuple[Job, int, datetime | None]) -> BaseException | None:
            job, n, when = item
            try:
                self.dispatch(env, job, n=n, when=when)
            except gexc.GoogleAPIError as exc:
                log.error("dispatch failed for job %s: %s", job.id, exc)
                return exc
            return None

        return list(self._pool.map(one, jobs))

    def dispatch_check(self, env: Environment, parent_id: str, bucket: int, when: datetime) -> str:
        """Ask the worker for a fan-in check of waiting job `parent_id` at `when` (jobrelay.fanin).

        One task per (parent, time bucket): the name is a hash of both, so Cloud Tasks keeps one
        whatever the number of children ending in the bucket (and hashed names spread its key range).
        On the first tasks-route class (A): a check is small and urgent, whatever the children's class.
        """
        job_class = self.infra.classes[sorted(n for n, c in self.infra.classes.items() if c.route == Route.TASKS)[0]]
        digest = hashlib.sha256(f"{parent_id}\0{bucket}".encode()).hexdigest()[:24]
        name = self.tasks.task_path(env.project, env.region, job_class.queue_for(parent_id), f"{digest}-fanin")
        msg = TaskMessage(env=env.name, job_id=parent_id, check=True)
        return self._send(env, job_class, name, msg, "/v1/run", 60, when)

    def _create_task(self, env: Environment, job: Job, n: int, when: datetime | None) -> str:
        job_class = self.infra.classes[job.job_class]
        path = "/v1/handoff" if self.route(job) == Route.MUSCLE else "/v1/run"
        name = self.task_path(env, job, n)
        return self._send(env, job_class, name, self._message(env, job, n), path, job.timeout_seconds, when)

    def _send(
        self,
        env: Environment,
        job_class: JobClass,
        name: str,
        msg: TaskMessage,
        path: str,
        timeout_seconds: int,
        when: datetime | None,
    ) -> str:
        from google.cloud import tasks_v2
        from google.protobuf import duration_pb2, timestamp_pb2

        headers = {"Content-Type": "application/json"}
        if msg.trace_id and msg.span_id:
            headers["traceparent"] = traceparent(msg.trace_id, msg.span_id)
        base = self.settings.worker_url_for(env.name)
        url = base.rstrip("/") + path
        task = tasks_v2.Task(
            name=name,
            http_request=tasks_v2.HttpRequest(
                url=url,
                http_method=tasks_v2.HttpMethod.POST,
                headers=headers,
                body=msg.model_dump_json().encode(),
                oidc_token=tasks_v2.OidcToken(
                    service_account_email=env.service_accounts.tasks_invoker,
                    audience=self.settings.worker_audience or base,
                ),
            ),
            dispatch_deadline=duration_pb2.Duration(seconds=dispatch_deadline(job_class, timeout_seconds)),
        )
        if when is not None:
            ts = timestamp_pb2.Timestamp()
            ts.FromDatetime(when.astimezone(UTC))
            task.schedule_time = ts
        try:
            # The queue (shard) is the one the task's name was made in.
            created = self.tasks.create_task(parent=name.rsplit("/tasks/", 1)[0], task=task)
            return str(created.name)
        except gexc.AlreadyExists:
            return str(task.name)

    def _publish(self, env: Environment, job: Job, n: int) -> str:
        if self.publisher is None:
            raise RuntimeError("this process has no Pub/Sub publisher for the Elastic Muscle route")
        topic = self.publisher.topic_path(env.project, env.muscle_topic)
        msg = self._message(env, job, n)
        attrs: dict[str, Any] = {
            "env": env.name,
            "job_id": job.id,
            "dispatch": str(n),
            "class": job.job_class,
            "type": job.type,
        }
        future = self.publisher.publish(topic, json.dumps(msg.model_dump()).encode(), **attrs)
        message_id = str(future.result(timeout=30))
        if self.published_hook is not None:
            self.published_hook(env, job, n)
        return message_id

    def _message(self, env: Environment, job: Job, n: int) -> TaskMessage:
        span_id = (current_span_id() or new_span_id()) if job.trace_id else None
        return TaskMessage(env=env.name, job_id=job.id, dispatch=n, trace_id=job.trace_id, span_id=span_id)

    def delete(self, env: Environment, job: Job) -> bool:
        """Delete the job's current task so it never dispatches; False when there was none."""
        if self.route(job) == Route.MUSCLE and job.run_at is None:
            return False  # a pool message cannot be withdrawn; the pool sees the cancel and drops it
        try:
            self.tasks.delete_task(name=self.task_path(env, job, job.dispatch_count))
        except gexc.NotFound:
            return False
        return True

    def hand_off(self, env: Environment, job: Job | None, n: int) -> str | None:
        """A delayed heavy job fell due: publish it to the env's pool topic (Cloud Tasks did the waiting).

        Returns the message id, or None when there is nothing to hand off (the job ended or is gone).
        """
        if job is None or job.status.final:
            return None
        return self._publish(env, job.model_copy(update={"run_at": None}), n)

    def exists(self, env: Environment, job: Job) -> bool:
        """Whether the job's current task is still waiting in its queue."""
        try:
            self.tasks.get_task(name=self.task_path(env, job, job.dispatch_count))
        except gexc.NotFound:
            return False
        return True
