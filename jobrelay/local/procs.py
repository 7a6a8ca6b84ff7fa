"""Start and stop the local stack's processes: free ports, readiness, clean stops by process id.

Every process is started in its own session (process group) so that a wrapper's children (the
gcloud emulators start Java under a shell) stop with it; stopping signals the group it created.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests

FIRESTORE_JAR = Path("/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar")
PUBSUB_JAR_DIR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


@dataclass
class Proc:
    """A process we started, known by its pid, stopped by its process group."""

    name: str
    argv: Sequence[str]
    popen: subprocess.Popen[bytes]
    log_path: Path | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Signal the process group, wait, then SIGKILL what is left. Returns the exit code."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        else:
            # The leader is gone; make sure no child of its group survives it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL the whole group at once (a crash, for tests)."""
        self.stop(timeout=5, sig=signal.SIGKILL)


def start(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    cwd: Path | None = None,
) -> Proc:
    """Start `argv` in a new session; output goes to `log_path` (or is discarded)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    log: IO[bytes] | None = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("ab")
    popen = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log if log is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
        env=full_env,
        cwd=cwd,
        start_new_session=True,
    )
    return Proc(name=name, argv=list(argv), popen=popen, log_path=log_path, _log=log)


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, proc: Proc | None = None) -> None:
    """Poll `check` until it is true; fail with `what` (and the log tail) on timeout or process death."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{what}: process exited with {proc.popen.returncode}{_tail(proc)}")
        try:
            if check():
                return
        except (OSError, requests.RequestException):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f}s{_tail(proc)}")


def _tail(proc: Proc | None) -> str:
    if proc is None or proc.log_path is None or not proc.log_path.exists():
        return ""
    lines = proc.log_path.read_text(errors="replace").splitlines()[-20:]
    return "\n--- last lines of " + str(proc.log_path) + " ---\n" + "\n".join(lines)


def java() -> str:
    return os.environ.get("JAVA", "java")


def start_firestore(port: int, *, rules: Path | None = None, log_path: Path | None = None) -> Proc:
    """The Firestore emulator from the Google Cloud CLI, run as its Java class (stops cleanly on SIGTERM)."""
    argv = [
        java(),
        "-Duser.language=en",
        "-cp",
        str(FIRESTORE_JAR),
        "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
        "start",
        "--host=127.0.0.1",
        f"--port={port}",
    ]
    if rules is not None:
        argv.append(f"--rules={rules.resolve()}")
    proc = start("firestore", argv, log_path=log_path)
    _ready_or_stopped(proc, lambda: requests.get(f"http://127.0.0.1:{port}/", timeout=1).ok, what="Firestore emulator")
    return proc


def start_pubsub(port: int, *, log_path: Path | None = None) -> Proc:
    """The Pub/Sub emulator from the Google Cloud CLI, run from its jar."""
    jars = sorted(PUBSUB_JAR_DIR.glob("cloud-pubsub-emulator-*.jar"))
    if not jars:
        raise RuntimeError(f"Pub/Sub emulator jar not found under {PUBSUB_JAR_DIR}")
    argv = [java(), "-jar", str(jars[-1]), "--host=127.0.0.1", f"--port={port}"]
    proc = start("pubsub", argv, log_path=log_path)
    _ready_or_stopped(proc, lambda: port_open("127.0.0.1", port), what="Pub/Sub emulator")
    return proc


def _ready_or_stopped(proc: Proc, check: Callable[[], bool], *, what: str, timeout: float = 60) -> None:
    """Wait for `proc` to be ready; if it never is, stop it before failing, so nothing is left running."""
    try:
        wait_until(check, timeout=timeout, what=what, proc=proc)
    except BaseException:
        proc.stop()
        raise
