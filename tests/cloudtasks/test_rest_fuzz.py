"""Seeded random requests against the REST face in process (real engine, no network): never a 500.

Bodies are built from the request messages' own fields, with values of every JSON type in every
place, so the reader meets wrong types, nesting, nulls, oneofs, maps and well-known types everywhere.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest

from jobrelay.local.cloudtasks.dispatch import Outcome
from jobrelay.local.cloudtasks.engine import Engine
from jobrelay.local.cloudtasks.rest import _REQUESTS, ROUTES, RestApi
from jobrelay.local.cloudtasks.service import CloudTasksService

PARENT = "projects/fuzz/locations/us-central1"
GOOD = {"projects": "fuzz", "locations": "us-central1", "queues": "q", "tasks": "t"}
BAD = ["bad_q!", "a%2Fb", "x%20y", "%00", "-", "a" * 600, "%E2%82%AC"]
QUERIES = ["", "?alt=json", "?pageSize=2", "?pageSize=x", "?responseView=FULL", "?updateMask=a,b",
           "?$alt=json;enum-encoding=int", "?filter=state:PAUSED", "?pageToken=%%", "?x=1", "?pageSize=" + "9" * 5000,
           "?responseView=" + "1" * 5000, "?updateMask=" + "a." * 3000]  # fmt: skip
SCALARS: list[object] = [None, 0, -1, 2**40, 1.5, "", "x", "10s", "2030-01-01T00:00:00Z", "e30=", True, [], {},
                         [1, "a"], "9" * 5000, 10**4000, 1e308, "-Infinity", "NaN", "9" * 30 + "s", "9" * 5000 + "s",
                         "99999-01-01T00:00:00Z"]  # fmt: skip


@pytest.fixture(scope="module")
def api() -> Iterator[RestApi]:
    engine = Engine(lambda _delivery: Outcome(200, None, "", 0.0), workers=2)
    engine.start()
    service = CloudTasksService(engine, ["us-central1"], create_queues=True)
    api = RestApi(service)
    api.handle("POST", f"/v2/{PARENT}/queues", json.dumps({"name": f"{PARENT}/queues/q"}).encode())
    api.handle("POST", f"/v2/{PARENT}/queues/q:pause", b"{}")
    yield api
    engine.stop()


def _value(rng: random.Random, descriptor, depth: int) -> object:
    if descriptor is not None and depth < 4 and rng.random() < 0.6:
        fields = list(descriptor.fields)
        chosen = rng.sample(fields, k=min(len(fields), rng.randint(0, 4)))
        body = {(f.json_name if rng.random() < 0.7 else f.name): _value(rng, f.message_type, depth + 1) for f in chosen}
        if rng.random() < 0.2:
            body["unknownField"] = 1
        return body
    return rng.choice(SCALARS)


def test_random_requests_never_get_a_500(api):
    rng = random.Random(22)
    statuses: dict[int, int] = {}
    for _ in range(3000):
        route = rng.choice(ROUTES)
        verb = route.verb if rng.random() < 0.9 else rng.choice(["GET", "POST", "PATCH", "DELETE", "PUT"])
        segments = []
        for i, part in enumerate(route.pattern):
            if part != "*":
                segments.append(part)
            else:
                segments.append(GOOD.get(route.pattern[i - 1], "x") if rng.random() < 0.8 else rng.choice(BAD))
        name = "/".join(segments)
        suffix = "/".join(route.suffix)
        path = f"/v2/{name}" + (f"/{suffix}" if suffix else "") + (f":{route.custom}" if route.custom else "")
        if rng.random() < 0.1:
            path = path.removeprefix("/v2")
        query = rng.choice(QUERIES)
        request_type = _REQUESTS.get(route.rpc)
        descriptor = request_type.DESCRIPTOR if request_type is not None else None
        choice = rng.random()
        if choice < 0.02:
            body = rng.choice([b"[" * 50_000, b'{"a": ' + b"1" * 5000 + b"}", b'"' + b"\\" * 1000])
        elif choice < 0.7:
            body = json.dumps(_value(rng, descriptor, 0)).encode()
        elif choice < 0.85:
            body = json.dumps(_value(rng, descriptor, 0)).encode()[: rng.randint(0, 40)]
        else:
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 30)))
        reply = api.handle(verb, path + query, body)
        statuses[reply.status] = statuses.get(reply.status, 0) + 1
        assert reply.status < 500 or reply.status == 501, (verb, path + query, body, reply.body)
        assert isinstance(json.loads(reply.body), dict)  # always a JSON object
    assert statuses.get(200, 0) > 100 and statuses.get(400, 0) > 100, statuses  # both outcomes were reached
