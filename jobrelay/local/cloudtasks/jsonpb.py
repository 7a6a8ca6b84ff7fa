"""JSON <-> protobuf for the REST face, as Google's API front end transcodes it.

Reading is strict the way the real front end is: an unknown field, a wrong type, a malformed
Duration or Timestamp, bad base64 or broken JSON is INVALID_ARGUMENT with the front end's own words
("Invalid JSON payload received. Unknown name "x" at 'task': Cannot find field.", "Invalid value at
'task.dispatch_deadline' (type.googleapis.com/google.protobuf.Duration), Field 'dispatchDeadline',
Illegal duration format; duration must end with 's'"), every problem of a body reported at once,
and `null` meaning "not set". Locations use proto field names, as the front end's do. Writing is
proto3 JSON: camelCase names, defaults left out, Duration "10s", Timestamp RFC 3339 in UTC, bytes
base64, enums by name (or by number, for `$alt=json;enum-encoding=int`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

_WKT_DURATION = "google.protobuf.Duration"
_WKT_TIMESTAMP = "google.protobuf.Timestamp"
_WKT_FIELD_MASK = "google.protobuf.FieldMask"
_WKT = {_WKT_DURATION, _WKT_TIMESTAMP, _WKT_FIELD_MASK}
_MAX_DURATION_SECONDS = 315_576_000_000
_INT32 = (-(2**31), 2**31 - 1)
_UINT32 = (0, 2**32 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)
_TIMESTAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$")
_ZONE = re.compile(r"(Z|z|[+-]\d{2}:\d{2})$")
_TYPE_NAMES = {
    FieldDescriptor.TYPE_INT32: "TYPE_INT32", FieldDescriptor.TYPE_INT64: "TYPE_INT64",
    FieldDescriptor.TYPE_UINT32: "TYPE_UINT32", FieldDescriptor.TYPE_UINT64: "TYPE_UINT64",
    FieldDescriptor.TYPE_SINT32: "TYPE_SINT32", FieldDescriptor.TYPE_SINT64: "TYPE_SINT64",
    FieldDescriptor.TYPE_FIXED32: "TYPE_FIXED32", FieldDescriptor.TYPE_FIXED64: "TYPE_FIXED64",
    FieldDescriptor.TYPE_SFIXED32: "TYPE_SFIXED32", FieldDescriptor.TYPE_SFIXED64: "TYPE_SFIXED64",
    FieldDescriptor.TYPE_DOUBLE: "TYPE_DOUBLE", FieldDescriptor.TYPE_FLOAT: "TYPE_FLOAT",
    FieldDescriptor.TYPE_BOOL: "TYPE_BOOL", FieldDescriptor.TYPE_STRING: "TYPE_STRING",
    FieldDescriptor.TYPE_BYTES: "TYPE_BYTES", FieldDescriptor.TYPE_ENUM: "TYPE_ENUM",
}  # fmt: skip
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: _INT32, FieldDescriptor.TYPE_SINT32: _INT32, FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_UINT32: _UINT32, FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_INT64: _INT64, FieldDescriptor.TYPE_SINT64: _INT64, FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: _UINT64, FieldDescriptor.TYPE_FIXED64: _UINT64,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Violation:
    """One problem with a request: where (a proto field path, None at the root) and what."""

    field: str | None
    description: str


class BadRequest(Exception):
    """The request cannot be read; the caller answers INVALID_ARGUMENT with these violations."""

    def __init__(self, violations: Iterable[Violation]) -> None:
        self.violations = tuple(violations)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return "\n".join(v.description for v in self.violations)


# -- reading ---------------------------------------------------------------------------------------


def loads(raw: bytes) -> Any:
    """Parse a request body; an empty one is `{}`. Broken JSON is a BadRequest with a caret under the spot."""
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _syntax("Invalid UTF-8 string.") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise _syntax("Message too deep. Max recursion depth reached.") from None
    except json.JSONDecodeError as exc:
        reason = _syntax_reason(exc, text)
        start = max(0, exc.pos - 20)
        snippet = text[start : exc.pos + 20].replace("\n", " ")
        described = f"Invalid JSON payload received. {reason}\n{snippet}\n{' ' * (exc.pos - start)}^"
        raise BadRequest([Violation(None, described)]) from None
    except ValueError:  # an integer past Python's digit limit for int()
        raise _syntax("Number is too long.") from None


def _syntax(reason: str) -> BadRequest:
    return BadRequest([Violation(None, f"Invalid JSON payload received. {reason}")])


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError("Expecting value", name, 0)  # NaN/Infinity are not JSON


def _syntax_reason(exc: json.JSONDecodeError, text: str) -> str:
    if exc.doc != text:  # a bare NaN / Infinity
        return "Unexpected token."
    if exc.msg.startswith("Unterminated string") or exc.pos >= len(text.rstrip()):
        return "Unexpected end of string."
    if exc.msg == "Expecting ',' delimiter":
        return (
            "Expected , or } after key:value pair."
            if _innermost(text, exc.pos) == "{"
            else ("Expected , or ] after array value.")
        )
    if exc.msg == "Expecting ':' delimiter":
        return "Expected : between key:value pair."
    if exc.msg.startswith("Expecting property name"):
        return "Expected an object key or }."
    if exc.msg == "Extra data":
        return "Parsing terminated before end of input."
    if exc.msg.startswith(("Invalid \\escape", "Invalid \\u", "Invalid control character")):
        return "Invalid escape sequence."
    return "Unexpected token."


def _innermost(text: str, pos: int) -> str:
    """The bracket that is open at `pos` ('{' or '['), skipping strings."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text[:pos]:
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append(ch)
        elif ch in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else "{"


@cache
def _fields(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    """A message's fields by proto name and by JSON name (both are accepted)."""
    table: dict[str, FieldDescriptor] = {}
    for field in descriptor.fields:
        table[field.name] = field
        table[field.json_name] = field
    return table


def merge(data: Any, message: Any, *, at: str = "") -> None:
    """Set `message`'s fields from parsed JSON; every problem found is raised together."""
    problems: list[Violation] = []
    if isinstance(data, dict):
        _merge_object(data, message, at, problems)
    else:
        problems.append(_unknown_name("", at, "Root element must be a message."))
    if problems:
        raise BadRequest(problems)


def _merge_object(data: dict[str, Any], message: Any, loc: str, problems: list[Violation]) -> None:
    table = _fields(message.DESCRIPTOR)
    oneofs: dict[str, str] = {}
    for key, value in data.items():
        field = table.get(key)
        if field is None:
            problems.append(_unknown_name(key, loc, "Cannot find field."))
            continue
        if value is None:  # null is "not set", for every field type
            continue
        oneof = field.containing_oneof
        if oneof is not None:
            if oneof.name in oneofs:
                problems.append(
                    _invalid(loc, "oneof", f"oneof field '{oneof.name}' is already set. Cannot set '{key}'")
                )
                continue
            oneofs[oneof.name] = key
        _merge_field(message, field, key, value, loc, problems)


def _merge_field(message: Any, field: FieldDescriptor, key: str, value: Any, loc: str, out: list[Violation]) -> None:
    path = f"{loc}.{field.name}" if loc else field.name
    kind = field.message_type
    if kind is not None and kind.GetOptions().map_entry:
        if isinstance(value, list):
            out.append(_invalid(path, "Map", f"Cannot bind a list to map for field '{key}'."))
        elif not isinstance(value, dict):
            out.append(_invalid(path, f"type.googleapis.com/{kind.full_name}", _shown(value)))
        else:
            _merge_map(getattr(message, field.name), kind, value, path, out)
        return
    if field.is_repeated:
        items = value if isinstance(value, list) else [value]
        container = getattr(message, field.name)
        for index, item in enumerate(items):
            if item is None:
                continue
            item_path = f"{path}[{index}]"
            if kind is not None:
                _merge_message(container.add(), kind, key, item, loc, item_path, out)
            else:
                scalar = _scalar(field, item, item_path, out)
                if scalar is not None:
                    container.append(scalar)
        return
    if isinstance(value, list):
        out.append(_unknown_name(key, loc, "Proto field is not repeating, cannot start list."))
        return
    if kind is not None:
        _merge_message(getattr(message, field.name), kind, key, value, loc, path, out)
        return
    if isinstance(value, dict):
        out.append(_invalid(loc, field.name, "Starting an object on a scalar field"))
        return
    scalar = _scalar(field, value, path, out)
    if scalar is not None:
        setattr(message, field.name, scalar)


def _merge_message(
    target: Any, kind: Descriptor, key: str, value: Any, loc: str, path: str, out: list[Violation]
) -> None:
    if kind.full_name in _WKT:
        reason = _well_known(target, kind.full_name, value)
        if reason is not None:
            out.append(_invalid(path, f"type.googleapis.com/{kind.full_name}", f"Field '{key}', {reason}"))
        return
    if not isinstance(value, dict):
        out.append(_invalid(path, f"type.googleapis.com/{kind.full_name}", _shown(value)))
        return
    target.SetInParent()  # `"retryConfig": {}` is present, as the front end sees it
    _merge_object(value, target, path, out)


def _merge_map(container: Any, entry: Descriptor, data: dict[str, Any], path: str, out: list[Violation]) -> None:
    value_field = entry.fields_by_name["value"]
    for index, (key, value) in enumerate(data.items()):
        if value is None:
            continue
        if value_field.message_type is not None:  # no Cloud Tasks map has message values
            out.append(_invalid(f"{path}[{index}].value", "Map", "Message-valued maps are not supported."))
            continue
        scalar = _scalar(value_field, value, f"{path}[{index}].value", out)
        if scalar is not None:
            container[key] = scalar


def _scalar(field: FieldDescriptor, value: Any, path: str, out: list[Violation]) -> Any:
    """The value for a scalar field, or None after recording why it cannot be one."""
    kind = field.type
    result: Any = None
    if kind in _INT_RANGES:
        result = _integer(value, _INT_RANGES[kind])
    elif kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        result = _number(value)
    elif kind == FieldDescriptor.TYPE_BOOL:
        result = value if isinstance(value, bool) else {"true": True, "false": False}.get(value)
    elif kind == FieldDescriptor.TYPE_STRING:
        result = value if isinstance(value, str) else None
    elif kind == FieldDescriptor.TYPE_BYTES:
        if isinstance(value, str):
            decoded = _base64(value)
            if decoded is None:
                out.append(_invalid(path, "TYPE_BYTES", f"Base64 decoding failed for {_shown(value)}"))
                return None
            return decoded
    elif kind == FieldDescriptor.TYPE_ENUM:
        result = _enum(field, value)
    if result is None:
        out.append(_invalid(path, _TYPE_NAMES.get(kind, "TYPE_UNKNOWN"), _shown(value)))
    return result


def _integer(value: Any, bounds: tuple[int, int]) -> int | None:
    if isinstance(value, bool):
        return None
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"-?\d{1,20}", value.strip()):  # int() refuses 4300+ digits
        number = int(value.strip())
    if number is None or not bounds[0] <= number <= bounds[1]:
        return None
    return number


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        special = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
        if value in special:
            return special[value]
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _enum(field: FieldDescriptor, value: Any) -> int | None:
    enum = field.enum_type
    if isinstance(value, str):
        named = enum.values_by_name.get(value)
        if named is not None:
            return int(named.number)
        number = _integer(value, _INT32)
        return number if number is not None and number in enum.values_by_number else None
    number = _integer(value, _INT32)
    return number if number is not None and number in enum.values_by_number else None


def _base64(text: str) -> bytes | None:
    """Standard or URL-safe alphabet, padding optional (both are accepted by the front end)."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    if not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", cleaned) or len(cleaned.rstrip("=")) % 4 == 1:
        return None
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except binascii.Error:
        return None


def _well_known(target: Any, name: str, value: Any) -> str | None:
    """Set a Duration/Timestamp/FieldMask from its JSON string; the reason it cannot be, else None."""
    if name == _WKT_DURATION:
        if not isinstance(value, str):
            return f"Invalid data type for duration, value is {_plain(value)}"
        return _duration(target, value)
    if name == _WKT_TIMESTAMP:
        if not isinstance(value, str):
            return f"Invalid data type for timestamp, value is {_plain(value)}"
        return _timestamp(target, value)
    if not isinstance(value, str):
        return f"Invalid data type for field mask, value is {_plain(value)}"
    target.SetInParent()
    target.paths.extend(_snake_path(p) for p in value.split(",") if p.strip())
    return None


def _duration(target: Any, text: str) -> str | None:
    if not text.endswith("s"):
        return "Illegal duration format; duration must end with 's'"
    body = text[:-1]
    sign = -1 if body.startswith("-") else 1
    whole, _, fraction = body.lstrip("-").partition(".")
    if not whole.isdigit():
        return "Invalid duration format, failed to parse seconds"
    if fraction and (not fraction.isdigit() or len(fraction) > 9):
        return "Invalid duration format, failed to parse nano seconds"
    if len(whole) > 12:  # more seconds than any Duration holds (and than int() reads past 4300 digits)
        return "Duration value exceeds limits"
    seconds, nanos = int(whole), int(fraction.ljust(9, "0")) if fraction else 0
    if seconds > _MAX_DURATION_SECONDS:
        return "Duration value exceeds limits"
    target.seconds, target.nanos = sign * seconds, sign * nanos
    return None


def _timestamp(target: Any, text: str) -> str | None:
    if not _ZONE.search(text):
        return "Illegal timestamp format; timestamps must end with 'Z' or have a valid timezone offset."
    match = _TIMESTAMP.match(text)
    if match is None:
        return f"Invalid time format: {text}"
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7) or "", match.group(8).upper()
    offset = dt.timedelta(0)
    if zone != "Z":
        offset = dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])) * (1 if zone[0] == "+" else -1)
    try:
        when = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC) - offset
    except (ValueError, OverflowError):
        return f"Invalid time format: {text}"
    target.seconds = math.floor((when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds())
    target.nanos = int(fraction.ljust(9, "0")) if fraction else 0
    return None


# -- query parameters -------------------------------------------------------------------------------


def bind_query(params: Iterable[tuple[str, str]], message: Any, *, closed: bool = False) -> None:
    """Set request fields from query parameters (`pageSize=10`, `responseView=FULL`, `updateMask=a,b`).

    `closed`: the method's body is "*", so no field can come from the query string.
    """
    problems: list[Violation] = []
    for name, value in params:
        target, field = message, None
        if closed:
            problems.append(_unbound(name))
            continue
        parts = name.split(".")
        for i, part in enumerate(parts):
            field = _fields(target.DESCRIPTOR).get(part)
            if field is None:
                break
            if i < len(parts) - 1:
                if field.message_type is None or field.is_repeated:
                    field = None
                    break
                target = getattr(target, field.name)
        if field is None:
            problems.append(_unbound(name))
            continue
        path = ".".join(_snake(p) for p in parts)
        loc = path.rpartition(".")[0]
        if field.message_type is not None and field.message_type.full_name not in _WKT:
            problems.append(
                Violation(
                    path,
                    f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query parameter. '
                    f"'{name}' is a message type. Query parameters cannot be messages.",
                )
            )
            continue
        _merge_field(target, field, parts[-1], value, loc, problems)
    if problems:
        raise BadRequest(problems)


def _unbound(name: str) -> Violation:
    return Violation(
        None,
        f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query parameter. '
        f"Field '{name}' could not be found in request message.",
    )


# -- writing ---------------------------------------------------------------------------------------


def to_json(message: Any, *, int_enums: bool = False) -> Any:
    """The message as the real API writes it (integral doubles as integers, as its printer does)."""
    return _tidy(json_format.MessageToDict(message, use_integers_for_enums=int_enums))


def _tidy(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _tidy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    return value


# -- messages in the front end's words --------------------------------------------------------------


def _unknown_name(key: str, loc: str, reason: str) -> Violation:
    where = f" at '{loc}'" if loc else ""
    return Violation(loc or None, f'Invalid JSON payload received. Unknown name "{_snake(key)}"{where}: {reason}')


def _invalid(loc: str, type_name: str, value: str) -> Violation:
    where = f" at '{loc}'" if loc else ""
    return Violation(loc or None, f"Invalid value{where} ({type_name}), {value}")


def _shown(value: Any) -> str:
    """A JSON value as the front end quotes it in messages: strings in double quotes."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return _plain(value)


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"))[:200]


def _snake(name: str) -> str:
    """camelCase -> snake_case, as the front end names unknown fields in its messages."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _snake_path(path: str) -> str:
    return ".".join(_snake(part) for part in path.strip().split("."))
