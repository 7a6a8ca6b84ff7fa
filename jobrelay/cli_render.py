"""How the `jobrelay` CLI shows things: job summaries, tables, the live watch line, JSON.

Everything the API returns is user data, so it reaches rich as `Text` (never as markup): a job
message with brackets in it prints as written.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

STATUS_STYLES = {
    "queued": "blue",
    "running": "cyan",
    "retrying": "magenta",
    "succeeded": "green",
    "failed": "red",
    "dead_lettered": "bold red",
    "cancelled": "yellow",
    "skipped": "yellow",
    "waiting": "cyan",
}
LOG_TAIL_LINES = 10


def console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr); wide when piped, so ids and messages are not cut."""
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    width = None if tty or os.environ.get("COLUMNS") else 200
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=not tty)


def print_json(data: Any) -> None:
    """Machine-readable output: plain indented JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def t(value: Any, style: str = "") -> Text:
    return Text("" if value is None else str(value), style=style)


def status_text(status: Any) -> Text:
    return t(status, STATUS_STYLES.get(str(status), ""))


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def seconds(value: float | None) -> str:
    """3.2s, 4m05s, 2h03m, 3d04h."""
    if value is None:
        return "-"
    v = max(0.0, float(value))
    if v < 60:
        return f"{v:.1f}s"
    if v < 3600:
        return f"{int(v // 60)}m{int(v % 60):02d}s"
    if v < 86400:
        return f"{int(v // 3600)}h{int(v % 3600 // 60):02d}m"
    return f"{int(v // 86400)}d{int(v % 86400 // 3600):02d}h"


def ago(value: Any) -> str:
    at = parse_time(value)
    if at is None:
        return "-"
    return f"{seconds((datetime.now(UTC) - at).total_seconds())} ago"


def when(value: Any) -> str:
    """An RFC 3339 time as `2026-01-02 03:04:05Z (4m05s ago)`."""
    at = parse_time(value)
    if at is None:
        return "-"
    return f"{at.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')}Z ({ago(value)})"


def short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def progress_text(job: dict[str, Any]) -> str:
    """`3/10 (30%) message`, `3 message`, or `-` when the job reports no progress."""
    p = job.get("progress") or {}
    done, total = number(p.get("done")), number(p.get("total"))
    if done is None:
        amount = ""
    elif total:
        amount = f"{done:g}/{total:g} ({100 * done / total:.0f}%)"
    else:
        amount = f"{done:g}"
    return " ".join(x for x in (amount, p.get("message") or "") if x) or "-"


def duration(job: dict[str, Any]) -> float | None:
    if job.get("duration_seconds") is not None:
        return float(job["duration_seconds"])
    start, end = parse_time(job.get("started_at")), parse_time(job.get("finished_at"))
    return (end - start).total_seconds() if start and end else None


# -- one job ---------------------------------------------------------------------------------


def job_summary(job: dict[str, Any]) -> RenderableType:
    """What `jobrelay status` prints: the job at a glance, then its error and log tail."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    status = status_text(job.get("status"))
    if job.get("cancel_requested") and job.get("status") == "running":
        status.append(" (cancel requested)", style="yellow")
    rows: list[tuple[str, Text | str]] = [
        ("job", t(job.get("id"))),
        ("env", t(job.get("env"))),
        ("type", t(f"{job.get('type')} (class {job.get('class')})")),
        ("owner", t(job.get("owner"))),
        ("status", status),
        ("attempt", t(f"{job.get('attempt', 0)} of {job.get('max_attempts', '?')}")),
        ("progress", t(progress_text(job))),
        ("created", t(when(job.get("created_at")))),
    ]
    for label, key in (
        ("run at", "run_at"),
        ("next attempt", "next_attempt_at"),
        ("started", "started_at"),
        ("finished", "finished_at"),
    ):
        if job.get(key):
            rows.append((label, t(when(job[key]))))
    if duration(job) is not None:
        rows.append(("duration", t(seconds(duration(job)))))
    if job.get("labels"):
        rows.append(("labels", t(", ".join(f"{k}={v}" for k, v in sorted(job["labels"].items())))))
    if job.get("waiting_on"):
        rows.append(("waiting on", t(", ".join(job["waiting_on"]))))
    if job.get("waiting_for"):
        w = job["waiting_for"]
        why = (
            f"a slot of key {w.get('key')!r}"
            if w.get("kind") == "concurrency"
            else f"{w.get('kind')}: {w.get('reason')}"
        )
        rows.append(("waiting for", t(f"{why} (since {when(w.get('since'))})", "yellow")))
    if job.get("skip_reason"):
        rows.append(("skipped", t(job["skip_reason"])))
    if job.get("result") is not None:
        rows.append(("result", t(short(job["result"], 500))))
    elif job.get("result_ref"):
        rows.append(("result", t(job["result_ref"])))
    err = job.get("error")
    if err:
        rows.append(("error", t(f"{err.get('type')}: {err.get('message')}", "red")))
        rows.append(
            (
                "fingerprint",
                t(
                    f"{err.get('fingerprint')} ({'retryable' if err.get('retryable') else 'final'}"
                    f", attempt {err.get('attempt')})"
                ),
            )
        )
    if len(job.get("errors") or []) > 1:
        rows.append(("failures", t(f"{len(job['errors'])} attempts failed")))
    for label, value in rows:
        grid.add_row(label, value)
    parts: list[RenderableType] = [grid]
    tail = (job.get("log_tail") or [])[-LOG_TAIL_LINES:]
    if tail:
        parts.append(Text("log tail:", style="bold"))
        parts.extend(t(f"  {line}", "dim") for line in tail)
    return Group(*parts)


def status_line(job: dict[str, Any]) -> Text:
    """One line for `watch`: status, attempt and progress."""
    line = status_text(job.get("status"))
    line.append(f"  attempt {job.get('attempt', 0)}/{job.get('max_attempts', '?')}")
    p = progress_text(job)
    if p != "-":
        line.append(f"  {p}")
    if job.get("status") == "retrying" and job.get("error"):
        line.append(f"  last error: {short(job['error'].get('message'), 80)}", style="dim")
    return line


def outcome_line(job: dict[str, Any]) -> Text:
    line = Text(f"job {job.get('id')} ")
    line.append_text(status_text(job.get("status")))
    if duration(job) is not None:
        line.append(f" after {seconds(duration(job))}")
    line.append(f" (attempt {job.get('attempt', 0)} of {job.get('max_attempts', '?')})")
    if job.get("status") == "succeeded" and job.get("result") is not None:
        line.append(f"\nresult: {short(job['result'], 500)}")
    err = job.get("error")
    if job.get("status") in ("dead_lettered", "failed") and err:
        line.append(f"\nerror: {err.get('type')}: {err.get('message')}", style="red")
        line.append(f"\nfingerprint: {err.get('fingerprint')}")
    if job.get("status") == "skipped" and job.get("skip_reason"):
        line.append(f"\nskipped: {job['skip_reason']}")
    return line


class Watch:
    """The live view of one job: a rich progress bar on a terminal, a line per change otherwise."""

    def __init__(self, out: Console, job_id: str) -> None:
        self.out = out
        self.job_id = job_id
        self.live = out.is_terminal
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.last = ""

    def __enter__(self) -> Watch:
        if self.live:
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                console=self.out,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.job_id, total=None)
        return self

    def update(self, job: dict[str, Any]) -> None:
        line = status_line(job)
        if self.progress is not None and self.task is not None:
            p = job.get("progress") or {}
            total = number(p.get("total")) or None
            if job.get("status") == "succeeded":
                total, done = total or 1, total or 1
            else:
                done = number(p.get("done")) or 0
            self.progress.update(self.task, description=line.markup, total=total, completed=done)
        elif line.plain != self.last:
            self.out.print(Text(f"{datetime.now(UTC).strftime('%H:%M:%S')} ").append_text(line))
        self.last = line.plain

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.progress is not None:
            self.progress.stop()


# -- tables ----------------------------------------------------------------------------------


def jobs_table(jobs: Sequence[dict[str, Any]]) -> Table:
    table = Table(title=None, show_edge=False, header_style="bold")
    table.add_column("id", no_wrap=True)
    for name in ("type", "class", "status", "attempt", "owner", "created", "progress / result"):
        table.add_column(name, no_wrap=name != "progress / result")
    for job in jobs:
        tail = (
            short(job["result"], 60)
            if job.get("result") is not None
            else (
                short(f"{job['error'].get('type')}: {job['error'].get('message')}", 60)
                if job.get("error")
                else progress_text(job)
            )
        )
        table.add_row(
            t(job.get("id")),
            t(job.get("type")),
            t(job.get("class")),
            status_text(job.get("status")),
            t(f"{job.get('attempt', 0)}/{job.get('max_attempts', '?')}"),
            t(job.get("owner")),
            t(ago(job.get("created_at"))),
            t(tail),
        )
    return table
