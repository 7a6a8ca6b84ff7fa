"""How the operators' commands of the `jobrelay` CLI show things: dead letters, redrives, queues, stats, access.

Split from jobrelay.cli_render (jobs and the watch line), whose helpers it uses; the same rule holds:
everything the API returns reaches rich as `Text`, never as markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from jobrelay.cli_render import ago, job_summary, seconds, short, status_text, t, when


def groups_table(groups: Iterable[dict[str, Any]]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    table.add_column("fingerprint", no_wrap=True)
    table.add_column("count", justify="right")
    table.add_column("type", no_wrap=True)
    table.add_column("error")
    table.add_column("last seen", no_wrap=True)
    for g in groups:
        table.add_row(
            t(g.get("fingerprint")),
            t(g.get("count")),
            t(g.get("type")),
            t(short(f"{g.get('error_type')}: {g.get('message')}", 120), "red"),
            t(ago(g.get("last_dead_at"))),
        )
    return table


def dead_letters_table(letters: Iterable[dict[str, Any]]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    for name in ("job", "type", "attempt", "owner", "dead", "error"):
        table.add_column(name, no_wrap=name != "error")
    for d in letters:
        err = d.get("error") or {}
        table.add_row(
            t(d.get("job_id")),
            t(d.get("type")),
            t(d.get("attempt")),
            t(d.get("owner")),
            t(ago(d.get("dead_at"))),
            t(short(f"{err.get('type')}: {err.get('message')}", 100), "red"),
        )
    return table


def dead_letter_detail(letter: dict[str, Any]) -> RenderableType:
    err = letter.get("error") or {}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in (
        ("job", letter.get("job_id")),
        ("env", letter.get("env")),
        ("type", f"{letter.get('type')} (class {letter.get('class')})"),
        ("owner", letter.get("owner")),
        ("attempts", letter.get("attempt")),
        ("dead since", when(letter.get("dead_at"))),
        ("source", letter.get("source")),
        ("fingerprint", letter.get("fingerprint")),
        ("error", f"{err.get('type')}: {err.get('message')}"),
        (
            "redriven",
            f"yes, {when(letter.get('redriven_at'))} by {letter.get('redriven_by')}"
            if letter.get("redriven")
            else "no",
        ),
        ("trace", letter.get("trace_id")),
    ):
        grid.add_row(label, t(value, "red" if label == "error" else ""))
    parts: list[RenderableType] = [grid]
    if err.get("stack"):
        parts += [Text("stack:", style="bold"), t(str(err["stack"]).rstrip(), "dim")]
    job = letter.get("job")
    if job:
        parts += [Text("\njob now:", style="bold"), job_summary(job)]
    return Group(*parts)


def redrive_table(result: dict[str, Any]) -> RenderableType:
    table = Table(show_edge=False, header_style="bold")
    for name in ("job", "outcome", "detail"):
        table.add_column(name, no_wrap=name != "detail")
    styles = {"redriven": "green", "would_redrive": "cyan", "skipped": "yellow"}
    for r in result.get("results", []):
        table.add_row(
            t(r.get("job_id")), t(r.get("outcome"), styles.get(str(r.get("outcome")), "")), t(r.get("detail"))
        )
    if result.get("dry_run"):
        would = sum(1 for r in result.get("results", []) if r.get("outcome") == "would_redrive")
        summary = t(f"dry run: {would} of {result.get('count', 0)} selected would be redriven; nothing changed", "cyan")
    else:
        summary = t(f"redriven {result.get('redriven', 0)} of {result.get('count', 0)} selected", "green")
    return Group(table, summary) if result.get("results") else summary


def queues_table(body: dict[str, Any]) -> Table:
    table = Table(title=f"queues of env {body.get('env')}", show_edge=False, header_style="bold")
    for name in ("class", "queue", "route", "state", "depth", "oldest task", "pool waiting", "rate/s", "max conc."):
        table.add_column(name, no_wrap=True, justify="right" if name in ("depth", "pool waiting") else "left")
    for row in body.get("queues", []):
        depth = "-" if row.get("depth") is None else f"{row['depth']}{'+' if row.get('depth_capped') else ''}"
        oldest = seconds(row["oldest_task_age_seconds"]) if row.get("oldest_task_age_seconds") is not None else "-"
        table.add_row(
            t(row.get("class")),
            t(row.get("queue")),
            t(row.get("route")),
            t(row.get("state")),
            t(depth),
            t(oldest),
            t(row.get("pool_waiting_jobs", "-")),
            t(row.get("max_dispatches_per_second", "-")),
            t(row.get("max_concurrent_dispatches", "-")),
        )
    return table


def stats_view(s: dict[str, Any]) -> RenderableType:
    counts = s.get("counts", {})
    pairs = counts.get("by_status_and_class", {})
    classes = list(counts.get("by_class", {}))
    table = Table(title=f"jobs in env {s.get('env')} by status and class", show_edge=False, header_style="bold")
    table.add_column("status", no_wrap=True)
    for cls in classes:
        table.add_column(cls, justify="right")
    table.add_column("total", justify="right", style="bold")
    for status, total in counts.get("by_status", {}).items():
        table.add_row(status_text(status), *(t(pairs.get(status, {}).get(c, 0)) for c in classes), t(total))
    table.add_row(
        t("total", "bold"), *(t(counts["by_class"][c], "bold") for c in classes), t(counts.get("total", 0), "bold")
    )
    recent = s.get("recent", {})
    dur = recent.get("duration_seconds", {})
    oldest = s.get("oldest_queued")
    rate = recent.get("failure_rate")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in (
        (
            "oldest queued",
            f"{seconds(oldest['age_seconds'])} ({oldest['job_id']}, {oldest['type']})" if oldest else "none",
        ),
        (
            f"last {seconds(s.get('window_seconds'))}",
            f"{recent.get('succeeded', 0)} succeeded, {recent.get('dead_lettered', 0)} dead-lettered",
        ),
        ("failure rate", "-" if rate is None else f"{100 * rate:.1f}%"),
        ("duration p50 / p95", f"{seconds(dur.get('p50'))} / {seconds(dur.get('p95'))}"),
    ):
        grid.add_row(label, t(value))
    return Group(table, Text(""), grid)


# -- access management ----------------------------------------------------------------------------


def grants(g: dict[str, Any]) -> str:
    """{"admin": true, "roles": ["reporter"]} as `admin, roles: reporter` (or `no access`)."""
    parts = ["admin"] if g.get("admin") else []
    if g.get("roles"):
        parts.append("roles: " + ", ".join(g["roles"]))
    return ", ".join(parts) or "no access"


def access_table(users: list[dict[str, Any]]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    for col in ("email", "uid", "admin", "roles"):
        table.add_column(col)
    for u in users:
        email = str(u.get("email") or "")
        if u.get("disabled"):
            email += " (disabled)"
        table.add_row(email, str(u["uid"]), "yes" if u.get("admin") else "", ", ".join(u.get("roles") or []))
    return table


def access_log_table(entries: Sequence[dict[str, Any]]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    for col in ("at", "by", "action", "user", "before", "after", "status"):
        table.add_column(col)
    for e in entries:
        by = e.get("by") or {}
        table.add_row(
            str(e.get("at", ""))[:19],
            str(by.get("email") or by.get("uid") or ""),
            str(e.get("action", "")),
            str((e.get("target") or {}).get("email", "")),
            grants(e.get("before") or {}),
            grants(e.get("after") or {}),
            str(e.get("status", "")),
        )
    return table
