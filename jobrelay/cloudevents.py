"""Firestore document events as Eventarc delivers them: CloudEvents 1.0 in HTTP binary content mode.

Eventarc calls the API with one HTTP POST per event. The event's attributes travel as headers
(`ce-id`, `ce-source` = `//firestore.googleapis.com/projects/{project}/databases/{database}`,
`ce-specversion` = `1.0`, `ce-type` = `google.cloud.firestore.document.v1.created`, `ce-subject` =
`documents/{path}`, `ce-time`, `ce-dataschema`, and Firestore's extensions `ce-database`,
`ce-namespace`, `ce-document` = `{path}`, `ce-location`, `ce-project`); `Content-Type` is the trigger's
`event_data_content_type`. The body is `google.events.cloud.firestore.v1.DocumentEventData`
(googleapis/google-cloudevents, proto/google/events/cloud/firestore/v1/data.proto): `value` = 1,
`old_value` = 2, `update_mask` = 3, each document being {name = 1, fields = 2, create_time = 3,
update_time = 4} with Firestore's own `Value`, so the message is built here on firestore_v1's own
Document type: the same bytes, no extra library. Protobuf (`application/protobuf`, what Terraform
configures) and its JSON form (`application/json`) are both read.

`parse` turns a request into a `DocumentEvent` or raises BadRequest naming what is wrong;
`encode` builds the same request (the local stack's Eventarc, jobrelay.local.eventarc, sends it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import proto
from google.cloud.firestore_v1.types import common, document
from google.protobuf import json_format, message
from google.protobuf.timestamp_pb2 import Timestamp

from jobrelay.errors import BadRequest

CREATED = "google.cloud.firestore.document.v1.created"
SPEC_VERSION = "1.0"
DATASCHEMA = (
    "https://github.com/googleapis/google-cloudevents/blob/main/proto/google/events/cloud/firestore/v1/data.proto"
)
PROTOBUF = "application/protobuf"
JSON = "application/json"
SOURCE = re.compile(r"//firestore\.googleapis\.com/projects/([a-z][a-z0-9-]{4,28}[a-z0-9])/databases/([^/]{1,63})\Z")
# Headers of the binary content mode this module reads and writes (lower case, as jobrelay.wsgi keeps them).
REQUIRED = ("ce-id", "ce-source", "ce-specversion", "ce-type")
MAX_HEADER = 2048

# A package of our own: google-events' classes (the same messages) may be loaded in the same process.
__protobuf__ = proto.module(package="jobrelay.events.firestore.v1", manifest={"DocumentEventData"})


class DocumentEventData(proto.Message):  # type: ignore[misc]
    """google.events.cloud.firestore.v1.DocumentEventData, field for field."""

    value = proto.Field(proto.MESSAGE, number=1, message=document.Document)
    old_value = proto.Field(proto.MESSAGE, number=2, message=document.Document)
    update_mask = proto.Field(proto.MESSAGE, number=3, message=common.DocumentMask)


@dataclass(frozen=True)
class NotJson:
    """A Firestore value with no JSON form (bytes, a reference, a geo point): kept so it can be refused."""

    kind: str


@dataclass(frozen=True)
class DocumentEvent:
    """One Firestore document event: its CloudEvent attributes and the document after the change."""

    id: str
    type: str
    project: str
    database: str
    document: str  # the path under documents/, e.g. job_requests/abc
    fields: dict[str, Any]
    create_time: datetime | None = None
    update_time: datetime | None = None
    time: str | None = None
    content_type: str = PROTOBUF
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def collection(self) -> str:
        return self.document.rsplit("/", 1)[0] if "/" in self.document else ""

    @property
    def doc_id(self) -> str:
        return self.document.rsplit("/", 1)[-1]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None and len(value) > MAX_HEADER:
        raise BadRequest(f"CloudEvent header {name} is over {MAX_HEADER} characters", {"header": name})
    return value


def parse(headers: Mapping[str, str], body: bytes) -> DocumentEvent:
    """The event of an Eventarc request (`headers` with lower-case names), or BadRequest naming the problem."""
    missing = [h for h in REQUIRED if not _header(headers, h)]
    if missing:
        raise BadRequest(f"not a CloudEvent in binary content mode: missing {', '.join(missing)}", {"missing": missing})
    if headers["ce-specversion"] != SPEC_VERSION:
        raise BadRequest(f"ce-specversion {headers['ce-specversion'][:20]!r} is not {SPEC_VERSION}")
    source = SOURCE.match(headers["ce-source"])
    if source is None:
        raise BadRequest(
            "ce-source must be //firestore.googleapis.com/projects/PROJECT/databases/DATABASE",
            {"header": "ce-source"},
        )
    project, database = source.groups()
    content_type = (headers.get("content-type") or "").split(";")[0].strip().lower()
    data = _data(content_type, body)
    if not data.value.name:
        raise BadRequest("the event carries no document (DocumentEventData.value is empty)", {"field": "value"})
    prefix = f"projects/{project}/databases/{database}/documents/"
    if not data.value.name.startswith(prefix):
        raise BadRequest(f"the event's document is not in {prefix}", {"field": "value.name"})
    path = data.value.name[len(prefix) :]
    for name, expected in (("ce-document", path), ("ce-subject", f"documents/{path}")):
        given = _header(headers, name)
        if given is not None and given != expected:
            raise BadRequest(f"{name} does not name the event's document", {"header": name})
    pb = DocumentEventData.pb(data).value
    return DocumentEvent(
        id=headers["ce-id"],
        type=headers["ce-type"],
        project=project,
        database=database,
        document=path,
        fields={k: decode(v) for k, v in pb.fields.items()},
        create_time=_time(pb, "create_time"),
        update_time=_time(pb, "update_time"),
        time=_header(headers, "ce-time"),
        content_type=content_type,
        attributes={k[3:]: v for k, v in headers.items() if k.startswith("ce-")},
    )


def _data(content_type: str, body: bytes) -> Any:
    if not body:
        raise BadRequest("the event has no body: DocumentEventData was expected")
    try:
        if content_type == PROTOBUF:
            return DocumentEventData.deserialize(body)
        if content_type == JSON:
            return DocumentEventData.from_json(body, ignore_unknown_fields=True)
    except (message.DecodeError, json_format.ParseError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise BadRequest(f"the body is not a DocumentEventData in {content_type}: {str(exc)[:200]}") from exc
    raise BadRequest(
        f"Content-Type {content_type[:60]!r} is not {PROTOBUF} or {JSON} (the trigger's event_data_content_type)",
        {"header": "content-type"},
    )


def _time(pb: Any, name: str) -> datetime | None:
    return getattr(pb, name).ToDatetime(tzinfo=UTC) if pb.HasField(name) else None


def decode(v: Any) -> Any:
    """A Firestore Value (protobuf) as Python: JSON's types, datetime for timestamps, NotJson otherwise."""
    kind = v.WhichOneof("value_type")
    if kind in (None, "null_value"):
        return None
    if kind == "map_value":
        return {k: decode(x) for k, x in v.map_value.fields.items()}
    if kind == "array_value":
        return [decode(x) for x in v.array_value.values]
    if kind == "timestamp_value":
        return v.timestamp_value.ToDatetime(tzinfo=UTC)
    if kind in ("boolean_value", "integer_value", "double_value", "string_value"):
        return getattr(v, kind)
    return NotJson(kind.removesuffix("_value"))


def encode(value: Any) -> document.Value:
    """Python (what a DocumentSnapshot holds) as a Firestore Value."""
    if value is None:
        return document.Value(null_value=0)
    if isinstance(value, bool):
        return document.Value(boolean_value=value)
    if isinstance(value, int):
        return document.Value(integer_value=value)
    if isinstance(value, float):
        return document.Value(double_value=value)
    if isinstance(value, str):
        return document.Value(string_value=value)
    if isinstance(value, bytes):
        return document.Value(bytes_value=value)
    if isinstance(value, datetime):
        ts = Timestamp()
        ts.FromDatetime(value.astimezone(UTC))
        return document.Value(timestamp_value=ts)
    if isinstance(value, dict):
        return document.Value(map_value=document.MapValue(fields={k: encode(x) for k, x in value.items()}))
    if isinstance(value, list | tuple):
        return document.Value(array_value=document.ArrayValue(values=[encode(x) for x in value]))
    path = getattr(value, "_document_path", None)  # a DocumentReference
    if isinstance(path, str):
        return document.Value(reference_value=path)
    if hasattr(value, "latitude") and hasattr(value, "longitude"):
        return document.Value(geo_point_value={"latitude": value.latitude, "longitude": value.longitude})
    raise TypeError(f"no Firestore value for {type(value).__name__}")


def encode_event(
    *,
    event_id: str,
    project: str,
    path: str,
    fields: Mapping[str, Any],
    create_time: datetime,
    update_time: datetime,
    location: str,
    database: str = "(default)",
    content_type: str = PROTOBUF,
) -> tuple[dict[str, str], bytes]:
    """The headers and body Eventarc sends for a `document.created` event of `path` (binary content mode)."""
    name = f"projects/{project}/databases/{database}/documents/{path}"
    doc = document.Document(name=name, fields={k: encode(v) for k, v in fields.items()})
    for attr, at in (("create_time", create_time), ("update_time", update_time)):
        ts = Timestamp()
        ts.FromDatetime(at.astimezone(UTC))
        setattr(doc, attr, ts)
    data = DocumentEventData(value=doc)
    body = DocumentEventData.serialize(data) if content_type == PROTOBUF else DocumentEventData.to_json(data).encode()
    headers = {
        "Content-Type": content_type,
        "ce-id": event_id,
        "ce-source": f"//firestore.googleapis.com/projects/{project}/databases/{database}",
        "ce-specversion": SPEC_VERSION,
        "ce-type": CREATED,
        "ce-subject": f"documents/{path}",
        "ce-time": create_time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "ce-dataschema": DATASCHEMA,
        "ce-database": database,
        "ce-namespace": "(default)",
        "ce-document": path,
        "ce-location": location,
        "ce-project": project,
    }
    return headers, body
