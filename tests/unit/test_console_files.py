"""The console's files and configuration as the API serves them: only built files, safe types, no way out.

tests/e2e/test_console.py serves the real build from the local stack's API to headless Chromium.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobrelay.api import Api
from jobrelay.console import CONTENT_TYPES, asset_path
from jobrelay.indexes import SHARDS
from jobrelay.wsgi import Request, Response
from tests.fakes import fake_deployment


@pytest.fixture
def root(tmp_path: Path) -> Path:
    dist = tmp_path / "dist" / "console"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>console</title>")
    (dist / "main.js").write_text("console.log(1)")
    (dist / "style.css").write_text("body{}")
    (dist / "assets" / "logo.svg").write_text("<svg/>")
    (dist / ".hidden.js").write_text("secret")
    (dist / "notes.py").write_text("print(1)")
    (tmp_path / "dist" / "outside.js").write_text("outside")
    (tmp_path / "secret.txt").write_text("secret")
    (dist / "link.txt").symlink_to(tmp_path / "secret.txt")
    return dist


@pytest.fixture
def api(root: Path, monkeypatch: pytest.MonkeyPatch) -> Api:
    monkeypatch.setenv("JOBRELAY_CONSOLE_DIR", str(root))
    return Api(fake_deployment(("dev", "stg", "prod")))


def get(api: Api, path: str) -> Response:
    return api.handle(Request(method="GET", path=path, headers={}))


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/console/", "text/html; charset=utf-8"),
        ("/console/index.html", "text/html; charset=utf-8"),
        ("/console/main.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
        ("/console/assets/logo.svg", "image/svg+xml"),
        ("/console/assets/", None),  # no index there
    ],
)
def test_built_files_are_served_with_their_type(api: Api, root: Path, path: str, kind: str | None) -> None:
    r = get(api, path)
    if kind is None:
        assert r.status == 404
        return
    assert r.status == 200 and r.headers["Content-Type"] == kind and r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.raw == (root / (path.removeprefix("/console/") or "index.html")).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/console/../outside.js",
        "/console/assets/../../outside.js",
        "/console/..%2Foutside.js",
        "/console/%2e%2e/outside.js",
        "/console/.hidden.js",
        "/console/notes.py",
        "/console/link.txt",  # a symbolic link out of the build
        "/console//etc/passwd",
        "/console/assets\\..\\..\\outside.js",
        "/console/main.js\x00.css",
        "/console/" + "a/" * 20 + "x.js",
        "/console/" + "a" * 300 + ".js",
    ],
)
def test_nothing_outside_the_build_or_of_another_kind_is_served(api: Api, path: str) -> None:
    r = get(api, path)
    assert r.status == 404 and r.raw is None, (path, r.status)
    assert "secret" not in r.data().decode() and "outside" not in r.data().decode()


def test_asset_path_refuses_names_before_touching_the_disk(tmp_path: Path) -> None:
    assert asset_path(tmp_path / "missing", "index.html") is None
    assert all(ext.startswith(".") for ext in CONTENT_TYPES)


def test_the_page_has_a_content_security_policy(api: Api) -> None:
    r = get(api, "/console/")
    assert "script-src 'self'" in r.headers["Content-Security-Policy"] and r.headers["X-Frame-Options"] == "DENY"


def test_console_without_slash_redirects(api: Api) -> None:
    r = get(api, "/console")
    assert r.status == 308 and r.headers["Location"] == "/console/"


def test_an_unbuilt_console_says_how_to_build_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBRELAY_CONSOLE_DIR", str(tmp_path / "nothing"))
    r = get(Api(fake_deployment()), "/console/")
    assert r.status == 404 and "console/install.sh" in r.body["error"]["message"]


def test_config_names_every_env_in_promotion_order(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FIREBASE_AUTH_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST"):
        monkeypatch.delenv(var, raising=False)
    r = get(api, "/console/config.json")
    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = r.body
    assert [(e["name"], e["promotes_to"], e["served"]) for e in body["envs"]] == [
        ("dev", "stg", True),
        ("stg", "prod", True),
        ("prod", None, True),
    ]
    assert body["emulator"] is None  # a cloud process: no emulator, Google sign-in
    assert body["envs"][0]["firebase"]["authDomain"] == "singular-dream-dev.firebaseapp.com"
    assert body["index_shards"] == SHARDS  # the console lists everyone's jobs one query per shard


def test_local_config_names_the_emulators(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobrelay.console import Console
    from jobrelay.infra_files import load_infra
    from jobrelay.process_settings import RuntimeSettings

    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8085")
    monkeypatch.delenv("JOBRELAY_AUTH_EMULATOR_PROJECT", raising=False)
    console = Console(RuntimeSettings(mode="local", envs="dev,stg"), load_infra(), ("dev", "stg"))
    body = console.config()
    emulators = {"auth": "127.0.0.1:9099", "firestore": "127.0.0.1:8085", "auth_project": "singular-dream-dev"}
    assert body["emulator"] == emulators
    assert [e["served"] for e in body["envs"]] == [True, True, False]
    assert "http://127.0.0.1:9099" in console.csp()
