"""The web client example (examples/web) for the e2e test: build it when stale, serve it, allow its origin."""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "examples" / "web"
DIST = WEB / "dist"
OUTPUTS = ("index.html", "main.js", "style.css")
INSTALL_HINT = "run `examples/web/install.sh` once (it runs `npm ci` in examples/web)"


SOURCES = ("package.json", "package-lock.json", "build.mjs", "index.html", "style.css")


def _inputs() -> list[Path]:
    # The page bundles @jobrelay/client from its source (examples/web/build.mjs).
    library = sorted((REPO / "clients" / "web" / "src").rglob("*"))
    return [WEB / n for n in SOURCES] + sorted((WEB / "src").rglob("*")) + library


def is_stale() -> bool:
    outputs = [DIST / n for n in OUTPUTS]
    if not all(p.exists() for p in outputs):
        return True
    built = min(p.stat().st_mtime for p in outputs)
    return any(p.stat().st_mtime > built for p in _inputs() if p.is_file())


def build() -> None:
    """`npm ci` if node_modules is missing, then `npm run build` if dist/ is missing or stale."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not on PATH: the web client is built with Node 20 and npm; " + INSTALL_HINT)
    modules = WEB / "node_modules"
    if not ((modules / ".bin" / "esbuild").exists() and (modules / "firebase").is_dir()):
        _run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], "npm ci (needs the npm registry once)")
    if is_stale():
        _run([npm, "run", "build"], "npm run build")


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, cwd=WEB, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{what} failed in {WEB} ({done.returncode}); {INSTALL_HINT}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test reads the page, not the access log

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


class StaticServer:
    """dist/ over HTTP on a free port of 127.0.0.1, in a thread of this process."""

    def __init__(self, root: Path = DIST) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="web-static", daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> StaticServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def infra_allowing(origin: str, env: str, dest: Path) -> Path:
    """A copy of infra/ whose `env` also lists `origin` in app_origins (the API's CORS allow-list)."""
    shutil.copytree(REPO / "infra", dest)
    path = dest / "environments.yaml"
    data = yaml.safe_load(path.read_text())
    data["environments"][env]["app_origins"].append(origin)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest
