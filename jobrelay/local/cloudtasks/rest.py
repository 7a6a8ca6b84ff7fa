"""The REST face: Cloud Tasks v2 over HTTP/1.1 and JSON, on the same service as the gRPC face.

Routes are the API's HTTP rules (`GET /v2/{parent=projects/*/locations/*}/queues`, `POST
/v2/{name=projects/*/locations/*/queues/*}:pause`, ...): the path binds the resource name, the body
and the query string bind the rest of the request as the rules say, and the answer is the response
message in proto3 JSON. Errors are Google's JSON error shape, `{"error": {"code", "message",
"status"}}`, with the codes the gRPC face gives. `gcloud tasks` (with
CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDTASKS) and `@google-cloud/tasks` with `fallback: true` use it
unchanged. The Firebase emulator's dialect is served too, for firebase-admin's `task_queue()` under
CLOUD_TASKS_EMULATOR_HOST: `POST /projects/{p}/locations/{l}/queues/{q}/tasks` without `/v2`,
an empty `url` filled with the function's address, and the answer `{"task": {...}}` whose name
starts with "/" (what firebase-admin strips). No caller is authenticated.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from google.cloud.location import locations_pb2

from jobrelay.local.cloudtasks import jsonpb, protos
from jobrelay.local.cloudtasks.errors import CloudTasksError, Code
from jobrelay.local.cloudtasks.service import CloudTasksService

log = logging.getLogger("jobrelay.cloudtasks.rest")

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # Google's front ends refuse bigger payloads
TOO_LARGE = f"Request payload size exceeds the limit: {MAX_REQUEST_BYTES} bytes."
DEFAULT_FUNCTIONS_URL = "http://127.0.0.1:5001"  # the Firebase functions emulator's default address
_STATUS = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501,
    "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}  # fmt: skip
# Standard query parameters every Google API takes; `fields` (partial responses) is accepted, not applied.
_SYSTEM = {
    "alt", "$alt", "prettyPrint", "$prettyPrint", "fields", "$fields", "key", "access_token", "oauth_token",
    "quotaUser", "$quotaUser", "userIp", "callback", "$callback", "upload_protocol", "uploadType", "$.xgafv",
    "$ct", "$unique",
}  # fmt: skip
_JSON = "application/json; charset=UTF-8"


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP rule: verb, the resource-name variable's pattern, literal segments after it, custom verb."""

    verb: str
    pattern: tuple[str, ...]
    suffix: tuple[str, ...]
    custom: str
    rpc: str
    binds: str  # the request field the variable fills: "parent", "name", "queue.name"
    body: str | None  # None (query string only), "*" (the whole request), or one field
    emulated: bool = True


def _rule(verb: str, template: str, rpc: str, body: str | None = None, *, emulated: bool = True) -> Route:
    """`_rule("GET", "{parent=projects/*/locations/*}/queues", "ListQueues")`."""
    path, _, custom = template.partition(":")
    variable, _, rest = path.partition("}")
    binds, _, pattern = variable.lstrip("{").partition("=")
    suffix = tuple(s for s in rest.split("/") if s)
    return Route(verb, tuple(pattern.split("/")), suffix, custom, rpc, binds, body, emulated)


_QUEUE = "projects/*/locations/*/queues/*"
_TASK = f"{_QUEUE}/tasks/*"
ROUTES: tuple[Route, ...] = (
    _rule("GET", "{parent=projects/*/locations/*}/queues", "ListQueues"),
    _rule("POST", "{parent=projects/*/locations/*}/queues", "CreateQueue", "queue"),
    _rule("GET", f"{{name={_QUEUE}}}", "GetQueue"),
    _rule("PATCH", f"{{queue.name={_QUEUE}}}", "UpdateQueue", "queue"),
    _rule("DELETE", f"{{name={_QUEUE}}}", "DeleteQueue"),
    _rule("POST", f"{{name={_QUEUE}}}:purge", "PurgeQueue", "*"),
    _rule("POST", f"{{name={_QUEUE}}}:pause", "PauseQueue", "*"),
    _rule("POST", f"{{name={_QUEUE}}}:resume", "ResumeQueue", "*"),
    _rule("GET", f"{{parent={_QUEUE}}}/tasks", "ListTasks"),
    _rule("POST", f"{{parent={_QUEUE}}}/tasks", "CreateTask", "*"),
    _rule("GET", f"{{name={_TASK}}}", "GetTask"),
    _rule("DELETE", f"{{name={_TASK}}}", "DeleteTask"),
    _rule("POST", f"{{name={_TASK}}}:run", "RunTask", "*"),
    _rule("GET", "{name=projects/*}/locations", "ListLocations"),
    _rule("GET", "{name=projects/*/locations/*}", "GetLocation"),
    # Methods of the API the emulator does not offer (nor does its gRPC face): 501, not 404.
    _rule("POST", f"{{resource={_QUEUE}}}:getIamPolicy", "GetIamPolicy", "*", emulated=False),
    _rule("POST", f"{{resource={_QUEUE}}}:setIamPolicy", "SetIamPolicy", "*", emulated=False),
    _rule("POST", f"{{resource={_QUEUE}}}:testIamPermissions", "TestIamPermissions", "*", emulated=False),
    _rule("POST", f"{{queue={_QUEUE}}}/tasks/*:buffer", "BufferTask", "*", emulated=False),
    _rule("POST", f"{{queue={_QUEUE}}}/tasks:buffer", "BufferTask", "*", emulated=False),
    _rule("GET", "{name=projects/*/locations/*/cmekConfig}", "GetCmekConfig", emulated=False),
    _rule("PATCH", "{cmek_config.name=projects/*/locations/*/cmekConfig}", "UpdateCmekConfig", "cmek_config",
          emulated=False),
)  # fmt: skip
# The Firebase emulator's paths (no /v2): what firebase-admin calls under CLOUD_TASKS_EMULATOR_HOST.
FIREBASE_ROUTES: tuple[Route, ...] = (
    _rule("POST", f"{{parent={_QUEUE}}}/tasks", "CreateTask", "*"),
    _rule("DELETE", f"{{name={_TASK}}}", "DeleteTask"),
)
_REQUESTS: dict[str, Any] = {
    **{r.rpc: protos.Requests[f"{r.rpc}Request"] for r in ROUTES if r.emulated and "Location" not in r.rpc},
    "ListLocations": locations_pb2.ListLocationsRequest,
    "GetLocation": locations_pb2.GetLocationRequest,
}


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = field(default=(("Content-Type", _JSON),))


@dataclass(frozen=True, slots=True)
class _Format:
    int_enums: bool = False
    pretty: bool = True


class RestApi:
    """HTTP requests in, `Reply` out; the HTTP server (sideport.py) only moves bytes."""

    def __init__(self, service: CloudTasksService, *, functions_url: str = DEFAULT_FUNCTIONS_URL) -> None:
        self._service = service
        self._functions_url = functions_url.rstrip("/")

    def handle(self, verb: str, target: str, body: bytes) -> Reply:
        path, _, query = target.partition("?")
        fmt = _Format()
        try:
            params = parse_qsl(query, keep_blank_values=True)
            fmt = _format(params)
            return self._route(verb, path, [(k, v) for k, v in params if k not in _SYSTEM], body, fmt)
        except jsonpb.BadRequest as exc:
            return error_reply(400, "INVALID_ARGUMENT", exc.message, fmt, violations=exc.violations)
        except CloudTasksError as exc:
            return error_reply(_STATUS[exc.code.value], exc.code.value, exc.message, fmt)
        except Exception:  # a bug here must not take the server down; the caller sees INTERNAL, as on gRPC
            log.exception("%s %s failed", verb, path)
            return error_reply(500, "INTERNAL", "emulator error; see its log", fmt)

    def _route(self, verb: str, path: str, params: list[tuple[str, str]], body: bytes, fmt: _Format) -> Reply:
        segments = path.split("/")[1:]
        firebase = not segments or segments[0] != "v2"
        routes = FIREBASE_ROUTES if firebase else ROUTES
        if not firebase:
            segments = segments[1:]
        custom = ""
        if segments and ":" in segments[-1]:
            segments[-1], _, custom = segments[-1].partition(":")
        found = _match(routes, segments, custom)
        if not found:
            raise CloudTasksError(Code.NOT_FOUND, f"The requested URL {path} was not found on this server.")
        route_name = {r.verb: (r, name) for r, name in found}
        if verb not in route_name:
            raise CloudTasksError(Code.NOT_FOUND, f"The requested URL {path} was not found on this server.")
        route, name = route_name[verb]
        if not route.emulated:
            raise CloudTasksError(Code.UNIMPLEMENTED, f"google.cloud.tasks.v2.CloudTasks.{route.rpc} is not emulated.")
        request = self._request(route, name, params, body, firebase)
        response = getattr(self._service, route.rpc)(request)
        document = jsonpb.to_json(response, int_enums=fmt.int_enums)
        if firebase and route.rpc == "CreateTask":
            document = {"task": {**document, "name": "/" + document["name"]}}
        return Reply(200, _dumps(document, fmt))

    def _request(self, route: Route, name: str, params: list[tuple[str, str]], body: bytes, firebase: bool) -> Any:
        request = _REQUESTS[route.rpc]()
        if route.body is not None:
            data = jsonpb.loads(body)
            if route.body == "*":
                jsonpb.merge(data, request)
            else:
                jsonpb.merge(data, getattr(request, route.body), at=route.body)
        jsonpb.bind_query(params, request, closed=route.body == "*")
        holder = request
        *parents, last = route.binds.split(".")
        for part in parents:
            holder = getattr(holder, part)
        setattr(holder, last, name)  # the path wins over a name in the body, as the rules bind it
        if firebase and route.rpc == "CreateTask":
            self._fill_function_url(request)
        return request

    def _fill_function_url(self, request: Any) -> None:
        """firebase-admin leaves `url` empty in emulator mode; the task goes to the function of the queue's name."""
        task, parts = request.task, request.parent.split("/")
        if task.HasField("http_request") and not task.http_request.url and len(parts) == 6:
            # The parent is validated by CreateTask itself; a bad one is refused before this URL is used.
            task.http_request.url = f"{self._functions_url}/{parts[1]}/{parts[3]}/{parts[5]}"


def _match(routes: Sequence[Route], raw: list[str], custom: str) -> list[tuple[Route, str]]:
    """Every route whose template fits the raw path segments, with the decoded resource name it binds."""
    found = []
    for route in routes:
        width = len(route.pattern)
        if route.custom != custom or len(raw) != width + len(route.suffix):
            continue
        head, tail = raw[:width], raw[width:]
        if not all(_fits(p, s) for p, s in zip(route.pattern, head, strict=True)):
            continue
        if not all(_fits(p, s) for p, s in zip(route.suffix, tail, strict=True)):
            continue
        found.append((route, "/".join(unquote(s) for s in head)))
    return found


def _fits(pattern: str, segment: str) -> bool:
    return bool(segment) if pattern == "*" else segment == pattern


def _format(params: list[tuple[str, str]]) -> _Format:
    values = dict(params)
    alt = values.get("$alt", values.get("alt", "json")).replace(" ", "")
    if alt not in ("json", "json;enum-encoding=int"):
        raise CloudTasksError(Code.INVALID_ARGUMENT, f'Invalid value for "alt": "{alt}". The emulator answers JSON.')
    pretty = values.get("$prettyPrint", values.get("prettyPrint", "true")).lower() not in ("false", "0")
    return _Format(int_enums=alt.endswith("=int"), pretty=pretty)


def _dumps(document: Any, fmt: _Format) -> bytes:
    if fmt.pretty:
        return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def error_reply(
    status: int,
    code: str,
    message: str,
    fmt: _Format | None = None,
    *,
    violations: Sequence[jsonpb.Violation] = (),
) -> Reply:
    """Google's JSON error: {"error": {"code", "message", "status"[, "details"]}}."""
    error: dict[str, Any] = {"code": status, "message": message, "status": code}
    if violations:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [
                    {**({"field": v.field} if v.field else {}), "description": v.description} for v in violations
                ],
            }
        ]
    return Reply(status, _dumps({"error": error}, fmt or _Format()))


def too_large() -> Reply:
    return error_reply(400, "INVALID_ARGUMENT", TOO_LARGE)
