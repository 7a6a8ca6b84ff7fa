"""`make demo` piped or in CI: whole ids, rows on one line, a newline after the table, no temp dir left."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from jobrelay.local import demo


def piped_console(monkeypatch: pytest.MonkeyPatch) -> tuple[io.StringIO, demo.Console]:
    out = io.StringIO()  # not a terminal, as in a pipe or CI
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.delenv("COLUMNS", raising=False)
    return out, demo.make_console()


def test_the_piped_table_shows_whole_ids_one_row_a_line_and_ends_with_a_newline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, console = piped_console(monkeypatch)
    jobs = demo.workload()
    for i, j in enumerate(jobs):
        j.id = f"{i:02d}" + "c0ffee" * 3 + "beef"  # 24 characters, as the API's ids
        j.job = {"status": j.expect, "attempt": 1, "progress": {"done": 3, "total": 4, "message": "nearly there " * 5}}
    assert not console.is_terminal
    console.print(demo.table(jobs))
    text = out.getvalue()
    assert text.endswith("\n")
    lines = text.splitlines()
    for j in jobs:
        (row,) = [line for line in lines if j.id in line]  # whole, and on one line with its label and status
        assert j.label in row and j.expect in row


def test_the_demo_state_dir_with_its_private_key_is_removed_however_the_demo_ends(tmp_path: Path) -> None:
    with demo.state_dir() as state:
        (state / "oidc-key.pem").write_text("-----BEGIN PRIVATE KEY-----")
        assert state.name.startswith("jobrelay-demo-")
    assert not state.exists()
    with pytest.raises(RuntimeError), demo.state_dir() as state:
        raise RuntimeError("the stack did not start")
    assert not state.exists()


def test_a_failed_demo_keeps_the_logs_but_not_the_key(tmp_path: Path) -> None:
    logs = tmp_path / "state" / "logs"
    logs.mkdir(parents=True)
    (logs / "worker.log").write_text("{}")
    (tmp_path / "state" / "oidc-key.pem").write_text("secret")
    kept = demo.keep_logs(logs, into=tmp_path / "kept")
    assert (kept / "worker.log").exists() and not list(kept.rglob("*.pem"))
