"""In-memory Cloud Tasks: queues, tasks, the scheduler thread, throttling and retries.

One lock guards all state. Each queue keeps its tasks in a heap keyed by due time; a task that is
rescheduled, run or removed gets a new `seq`, which turns its older heap entries stale (dropped
when they surface). The scheduler thread sleeps on a condition variable until the earliest due
task, the next token of a throttled queue, or a notify (new task, resume, a freed dispatch slot);
with nothing due it sleeps without a timeout. Due tasks leave through a fixed pool of dispatch
threads, each attempt limited by its queue's token bucket (max_dispatches_per_second refilling up to
max_burst_size) and in-flight cap (max_concurrent_dispatches).

Names of finished, dropped, deleted and purged tasks stay reserved for `name_reservation` seconds,
names of deleted queues for `queue_reservation` seconds.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import logging
import math
import queue as stdqueue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from jobrelay.local.cloudtasks import errors
from jobrelay.local.cloudtasks.config import QueueSettings, RetryPolicy
from jobrelay.local.cloudtasks.dispatch import Delivery, HttpTarget, Outcome, service_headers
from jobrelay.local.cloudtasks.names import QueueName, new_task_id

log = logging.getLogger("jobrelay.cloudtasks")

MAX_TASK_AGE = 31 * 24 * 3600.0
_LONGEST_WAIT = 3600.0  # the scheduler re-checks at least hourly when its next due time is further off


class QueueState(StrEnum):
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"


@dataclass(frozen=True, slots=True)
class Attempt:
    schedule_time: float
    dispatch_time: float
    response_time: float | None = None
    status_code: int | None = None
    status_message: str = ""


@dataclass(slots=True, eq=False)
class Task:
    """A task as the engine holds it; callers get copies."""

    task_id: str
    target: HttpTarget
    create_time: float
    schedule_time: float
    dispatch_deadline: float
    retry: RetryPolicy | None = None
    dispatch_count: int = 0
    response_count: int = 0
    execution_count: int = 0  # responses other than 5xx: X-CloudTasks-TaskExecutionCount
    first_dispatch_time: float | None = None
    last_attempt: Attempt | None = None
    previous_status: int | None = None
    retry_reason: str | None = None
    inflight: int = 0
    seq: int = 0


@dataclass(frozen=True, slots=True)
class QueueView:
    name: str
    settings: QueueSettings
    state: QueueState
    purge_time: float | None


@dataclass(slots=True, eq=False)
class _Queue:
    name: QueueName
    settings: QueueSettings
    tokens: float
    refilled: float
    state: QueueState = QueueState.RUNNING
    purge_time: float | None = None
    inflight: int = 0
    tasks: dict[str, Task] = field(default_factory=dict)
    heap: list[tuple[float, int, Task]] = field(default_factory=list)
    reserved: dict[str, float] = field(default_factory=dict)

    def view(self) -> QueueView:
        return QueueView(str(self.name), self.settings, self.state, self.purge_time)


class Engine:
    """All queues of all projects and locations, and the threads that dispatch their tasks."""

    def __init__(
        self,
        deliver: Callable[[Delivery], Outcome],
        *,
        workers: int = 64,
        name_reservation: float = 3600.0,
        queue_reservation: float = 7 * 24 * 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._deliver = deliver
        self._workers = workers
        self._name_reservation = name_reservation
        self._queue_reservation = queue_reservation
        self._clock = clock
        self._cv = threading.Condition()
        self._queues: dict[str, _Queue] = {}
        self._deleted_queues: dict[str, float] = {}
        self._reservations: deque[tuple[float, _Queue, str]] = deque()
        self._seq = itertools.count(1)
        self._free = workers
        self._wake_at = math.inf
        self._turn = 0
        self._stopping = False
        self._jobs: stdqueue.SimpleQueue[tuple[_Queue, Task, Delivery] | None] = stdqueue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._threads.append(threading.Thread(target=self._schedule, name="cloudtasks-scheduler", daemon=True))
        for i in range(self._workers):
            self._threads.append(threading.Thread(target=self._work, name=f"cloudtasks-dispatch-{i}", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> int:
        """Stop dispatching; returns how many attempts were still in flight (they are abandoned)."""
        with self._cv:
            self._stopping = True
            in_flight = self._workers - self._free
            self._cv.notify_all()
        for _ in range(self._workers):
            self._jobs.put(None)
        if self._threads:
            self._threads[0].join(timeout=5)
        return in_flight

    # -- queues ----------------------------------------------------------------------------------

    def create_queue(self, name: QueueName, settings: QueueSettings) -> QueueView:
        with self._cv:
            key = str(name)
            if key in self._queues:
                raise errors.already_exists("Queue already exists")
            return self._add_queue(name, settings).view()

    def ensure_queue(self, name: QueueName, settings: QueueSettings) -> QueueView:
        """The queue, created with `settings` if it does not exist (a recently deleted name still refuses)."""
        with self._cv:
            q = self._queues.get(str(name))
            return (q if q is not None else self._add_queue(name, settings)).view()

    def get_queue(self, name: QueueName) -> QueueView:
        with self._cv:
            return self._queue(name).view()

    def list_queues(self, parent: str, *, after: str, limit: int, state: QueueState | None) -> list[QueueView]:
        """Queues under `parent` in name order, after `after`, at most `limit`."""
        prefix = parent + "/queues/"
        with self._cv:
            names = sorted(k for k in self._queues if k.startswith(prefix) and k > after)
            views = [self._queues[k].view() for k in names]
        return [v for v in views if state is None or v.state is state][:limit]

    def update_queue(self, name: QueueName, change: Callable[[QueueSettings | None], QueueSettings]) -> QueueView:
        """Apply `change` to the queue's settings; a missing queue is created, as the API does."""
        with self._cv:
            q = self._queues.get(str(name))
            if q is None:
                return self._add_queue(name, change(None)).view()
            q.settings = change(q.settings)
            q.tokens = min(q.tokens, q.settings.rate_limits.max_burst_size)
            self._cv.notify()
            return q.view()

    def delete_queue(self, name: QueueName) -> None:
        with self._cv:
            q = self._queue(name)
            del self._queues[str(name)]
            for task in q.tasks.values():
                task.seq = -1
            self._deleted_queues[str(name)] = self._clock() + self._queue_reservation

    def pause_queue(self, name: QueueName) -> QueueView:
        with self._cv:
            q = self._queue(name)
            q.state = QueueState.PAUSED
            return q.view()

    def resume_queue(self, name: QueueName) -> QueueView:
        with self._cv:
            q = self._queue(name)
            q.state = QueueState.RUNNING
            self._cv.notify()
            return q.view()

    def purge_queue(self, name: QueueName) -> QueueView:
        """Remove every task created before now; attempts already in flight finish unheard."""
        with self._cv:
            q = self._queue(name)
            now = self._clock()
            q.purge_time = now
            for task in [t for t in q.tasks.values() if t.create_time < now]:
                self._remove(q, task, now)
            return q.view()

    # -- tasks -----------------------------------------------------------------------------------

    def create_task(
        self,
        queue: QueueName,
        task_id: str | None,
        target: HttpTarget,
        *,
        schedule_time: float | None,
        dispatch_deadline: float,
        retry: RetryPolicy | None,
    ) -> Task:
        with self._cv:
            q = self._queue(queue)
            now = self._clock()
            self._expire_reservations(now)
            if task_id is None:
                task_id = new_task_id()
                while task_id in q.tasks or task_id in q.reserved:
                    task_id = new_task_id()
            elif task_id in q.tasks:
                raise errors.already_exists()
            elif task_id in q.reserved:
                raise errors.already_exists(
                    "The task cannot be created because a task with this name existed too recently."
                )
            due = now if schedule_time is None else max(now, schedule_time)
            task = Task(task_id, target, now, due, dispatch_deadline, retry)
            q.tasks[task_id] = task
            self._push(q, task)
            return copy.copy(task)

    def get_task(self, queue: QueueName, task_id: str) -> Task:
        with self._cv:
            return copy.copy(self._task(self._queue(queue), task_id))

    def list_tasks(self, queue: QueueName, *, after: str, limit: int) -> list[Task]:
        """Tasks in id order, after `after`, at most `limit`."""
        with self._cv:
            q = self._queue(queue)
            ids = sorted(i for i in q.tasks if i > after)[:limit]
            return [copy.copy(q.tasks[i]) for i in ids]

    def delete_task(self, queue: QueueName, task_id: str) -> None:
        with self._cv:
            q = self._queue(queue)
            self._remove(q, self._task(q, task_id), self._clock())

    def run_task(self, queue: QueueName, task_id: str) -> Task:
        """Dispatch now, whatever the schedule, the queue's state and its rate limits."""
        with self._cv:
            q = self._queue(queue)
            task = self._task(q, task_id)
            self._launch(q, task, self._clock())
            return copy.copy(task)

    # -- internals: lookups and bookkeeping -------------------------------------------------------

    def _queue(self, name: QueueName) -> _Queue:
        q = self._queues.get(str(name))
        if q is None:
            raise errors.not_found(errors.QUEUE_NOT_FOUND)
        return q

    def _task(self, q: _Queue, task_id: str) -> Task:
        task = q.tasks.get(task_id)
        if task is None:
            self._expire_reservations(self._clock())
            raise errors.not_found(errors.TASK_GONE if task_id in q.reserved else "Requested entity was not found.")
        return task

    def _add_queue(self, name: QueueName, settings: QueueSettings) -> _Queue:
        now = self._clock()
        blocked_until = self._deleted_queues.get(str(name))
        if blocked_until is not None and blocked_until > now:
            raise errors.failed_precondition(
                "The queue cannot be created because a queue with this name existed too recently."
            )
        q = _Queue(name, settings, tokens=float(settings.rate_limits.max_burst_size), refilled=now)
        self._queues[str(name)] = q
        return q

    def _push(self, q: _Queue, task: Task) -> None:
        task.seq = next(self._seq)
        heapq.heappush(q.heap, (task.schedule_time, task.seq, task))
        if q.state is QueueState.RUNNING and task.schedule_time < self._wake_at:
            self._cv.notify()

    def _remove(self, q: _Queue, task: Task, now: float) -> None:
        del q.tasks[task.task_id]
        task.seq = -1
        expiry = now + self._name_reservation
        q.reserved[task.task_id] = expiry
        self._reservations.append((expiry, q, task.task_id))
        if len(q.heap) > 2 * len(q.tasks) + 64:
            q.heap = [entry for entry in q.heap if entry[2].seq == entry[1]]
            heapq.heapify(q.heap)

    def _expire_reservations(self, now: float) -> None:
        while self._reservations and self._reservations[0][0] <= now:
            expiry, q, task_id = self._reservations.popleft()
            if q.reserved.get(task_id) == expiry:
                del q.reserved[task_id]

    # -- internals: the scheduler and the dispatch threads ---------------------------------------

    def _schedule(self) -> None:
        with self._cv:
            while not self._stopping:
                self._wake_at = self._dispatch_due(self._clock())
                timeout = None if self._wake_at == math.inf else max(0.0, self._wake_at - self._clock())
                # A queue's next token can be ages away (a tiny rate); waits past the platform's limit raise.
                self._cv.wait(None if timeout is None else min(timeout, _LONGEST_WAIT))

    def _dispatch_due(self, now: float) -> float:
        """Start every attempt that may start now; return when the next one may (inf: on notify)."""
        queues = list(self._queues.values())
        if not queues:
            return math.inf
        self._turn = (self._turn + 1) % len(queues)  # take turns at the head of the line
        wake = math.inf
        for q in queues[self._turn :] + queues[: self._turn]:
            if self._free <= 0:
                break
            if q.state is QueueState.RUNNING and q.heap:
                wake = min(wake, self._drain(q, now))
        return wake

    def _drain(self, q: _Queue, now: float) -> float:
        limits = q.settings.rate_limits
        heap = q.heap
        while heap:
            due, seq, task = heap[0]
            if task.seq != seq:
                heapq.heappop(heap)
                continue
            if due > now:
                return due
            if q.inflight >= limits.max_concurrent_dispatches or self._free <= 0:
                return math.inf  # a finishing attempt notifies
            q.tokens = min(
                float(limits.max_burst_size), q.tokens + (now - q.refilled) * limits.max_dispatches_per_second
            )
            q.refilled = now
            if q.tokens < 1.0:
                return now + (1.0 - q.tokens) / limits.max_dispatches_per_second
            heapq.heappop(heap)
            q.tokens -= 1.0
            self._launch(q, task, now)
        return math.inf

    def _launch(self, q: _Queue, task: Task, now: float) -> None:
        retries = task.dispatch_count
        task.seq = next(self._seq)  # any heap entry left (RunTask) is now stale
        task.dispatch_count += 1
        task.inflight += 1
        if task.first_dispatch_time is None:
            task.first_dispatch_time = now
        task.last_attempt = Attempt(task.schedule_time, now)
        q.inflight += 1
        self._free -= 1
        headers = service_headers(
            queue_id=q.name.queue_id,
            task_id=task.task_id,
            retry_count=retries,
            execution_count=task.execution_count,
            eta=task.schedule_time,
            previous_status=task.previous_status,
            retry_reason=task.retry_reason,
        )
        delivery = Delivery(
            str(q.name), task.task_id, task.dispatch_count, task.target, headers, task.dispatch_deadline
        )
        self._jobs.put((q, task, delivery))

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            q, task, delivery = job
            try:
                outcome = self._deliver(delivery)
            except Exception as exc:  # a bug in delivery must not kill the thread; it fails the attempt
                log.exception("dispatch of %s/tasks/%s crashed", delivery.queue, delivery.task_id)
                outcome = Outcome(None, "INTERNAL", f"emulator error: {exc}", 0.0)
            self._finish(q, task, delivery, outcome)

    def _finish(self, q: _Queue, task: Task, delivery: Delivery, outcome: Outcome) -> None:
        with self._cv:
            now = self._clock()
            q.inflight -= 1
            self._free += 1
            if self._free == 1 or q.inflight + 1 == q.settings.rate_limits.max_concurrent_dispatches:
                self._cv.notify()
            live = self._queues.get(str(q.name)) is q and q.tasks.get(task.task_id) is task
            next_step = self._settle(q, task, outcome, now) if live else "gone (deleted or purged)"
        result = f"status={outcome.status}" if outcome.status is not None else f"error={outcome.error}"
        log.info(
            "dispatch queue=%s task=%s attempt=%d %s ms=%.1f then=%s",
            delivery.queue, delivery.task_id, delivery.attempt, result, outcome.elapsed * 1000, next_step,
        )  # fmt: skip

    def _settle(self, q: _Queue, task: Task, outcome: Outcome, now: float) -> str:
        task.inflight -= 1
        if task.last_attempt is not None:
            task.last_attempt = replace(
                task.last_attempt,
                response_time=now,
                status_code=outcome.rpc_number,
                status_message=outcome.detail,
            )
        if outcome.status is not None:
            task.response_count += 1
            if outcome.status < 500:
                task.execution_count += 1
        if outcome.ok:
            self._remove(q, task, now)
            return "done"
        task.previous_status = outcome.status
        task.retry_reason = outcome.rpc_code
        if task.inflight > 0:
            return "another attempt in flight"
        policy = task.retry or q.settings.retry
        elapsed = now - (task.first_dispatch_time or now)
        if policy.gives_up(task.dispatch_count, elapsed) or now - task.create_time >= MAX_TASK_AGE:
            self._remove(q, task, now)
            return "dropped (retry limits reached)"
        delay = policy.delay(task.dispatch_count)
        task.schedule_time = now + delay
        self._push(q, task)
        return f"retry in {delay:g}s"
