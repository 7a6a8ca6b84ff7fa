"""The gRPC face: `google.cloud.tasks.v2.CloudTasks` (and the Locations mixin) over the engine.

The google-cloud-tasks package ships message classes but no servicer bases, so each method is a
generic unary handler that (de)serializes the raw protobuf classes. The official client, given
`CloudTasksGrpcTransport(channel=grpc.insecure_channel(HOST_PORT))`, talks to it unchanged.
IAM, CMEK, BufferTask and the batch methods are not registered and answer UNIMPLEMENTED.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any, NoReturn

import grpc
from google.cloud.location import locations_pb2
from google.protobuf import empty_pb2

from jobrelay.local.cloudtasks import errors, protos
from jobrelay.local.cloudtasks.engine import Engine, QueueState
from jobrelay.local.cloudtasks.errors import CloudTasksError
from jobrelay.local.cloudtasks.names import parse_location, parse_queue, parse_task

log = logging.getLogger("jobrelay.cloudtasks")

SERVICE = "google.cloud.tasks.v2.CloudTasks"
LOCATIONS_SERVICE = "google.cloud.location.Locations"
MAX_QUEUE_PAGE = 9800
MAX_TASK_PAGE = 1000
_STATE_FILTER = re.compile(r"^\s*state\s*[:=]\s*\"?(RUNNING|PAUSED)\"?\s*$")
_EMPTY = empty_pb2.Empty()


def _page_token(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode()).decode()


def _after(token: str) -> str:
    if not token:
        return ""
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

    def __init__(self, engine: Engine, locations: Sequence[str], clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._locations = tuple(locations)
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
        record = self._engine.create_task(
            queue,
            task_id,
            protos.target_from_pb(pb),
            schedule_time=protos.schedule_from_pb(pb, self._clock()),
            dispatch_deadline=protos.deadline_from_pb(pb),
            retry=protos.retry_from_pb(pb),
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


_TASKS_METHODS = (
    "ListQueues", "GetQueue", "CreateQueue", "UpdateQueue", "DeleteQueue", "PurgeQueue", "PauseQueue",
    "ResumeQueue", "ListTasks", "GetTask", "CreateTask", "DeleteTask", "RunTask",
)  # fmt: skip


def _abort(context: grpc.ServicerContext, code: str, message: str) -> NoReturn:
    context.abort(grpc.StatusCode[code], message)
    raise AssertionError("context.abort returns only by raising")


def _unary(method: Callable[[Any], Any], request_type: Any) -> grpc.RpcMethodHandler:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(request)
        except CloudTasksError as exc:
            _abort(context, exc.code.value, exc.message)
        except Exception:
            log.exception("%s failed", getattr(method, "__name__", "rpc"))
            _abort(context, "INTERNAL", "emulator error; see its log")

    return grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=request_type.FromString,
        response_serializer=lambda m: m.SerializeToString(),
    )


def handlers(service: CloudTasksService) -> list[grpc.GenericRpcHandler]:
    tasks = {name: _unary(getattr(service, name), protos.Requests[f"{name}Request"]) for name in _TASKS_METHODS}
    locations = {
        "ListLocations": _unary(service.ListLocations, locations_pb2.ListLocationsRequest),
        "GetLocation": _unary(service.GetLocation, locations_pb2.GetLocationRequest),
    }
    return [
        grpc.method_handlers_generic_handler(SERVICE, tasks),
        grpc.method_handlers_generic_handler(LOCATIONS_SERVICE, locations),
    ]


def serve(engine: Engine, host_port: str, *, locations: Sequence[str], threads: int = 8) -> grpc.Server:
    """Start the gRPC server on `host_port`; fails if the port is taken (no SO_REUSEPORT sharing)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cloudtasks-grpc"),
        options=[("grpc.so_reuseport", 0)],
    )
    server.add_generic_rpc_handlers(handlers(CloudTasksService(engine, locations)))
    if server.add_insecure_port(host_port) == 0:
        raise OSError(f"cannot listen on {host_port}")
    server.start()
    return server
