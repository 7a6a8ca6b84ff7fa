"""The gRPC face: `google.cloud.tasks.v2.CloudTasks` (and the Locations mixin) over the engine.

The google-cloud-tasks package ships message classes but no servicer bases, so each method is a
generic unary handler that (de)serializes the raw protobuf classes and calls `CloudTasksService`
(service.py, shared with the REST face). The official client, given
`CloudTasksGrpcTransport(channel=grpc.insecure_channel(HOST_PORT))`, talks to it unchanged.
IAM, CMEK, BufferTask and the batch methods are not registered and answer UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent import futures
from typing import Any, NoReturn

import grpc
from google.cloud.location import locations_pb2

from jobrelay.local.cloudtasks import protos
from jobrelay.local.cloudtasks.errors import CloudTasksError
from jobrelay.local.cloudtasks.service import CloudTasksService

log = logging.getLogger("jobrelay.cloudtasks")

SERVICE = "google.cloud.tasks.v2.CloudTasks"
LOCATIONS_SERVICE = "google.cloud.location.Locations"


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


def serve(service: CloudTasksService, host_port: str, *, threads: int = 8) -> grpc.Server:
    """Start the gRPC server on `host_port`; fails if the port is taken (no SO_REUSEPORT sharing)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cloudtasks-grpc"),
        options=[("grpc.so_reuseport", 0)],
    )
    server.add_generic_rpc_handlers(handlers(service))
    if server.add_insecure_port(host_port) == 0:
        raise OSError(f"cannot listen on {host_port}")
    server.start()
    return server
