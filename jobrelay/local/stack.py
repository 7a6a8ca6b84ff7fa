"""The local stack: the real Google emulators, our Cloud Tasks emulator and jobrelay's own services.

`Stack.start()` brings up, on free ports of 127.0.0.1:
  Firebase Auth emulator (firebase-tools, one for the three projects), Firestore emulator (with
  infra/firestore.rules), Pub/Sub emulator, Cloud Tasks emulator (queues from
  infra/classes.yaml for the three envs' projects), the API (functions-framework), the worker
  (gunicorn), the dead-letter service, the Elastic Muscle pool and the local Eventarc (new job
  requests as CloudEvents to the API, jobrelay.local.eventarc),
provisions topics and subscriptions, writes `local.json`, and then watches everything it started: a
service that dies is started again on the same port, as Cloud Run would; so is an emulator, which then
gets again what provisioning gave it (Pub/Sub topics and subscriptions; Cloud Tasks queues come from
its `--config`) but, like any emulator restart, none of its data. `stop()` stops everything it
started, by process group.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from jobrelay.infra_files import load_infra
from jobrelay.local import procs
from jobrelay.settings import ENV_NAMES, Infra

log = logging.getLogger("jobrelay.local.stack")

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("api", "worker", "deadletter", "muscle", "eventarc")
# What a process logs when the port it was given was taken in the meantime.
PORT_TAKEN = ("already in use", "Connection in use", "BindException", "is not open on")
AUTH_PORTS = ("auth", "auth_hub", "auth_logging")


class StackError(RuntimeError):
    """The stack cannot start as asked (not a port race that starting again would cure)."""


@dataclass
class StackOptions:
    state_dir: Path = REPO / ".jobrelay"
    infra_dir: Path = REPO / "infra"
    envs: tuple[str, ...] = ENV_NAMES
    lease_seconds: float = 30.0
    # Cloud Scheduler ticks (schedules and the maintenance pass); 0 turns the ticker off.
    tick_seconds: float = 5.0
    services: tuple[str, ...] = SERVICES
    # Job slots of the local Elastic Muscle VM (None: infra's muscle.total_slots).
    muscle_slots: int | None = None
    drain_grace_seconds: float = 10.0
    # Pub/Sub redelivery backoff of the pool subscriptions (the cloud's is 10 s).
    pool_min_backoff: int = 10
    # The job modules the services import (JOBRELAY_JOB_MODULES; None: the settings' default, `jobs`),
    # and directories put on the services' PYTHONPATH so a team's own package imports.
    job_modules: str | None = None
    pythonpath: tuple[Path, ...] = ()
    # A fixed port for the API (None: any free one); `jobrelay dev up` remembers one across restarts.
    api_port: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class Emulator:
    """An emulator the stack runs and restarts: how to start it (ready to serve), and what to create
    again on a fresh one. Adding an emulator to the stack is adding one of these."""

    name: str
    launch: Callable[[], procs.Proc]
    provision: Callable[[], None] | None = None
    restarts: int = 0


@dataclass
class Service:
    name: str
    port: int
    argv: list[str]
    env: dict[str, str]
    ready_path: str = "/healthz"
    proc: procs.Proc | None = None
    restarts: int = 0


class Stack:
    """Everything `jobrelay dev up` and the e2e tests run."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.infra: Infra = load_infra(self.options.infra_dir)
        self.state_dir = self.options.state_dir
        self.logs = self.state_dir / "logs"
        self.emulators: dict[str, procs.Proc] = {}  # the running process of each emulator
        self.emulator_specs: dict[str, Emulator] = {}
        self.services: dict[str, Service] = {}
        self.ports: dict[str, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the supervisor and a reload never restart the same process
        self.reloads = 0
        self.reload_problems: list[str] = []
        self._watch: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self.on_tick: list[Callable[[], object]] = []
        self.scheduler: Any = None
        self._saved_env: dict[str, str | None] = {}

    # -- addresses ---------------------------------------------------------------------------

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def key_file(self) -> Path:
        return self.state_dir / "oidc-key.pem"

    def client_env(self) -> dict[str, str]:
        """The variables a process needs to talk to this stack's emulators."""
        return {
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{self.ports['firestore']}",
            "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{self.ports['pubsub']}",
            "CLOUD_TASKS_EMULATOR_HOST": f"127.0.0.1:{self.ports['cloudtasks']}",
            "FIREBASE_AUTH_EMULATOR_HOST": self.auth_host,
        }

    @property
    def auth_host(self) -> str:
        """host:port of the Firebase Auth emulator."""
        return f"127.0.0.1:{self.ports['auth']}"

    @property
    def auth_project(self) -> str:
        """The Auth emulator's default project: where Firebase JS SDK sign-ins (API key, no project) land."""
        env = "dev" if "dev" in self.options.envs else self.options.envs[0]
        return self.infra.env(env).project

    def service_env(self) -> dict[str, str]:
        return {
            **self.client_env(),
            "JOBRELAY_MODE": "local",
            "JOBRELAY_ENVS": ",".join(self.options.envs),
            "JOBRELAY_INFRA_DIR": str(self.options.infra_dir),
            "JOBRELAY_WORKER_URL": self.url("worker"),
            "JOBRELAY_DEADLETTER_URL": self.url("deadletter"),
            "JOBRELAY_API_URL": self.url("api"),
            # Where a browser's sign-in lands (the operator console, jobrelay.console).
            "JOBRELAY_AUTH_EMULATOR_PROJECT": self.auth_project,
            "JOBRELAY_OIDC_CERTS_URL": f"{self.url('cloudtasks_http')}/certs",
            "JOBRELAY_SECRETS_BACKEND": "file",
            "JOBRELAY_SECRETS_DIR": str(self.state_dir / "secrets"),
            "JOBRELAY_LEASE_SECONDS": str(self.options.lease_seconds),
            "JOBRELAY_OIDC_KEY_FILE": str(self.key_file),
            "PYTHONUNBUFFERED": "1",
            **self._import_env(),
            **self.options.extra_env,
        }

    def _import_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.options.job_modules is not None:
            env["JOBRELAY_JOB_MODULES"] = self.options.job_modules
        if self.options.pythonpath:
            paths = [str(p.resolve()) for p in self.options.pythonpath]
            env["PYTHONPATH"] = os.pathsep.join([*paths, str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
        return env

    # -- start and stop ----------------------------------------------------------------------

    def start(self, attempts: int = 3) -> Stack:
        """Start everything; if a port chosen free was taken meanwhile, start again on new ports."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once()
            except RuntimeError as exc:
                if attempt == attempts or not any(m in str(exc) for m in PORT_TAKEN):
                    raise
                log.warning("a port was taken while the stack started (%s); starting again", exc)
                self._reset()
        raise AssertionError("unreachable")

    def _reset(self) -> None:
        self.emulators, self.emulator_specs, self.services, self.ports = {}, {}, {}, {}
        self._stop = threading.Event()
        self._watch = self._ticker = None
        self.on_tick = []

    def _start_once(self) -> Stack:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "secrets").mkdir(exist_ok=True)
        for env in self.options.envs:
            secret_file = self.state_dir / "secrets" / f"{env}.json"
            if not secret_file.exists():
                secret_file.write_text(json.dumps({"JOBRELAY_LOCAL_SECRET": f"local-{env}-secret-value"}))
        names = ("firestore", "pubsub", "cloudtasks", "cloudtasks_http", *AUTH_PORTS, *SERVICES)
        for name in names:  # every URL is known
            self.ports[name] = procs.free_port()
        if self.options.api_port is not None:
            if procs.port_open("127.0.0.1", self.options.api_port):
                raise StackError(
                    f"API port {self.options.api_port} is in use (another `jobrelay dev up`?); "
                    "stop it, or choose another port with --api-port"
                )
            self.ports["api"] = self.options.api_port
        try:
            self._saved_env = {k: os.environ.get(k) for k in self.client_env()}
            os.environ.update(self.client_env())
            from jobrelay import clients

            clients.reset()
            # The Auth emulator is the slowest to start: it is started first and awaited last.
            self.emulators["auth"] = self._launch_auth()
            for emulator in self._emulators():
                self.emulator_specs[emulator.name] = emulator
                if emulator.name != "auth":
                    self.emulators[emulator.name] = emulator.launch()
                if emulator.provision is not None:
                    emulator.provision()
            for name in self.options.services:
                self.services[name] = self._service(name)
                self._launch(self.services[name])
            for svc in self.services.values():
                self._wait_ready(svc)
            self._await_auth()
        except BaseException:
            self.stop()
            raise
        self._write_state()
        if "api" in self.services:
            from jobrelay.local.oidc import LocalSigner
            from jobrelay.local.scheduler import LocalScheduler

            self.scheduler = LocalScheduler(self.infra, self.options.envs, self.url("api"), LocalSigner(self.key_file))
            self.on_tick.append(self.scheduler.tick)
        self._watch = threading.Thread(target=self._supervise, name="stack-supervisor", daemon=True)
        self._watch.start()
        if self.options.tick_seconds > 0:
            self._ticker = threading.Thread(target=self._tick_loop, name="stack-ticker", daemon=True)
            self._ticker.start()
        log.info("local stack ready: api %s", self.url("api"))
        return self

    def _launch_auth(self) -> procs.Proc:
        """Start the Auth emulator without waiting for it (Node, ~10 s of CPU): `_await_auth` waits."""
        from jobrelay.local import authemu

        return authemu.launch(
            authemu.Ports(*(self.ports[n] for n in AUTH_PORTS)),
            project=self.auth_project,
            state_dir=self.state_dir,
            log_path=self.logs / "auth.log",
        )

    def _await_auth(self, proc: procs.Proc | None = None) -> procs.Proc:
        from jobrelay.local import authemu

        proc = proc or self.emulators["auth"]
        authemu.wait_ready(proc, self.ports["auth"])
        return proc

    def _emulators(self) -> list[Emulator]:
        from jobrelay.local import cloudtasks
        from jobrelay.local.provision import provision

        rules = self.options.infra_dir / "firestore.rules"

        def topics_and_subscriptions() -> None:
            provision(
                self.infra,
                list(self.options.envs),
                deadletter_url=self.url("deadletter"),
                pool_min_backoff=self.options.pool_min_backoff,
            )

        return [
            Emulator(
                "firestore",
                lambda: procs.start_firestore(
                    self.ports["firestore"],
                    rules=rules if rules.exists() else None,  # rules load at start, so a restart has them
                    log_path=self.logs / "firestore.log",
                ),
            ),
            Emulator(
                "pubsub",
                lambda: procs.start_pubsub(self.ports["pubsub"], log_path=self.logs / "pubsub.log"),
                provision=topics_and_subscriptions,
            ),
            Emulator(
                "cloudtasks",
                lambda: cloudtasks.launch(  # queues from --config; the signing key file is kept
                    self.ports["cloudtasks"],
                    self.ports["cloudtasks_http"],
                    config=self.options.infra_dir / "classes.yaml",
                    projects=[self.infra.env(e).project for e in self.options.envs],
                    location=self.infra.env(self.options.envs[0]).region,
                    key_file=self.key_file,
                    log_path=self.logs / "cloudtasks.log",
                ),
            ),
            # Users live in the emulator's memory: after a restart they are signed up again on first use.
            Emulator("auth", lambda: self._await_auth(self._launch_auth())),
        ]

    def _service(self, name: str) -> Service:
        port = self.ports[name]
        py = sys.executable
        env = {**self.service_env(), "PORT": str(port), "HOST": "127.0.0.1"}
        if name == "api":
            argv = [
                py,
                "-m",
                "functions_framework",
                "--target=api",
                f"--source={REPO / 'functions' / 'main.py'}",
                "--host=127.0.0.1",
                f"--port={port}",
            ]
        elif name == "worker":
            argv = [py, "-m", "services.worker"]
        elif name == "deadletter":
            argv = [py, "-m", "services.deadletter"]
        elif name == "muscle":
            argv = [py, "-m", "services.muscle"]
            env["JOBRELAY_DRAIN_GRACE_SECONDS"] = str(self.options.drain_grace_seconds)
            if self.options.muscle_slots is not None:
                env["JOBRELAY_MUSCLE_TOTAL_SLOTS"] = str(self.options.muscle_slots)
        elif name == "eventarc":
            argv = [py, "-m", "jobrelay.local.eventarc"]
        else:
            raise ValueError(f"unknown service {name}")
        return Service(name=name, port=port, argv=argv, env=env)

    def _launch(self, svc: Service) -> None:
        svc.proc = procs.start(svc.name, svc.argv, env=svc.env, log_path=self.logs / f"{svc.name}.log", cwd=REPO)

    def _wait_ready(self, svc: Service) -> None:
        url = f"http://127.0.0.1:{svc.port}{svc.ready_path}"
        procs.wait_until(
            lambda: requests.get(url, timeout=1).status_code == 200,
            timeout=60,
            what=f"{svc.name} service",
            proc=svc.proc,
        )

    def _supervise(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                self._supervise_once()

    def _supervise_once(self) -> None:
        for emulator in list(self.emulator_specs.values()):
            proc = self.emulators.get(emulator.name)
            if proc is not None and not proc.alive() and not self._stop.is_set():
                self._restart_emulator(emulator, proc)
        for svc in list(self.services.values()):
            if svc.proc is not None and not svc.proc.alive() and not self._stop.is_set():
                code = svc.proc.popen.returncode
                svc.proc.stop()
                svc.restarts += 1
                log.warning("%s exited with %s; starting it again (restart %d)", svc.name, code, svc.restarts)
                self._launch(svc)
                try:
                    self._wait_ready(svc)
                except RuntimeError as exc:
                    log.error("%s did not come back: %s", svc.name, exc)
                self._write_state()

    def reload(self) -> list[str]:
        """Restart the services on their ports (new code; job modules and infra/ read again).

        The emulators keep running, so local data stays. Returns the problems of services that did
        not come back (a job module that no longer imports, say); the supervisor keeps restarting
        those. `jobrelay dev reload` asks for this and reports the problems.
        """
        problems: list[str] = []
        with self._lock:
            log.info("reloading the services")
            for svc in self.services.values():
                if svc.proc is not None:
                    svc.proc.stop(timeout=15)
                self._launch(svc)
            for svc in self.services.values():
                try:
                    self._wait_ready(svc)
                except RuntimeError as exc:
                    problems.append(str(exc))
            self.reloads += 1
            self.reload_problems = problems
            self._write_state()
        return problems

    def _restart_emulator(self, emulator: Emulator, dead: procs.Proc) -> None:
        code = dead.popen.returncode
        dead.stop()
        emulator.restarts += 1
        log.warning(
            "%s emulator exited with %s; starting it again on port %s (restart %d); its data is gone",
            emulator.name,
            code,
            self.ports[emulator.name],
            emulator.restarts,
        )
        try:
            self.emulators[emulator.name] = emulator.launch()
            if emulator.provision is not None:
                emulator.provision()
        except Exception as exc:  # the next round of the supervisor tries again
            log.error("%s emulator did not come back: %s", emulator.name, exc)
            return
        self._write_state()

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.options.tick_seconds):
            for fn in self.on_tick:
                try:
                    fn()
                except Exception:
                    log.exception("local scheduler tick failed")

    def _write_state(self) -> None:
        state: dict[str, Any] = {
            "api": self.url("api"),
            "worker": self.url("worker") if "worker" in self.services else None,
            "deadletter": self.url("deadletter") if "deadletter" in self.services else None,
            "firestore": f"127.0.0.1:{self.ports['firestore']}",
            "pubsub": f"127.0.0.1:{self.ports['pubsub']}",
            "cloudtasks": f"127.0.0.1:{self.ports['cloudtasks']}",
            "cloudtasks_rest": self.url("cloudtasks_http"),  # the REST face: gcloud, firebase-admin
            "auth": {"host": self.auth_host, "project": self.auth_project},
            "oidc_certs": f"{self.url('cloudtasks_http')}/certs",
            "envs": {e: {"project": self.infra.env(e).project} for e in self.options.envs},
            "pids": {
                **{n: p.pid for n, p in self.emulators.items()},
                **{n: s.proc.pid for n, s in self.services.items() if s.proc is not None},
                "stack": os.getpid(),
            },
            "logs": str(self.logs),
            "reloads": self.reloads,
            "reload_problems": self.reload_problems,
        }
        tmp = self.state_dir / "local.json.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_dir / "local.json")

    def kill(self, name: str) -> int:
        """SIGKILL one service or emulator (a crash); the supervisor starts it again. Returns the old pid."""
        proc = self.emulators[name] if name in self.emulators else self.services[name].proc
        assert proc is not None
        pid = proc.pid
        proc.kill()
        return pid

    @contextlib.contextmanager
    def held(self, name: str) -> Iterator[None]:
        """Stop one service and keep it stopped inside the block (no restart), then start it again."""
        with self._lock:
            svc = self.services.pop(name)
            if svc.proc is not None:
                svc.proc.stop(timeout=15)
        try:
            yield
        finally:
            with self._lock:
                self._launch(svc)
                self.services[name] = svc
                self._wait_ready(svc)
                self._write_state()

    def wait_restarted(self, name: str, old_pid: int, timeout: float = 60) -> None:
        if name in self.emulator_specs:
            # A new process, alive, and written to local.json, which happens once it is provisioned.
            state = self.state_dir / "local.json"
            procs.wait_until(
                lambda: (
                    self.emulators[name].pid != old_pid
                    and self.emulators[name].alive()
                    and json.loads(state.read_text())["pids"][name] == self.emulators[name].pid
                ),
                timeout=timeout,
                what=f"{name} emulator restart",
            )
            return
        svc = self.services[name]
        procs.wait_until(
            lambda: (
                svc.proc is not None
                and svc.proc.pid != old_pid
                and svc.proc.alive()
                and requests.get(f"http://127.0.0.1:{svc.port}/healthz", timeout=1).ok
            ),
            timeout=timeout,
            what=f"{name} restart",
        )

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.join(5)
        if self._ticker is not None:
            self._ticker.join(5)
        for svc in reversed(list(self.services.values())):
            if svc.proc is not None:
                svc.proc.stop(timeout=15)
        for proc in reversed(list(self.emulators.values())):
            proc.stop()
        state = self.state_dir / "local.json"
        if state.exists():
            state.unlink()
        # Leave this process as it was: no emulator variables, no clients bound to stopped emulators.
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
        from jobrelay import clients

        clients.reset()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_forever(
    stack: Stack,
    *,
    reload_when: Callable[[], bool] = lambda: False,
    on_reload: Callable[[], object] | None = None,
) -> None:
    """Block until SIGINT/SIGTERM, then stop the stack; reload its services whenever `reload_when()`."""
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.2):
        if reload_when():
            for problem in stack.reload():
                log.error("after reload: %s", problem)
            if on_reload is not None:
                on_reload()
    stack.stop()
    time.sleep(0)
