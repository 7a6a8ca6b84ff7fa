"""The Cloud Tasks v2 methods over the engine, one per RPC, shared by the gRPC and the REST face.

Each method takes the raw request message and returns the raw response message, so both faces
validate the same way and answer the same `CloudTasksError` codes. With `create_queues=True` a task
created in a queue that does not exist creates that queue first with the service's defaults (for
teams whose queues are made by a deploy step the emulator never sees, e.g. Firebase task functions).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from google.cloud.location import locations_pb2
from google.protobuf import empty_pb2

from jobrelay.local.cloudtasks import errors, protos
from jobrelay.local.cloudtasks.config import QueueSettings
from jobrelay.local.cloudtasks.engine import Engine, QueueState
from jobrelay.local.cloudtasks.names import parse_location, parse_queue, parse_task

MAX_QUEUE_PAGE = 9800
MAX_TASK_PAGE = 1000
_STATE_FILTER = re.compile(r"^\s*state\s*[:=]\s*\"?(RUNNING|PAUSED)\"?\s*$")
_EMPTY = empty_pb2.Empty()


def _page_token(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode()).decode()


def _after(token: str) -> str:
    if not token:
        return ""
    if not re.fullmatch(r"[A-Za-z0-9_-]+=*", token):  # b64decode would drop stray characters silently
        raise errors.invalid("The page_token is invalid.")
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise errors.invalid("The page_token is invalid.") from exc


def _page_size(requested: int, maximum: int) -> int:
    if requested < 0:
        raise errors.invalid("page_size cannot be negative.")
    return min(requested or maximum, maximum)


class CloudTasksService:
    """One method per RPC: raw request message in, raw response message out."""

    def __init__(
        self,
        engine: Engine,
        locations: Sequence[str],
        *,
        create_queues: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._locations = tuple(locations)
        self._create_queues = create_queues
        self._clock = clock

    # -- queues --

    def CreateQueue(self, req: Any) -> Any:
        parent = parse_location(req.parent)
        name = parse_queue(req.queue.name)
        if name.parent != parent:
            raise errors.invalid(f"The queue name {req.queue.name!r} must be inside the parent {parent!r}.")
        settings = protos.settings_from_pb(req.queue, None, ())
        return protos.queue_to_pb(self._engine.create_queue(name, settings))

    def GetQueue(self, req: Any) -> Any:
        return protos.queue_to_pb(self._engine.get_queue(parse_queue(req.name)))

    def ListQueues(self, req: Any) -> Any:
        parent = parse_location(req.parent)
        state = None
        if req.filter:
            match = _STATE_FILTER.match(req.filter)
            if match is None:
                raise errors.invalid(f"Unsupported filter {req.filter!r}; the emulator filters on state only.")
            state = QueueState(match.group(1))
        size = _page_size(req.page_size, MAX_QUEUE_PAGE)
        views = self._engine.list_queues(parent, after=_after(req.page_token), limit=size + 1, state=state)
        response = protos.Requests["ListQueuesResponse"]()
        response.queues.extend(protos.queue_to_pb(v) for v in views[:size])
        if len(views) > size:
            response.next_page_token = _page_token(views[size - 1].name)
        return response

    def UpdateQueue(self, req: Any) -> Any:
        name = parse_queue(req.queue.name)
        paths = tuple(req.update_mask.paths) if req.HasField("update_mask") else ()
        view = self._engine.update_queue(name, lambda current: protos.settings_from_pb(req.queue, current, paths))
        return protos.queue_to_pb(view)

    def DeleteQueue(self, req: Any) -> Any:
        self._engine.delete_queue(parse_queue(req.name))
        return _EMPTY

    def PurgeQueue(self, req: Any) -> Any:
        return protos.queue_to_pb(self._engine.purge_queue(parse_queue(req.name)))

    def PauseQueue(self, req: Any) -> Any:
        return protos.queue_to_pb(self._engine.pause_queue(parse_queue(req.name)))

    def ResumeQueue(self, req: Any) -> Any:
        return protos.queue_to_pb(self._engine.resume_queue(parse_queue(req.name)))

    # -- tasks --

    def CreateTask(self, req: Any) -> Any:
        queue = parse_queue(req.parent)
        pb = req.task
        protos.check_task_size(pb)
        task_id = None
        if pb.name:
            named_queue, task_id = parse_task(pb.name)
            if named_queue != queue:
                raise errors.invalid(
                    f"The queue name from request ('{queue}') must be the same as the queue name "
                    f"in the named task ('{named_queue}')."
                )
        target = protos.target_from_pb(pb)
        schedule_time = protos.schedule_from_pb(pb, self._clock())
        deadline = protos.deadline_from_pb(pb)
        retry = protos.retry_from_pb(pb)
        if self._create_queues:  # only once the task itself is valid: a refused task creates nothing
            self._engine.ensure_queue(queue, QueueSettings())
        record = self._engine.create_task(
            queue,
            task_id,
            target,
            schedule_time=schedule_time,
            dispatch_deadline=deadline,
            retry=retry,
        )
        return protos.task_to_pb(str(queue), record, req.response_view)

    def GetTask(self, req: Any) -> Any:
        queue, task_id = parse_task(req.name)
        return protos.task_to_pb(str(queue), self._engine.get_task(queue, task_id), req.response_view)

    def ListTasks(self, req: Any) -> Any:
        queue = parse_queue(req.parent)
        size = _page_size(req.page_size, MAX_TASK_PAGE)
        records = self._engine.list_tasks(queue, after=_after(req.page_token), limit=size + 1)
        response = protos.Requests["ListTasksResponse"]()
        response.tasks.extend(protos.task_to_pb(str(queue), r, req.response_view) for r in records[:size])
        if len(records) > size:
            response.next_page_token = _page_token(records[size - 1].task_id)
        return response

    def DeleteTask(self, req: Any) -> Any:
        queue, task_id = parse_task(req.name)
        self._engine.delete_task(queue, task_id)
        return _EMPTY

    def RunTask(self, req: Any) -> Any:
        queue, task_id = parse_task(req.name)
        return protos.task_to_pb(str(queue), self._engine.run_task(queue, task_id), req.response_view)

    # -- google.cloud.location.Locations --

    def ListLocations(self, req: Any) -> Any:
        """The emulator's home location; queues may still be created in any well-formed location."""
        if not re.match(r"^projects/[A-Za-z0-9.:-]+$", req.name):
            raise errors.invalid('Location parent must be formatted: "projects/<PROJECT_ID>".')
        response = locations_pb2.ListLocationsResponse()
        for location in self._locations:
            response.locations.add(name=f"{req.name}/locations/{location}", location_id=location)
        return response

    def GetLocation(self, req: Any) -> Any:
        name = parse_location(req.name)
        return locations_pb2.Location(name=name, location_id=name.rsplit("/", 1)[1])
