"""Headless Chromium driven over the DevTools protocol, for the web client's e2e test.

The protocol runs over a pipe (`--remote-debugging-pipe`: Chromium reads commands on fd 3 and writes
answers on fd 4, each message JSON ended by a NUL byte), so no port is opened and no Python package
beyond the standard library is needed. Chromium runs in its own session; `close()` asks it to quit
and then kills whatever is left of that process group, by the pid we started.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("JOBRELAY_CHROMIUM", "/usr/bin/chromium"))
INSTALL_HINT = (
    "install it with `examples/web/install.sh` (runs `apt-get install -y chromium`), "
    "or point JOBRELAY_CHROMIUM at a Chromium binary"
)

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--remote-debugging-pipe",
)

# Runs in the child before Chromium: put our two pipe ends on fds 3 and 4, then exec Chromium's
# launcher (same pid; Debian's /usr/bin/chromium is a script that starts the browser as its child).
# A tiny exec trampoline instead of preexec_fn, which is unsafe in a process with threads.
_TRAMPOLINE = """
import fcntl, os, sys
r, w = (fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3])
os.dup2(r, 3); os.dup2(w, 4)
for fd in {r, w, int(sys.argv[1]), int(sys.argv[2])} - {3, 4}:
    os.close(fd)
os.execv(sys.argv[3], sys.argv[3:])
"""


class BrowserError(RuntimeError):
    pass


@dataclass
class Page:
    """One tab in its own browser context (cookies, storage and auth state are not shared)."""

    browser: Browser
    context_id: str
    target_id: str
    session_id: str
    console: list[str] = field(default_factory=list)

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 15) -> dict[str, Any]:
        return self.browser.send(method, params, session_id=self.session_id, timeout=timeout)

    def navigate(self, url: str, timeout: float = 20) -> None:
        """Open `url` and wait for its load event."""
        answer = self.send("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise BrowserError(f"cannot open {url}: {answer['errorText']}")
        self.wait_for(
            "location.href !== 'about:blank' && document.readyState === 'complete'",
            timeout=timeout,
            what=f"{url} loading",
        )

    def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        answer = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": await_promise},
        )
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression!r} threw: {text}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float, what: str) -> Any:
        """Evaluate `expression` until it is truthy; on timeout say what the page shows."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"page: {what} not seen after {timeout}s\n{self.describe()}")
            time.sleep(0.05)

    def describe(self) -> str:
        """The page's visible text and console, for failure messages."""
        try:
            text = self.evaluate("document.body ? document.body.innerText : ''")
        except BrowserError as exc:
            text = f"(unreadable: {exc})"
        return f"--- page text ---\n{text}\n--- console ---\n" + "\n".join(self.console[-30:])

    def _center(self, selector: str) -> tuple[float, float]:
        box = self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " if (!el) return null; el.scrollIntoView({block: 'center'});"
            " const r = el.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        if not box:
            raise BrowserError(f"no element {selector}\n{self.describe()}")
        return float(box[0]), float(box[1])

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre, as a user would."""
        x, y = self._center(selector)
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def fill(self, selector: str, text: str) -> None:
        """Replace a field's text by typing into it."""
        self.click(selector)
        self.evaluate(f"document.querySelector({json.dumps(selector)}).select()")
        self.send("Input.insertText", {"text": text})
        typed = self.evaluate(f"document.querySelector({json.dumps(selector)}).value")
        if typed != text:
            raise BrowserError(f"typed {text!r} into {selector} but it holds {typed!r}")

    def close(self) -> None:
        self.browser.send("Target.disposeBrowserContext", {"browserContextId": self.context_id})


class Browser:
    """A headless Chromium we started, and its DevTools pipe."""

    def __init__(self, popen: subprocess.Popen[bytes], to_chrome: int, from_chrome: int, log_path: Path) -> None:
        self.popen = popen
        self.log_path = log_path
        self._to = to_chrome
        self._from = from_chrome
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._listeners: dict[str, Callable[[str, dict[str, Any]], None]] = {}
        self._reader = threading.Thread(target=self._read, name="chromium-devtools", daemon=True)
        self._reader.start()

    @classmethod
    def launch(cls, user_data_dir: Path, log_path: Path, executable: Path = CHROMIUM) -> Browser:
        if not executable.exists():
            raise FileNotFoundError(f"Chromium is missing at {executable}: {INSTALL_HINT}")
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()
        argv = [
            sys.executable,
            "-c",
            _TRAMPOLINE,
            str(cmd_r),
            str(out_w),
            str(executable),
            *FLAGS,
            f"--user-data-dir={user_data_dir}",
            "about:blank",
        ]
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(cmd_r, out_w),
                start_new_session=True,
            )
        os.close(cmd_r)
        os.close(out_w)
        browser = cls(popen, cmd_w, out_r, log_path)
        try:
            browser.send("Browser.getVersion", timeout=30)
        except BaseException:
            browser.close()
            raise
        return browser

    @property
    def pid(self) -> int:
        return self.popen.pid

    # -- the protocol ---------------------------------------------------------------------------

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        timeout: float = 15,
    ) -> dict[str, Any]:
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id:
            msg["sessionId"] = session_id
        done = threading.Event()
        box: list[dict[str, Any]] = []
        self._waiting[msg_id] = (done, box)
        data = json.dumps(msg).encode() + b"\0"
        with self._lock:
            try:
                while data:
                    data = data[os.write(self._to, data) :]
            except OSError as exc:
                raise BrowserError(f"Chromium is gone ({exc}){self._log_tail()}") from exc
        if not done.wait(timeout):
            self._waiting.pop(msg_id, None)
            raise BrowserError(f"no answer to {method} in {timeout}s{self._log_tail()}")
        answer = box[0]
        if "error" in answer:
            raise BrowserError(f"{method} failed: {answer['error'].get('message')}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for raw in messages:
                self._dispatch(json.loads(raw))
        for done, box in list(self._waiting.values()):  # Chromium went away: wake every waiter
            box.append({"error": {"message": f"Chromium closed the DevTools pipe{self._log_tail()}"}})
            done.set()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if "id" in msg:
            waiter = self._waiting.pop(msg["id"], None)
            if waiter is not None:
                waiter[1].append(msg)
                waiter[0].set()
            return
        listener = self._listeners.get(msg.get("sessionId", ""))
        if listener is not None:
            listener(msg["method"], msg.get("params", {}))

    # -- pages ----------------------------------------------------------------------------------

    def new_page(self, url: str) -> Page:
        """Open `url` in a fresh browser context, with console output collected."""
        context_id = self.send("Target.createBrowserContext")["browserContextId"]
        target_id = self.send("Target.createTarget", {"url": "about:blank", "browserContextId": context_id})["targetId"]
        session_id = self.send("Target.attachToTarget", {"targetId": target_id, "flatten": True})["sessionId"]
        page = Page(self, context_id, target_id, session_id)
        self._listeners[session_id] = lambda method, params: _collect_console(page, method, params)
        page.send("Runtime.enable")
        page.send("Page.enable")
        page.navigate(url)
        return page

    # -- stopping -------------------------------------------------------------------------------

    def close(self) -> None:
        """Ask Chromium to quit, then kill what is left of its process group."""
        if self.popen.poll() is None:
            # It may close the pipe before answering; the group is killed below either way.
            with contextlib.suppress(BrowserError):
                self.send("Browser.close", timeout=5)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)
        # Zygotes and renderers share the group and exit on their own within a second or two of the
        # browser; only what is left after that is killed.
        deadline = time.monotonic() + 5
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        if self.popen.poll() is None:
            self.popen.wait(5)
        for fd in (self._to, self._from):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._reader.join(5)

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.popen.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-15:]
        except OSError:
            return ""
        return "\n--- chromium log ---\n" + "\n".join(lines) if lines else ""


def _collect_console(page: Page, method: str, params: dict[str, Any]) -> None:
    if method == "Runtime.consoleAPICalled":
        args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
        page.console.append(f"console.{params.get('type')}: {args}")
    elif method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        text = details.get("exception", {}).get("description") or details.get("text")
        page.console.append(f"exception: {text}")
