"""`script`: run an allow-listed command on the Elastic Muscle pool.

The payload names a script of `infra/scripts.yaml` and gives its args; both are checked against the
allow-list when the job is submitted, so a command that is not listed never becomes a job, and so is
who may run it (the script's `roles`, or operators only; `needs` below). The
command runs without a shell, in its own process group, with the env's secrets and the args in its
environment; its output streams line by line into the job's log tail; its exit code decides the
outcome; a cancel or the timeout kills the whole process group.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from jobrelay import Fatal, JobCancelled, JobContext, Retry, job_type
from jobrelay.infra_files import load_infra
from jobrelay.registry import Needs
from jobrelay.settings import Infra, Script

PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
BUILTIN_PLACEHOLDERS = ("project", "env")
KILL_GRACE_SECONDS = 5.0
# Only these variables of the pool's own environment reach a script; the rest are the env's secrets.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


def _infra(info: ValidationInfo) -> Infra:
    ctx = info.context or {}
    infra = ctx.get("infra")
    return infra if isinstance(infra, Infra) else load_infra()


class ScriptPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    script: Annotated[str, Field(min_length=1, max_length=100)]
    args: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _allowed(self, info: ValidationInfo) -> ScriptPayload:
        infra = _infra(info)
        script = infra.scripts.get(self.script)
        if script is None:
            raise ValueError(
                f"script {self.script!r} is not on the allow-list (infra/scripts.yaml); "
                f"allowed: {', '.join(sorted(infra.scripts))}"
            )
        env = (info.context or {}).get("env")
        if env is not None and env not in script.envs:
            raise ValueError(f"script {self.script!r} may not run in env {env}")
        declared = {a.name: a for a in script.args}
        unknown = sorted(set(self.args) - set(declared))
        if unknown:
            raise ValueError(f"script {self.script!r} takes no arg {unknown[0]!r}; args: {sorted(declared)}")
        for arg in script.args:
            value = self.args.get(arg.name)
            if value is None:
                if arg.required:
                    raise ValueError(f"script {self.script!r} needs arg {arg.name!r}")
                continue
            if not re.fullmatch(arg.pattern, value):
                raise ValueError(f"arg {arg.name!r} = {value!r} does not match {arg.pattern}")
        return self


def command_line(script: Script, args: dict[str, str], *, env: str, project: str) -> list[str]:
    """The argv to run: the allow-listed command with `{name}` filled from validated values."""
    values = {**{a.name: "" for a in script.args}, **args, "env": env, "project": project}

    def fill(part: str) -> str:
        return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), part)

    return [fill(part) for part in script.command]


def _kill(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the process group, then SIGKILL what is left after the grace."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def needs(payload: ScriptPayload, infra: Infra) -> Needs:
    """Who may run this script: its roles, any user, or operators only (the allow-list says)."""
    spec = infra.scripts[payload.script]
    return Needs(f"script {payload.script!r}", roles=spec.roles, anyone=spec.any_user)


@job_type("script", payload=ScriptPayload, job_class="D", heavy=True, needs=needs)
def script(payload: ScriptPayload, ctx: JobContext) -> dict[str, Any]:
    """Runs an allow-listed command; its output is the job's log tail, its exit code the outcome."""
    infra = load_infra(os.environ.get("JOBRELAY_INFRA_DIR") or None)
    spec = infra.scripts[payload.script]
    argv = command_line(spec, payload.args, env=ctx.env, project=ctx.project)
    environ = {k: v for k, v in os.environ.items() if k in PASSED_THROUGH}
    environ.update(ctx.secrets)
    environ.update({f"JOBRELAY_ARG_{k.upper()}": v for k, v in payload.args.items()})
    environ.update(
        {
            "JOBRELAY_ENV": ctx.env,
            "JOBRELAY_PROJECT": ctx.project,
            "JOBRELAY_JOB_ID": ctx.job_id,
            "PYTHONUNBUFFERED": "1",
        }
    )
    ctx.log(f"$ {' '.join(argv[:2])} ... ({payload.script})")
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environ,
        cwd=spec.cwd,
        start_new_session=True,
        bufsize=1,
    )
    lines = 0

    def pump() -> None:
        nonlocal lines
        assert proc.stdout is not None
        for line in proc.stdout:
            lines += 1
            ctx.log(line.rstrip("\n"))

    reader = threading.Thread(target=pump, name=f"script-{ctx.job_id}", daemon=True)
    reader.start()
    deadline = started + spec.timeout_seconds
    while True:
        try:  # ends the job as soon as the script exits; checks cancel and the deadline 5 times a second
            proc.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            pass
        if ctx.cancelled:
            _kill(proc)
            reader.join(2)
            raise JobCancelled(f"script {payload.script} killed on request")
        if time.monotonic() > deadline:
            _kill(proc)
            reader.join(2)
            raise Fatal(f"script {payload.script} ran past its {spec.timeout_seconds}s limit and was killed")
    reader.join(5)
    code = proc.returncode
    elapsed = round(time.monotonic() - started, 3)
    if code != 0:
        message = f"script {payload.script} exited with {code} after {elapsed}s"
        if code in spec.retryable_exit_codes:
            raise Retry(message)
        raise Fatal(message)
    return {"script": payload.script, "exit_code": code, "lines": lines, "seconds": elapsed}
