"""The docs' tours run: every shell line of README.md and docs/cli.md, against the local stack.

The rules, so a doc can say what it means:
- every ```sh block runs, in order, in one bash per file, except the block right after an HTML
  comment saying "not this one" (`make test` itself, cloud-only commands);
- lines continued with `\\` are one line; comment-only lines are skipped;
- `jobrelay dev up` lines are skipped: the session's stack stands in for it;
- a line must exit 0, or the code its comment names ("exits N");
- `curl` fails on an HTTP error status (`--fail-with-body`), so an example the API refuses fails.
Bash starts without `.venv/bin` on PATH (the tours say how it gets there), in an empty directory where
`.jobrelay` is the session stack's state and `.venv`, `examples` and `infra` are the repository's.

Every `jobrelay ...` any doc names (code blocks and inline code) must also be a command that exists.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup as Group

from jobrelay.cli import app
from jobrelay.local.stack import REPO, Stack

TOURS = ("README.md", "docs/cli.md")
SKIP_BLOCK = re.compile(r"<!--[^>]*not this one[^>]*-->\s*$")
EXPECT = re.compile(r"#.*\bexits (\d+)\b")


def shell_lines(doc: str) -> list[tuple[str, int]]:
    """(command, expected exit code) for each runnable line of the doc's ```sh blocks."""
    text = (REPO / doc).read_text()
    out: list[tuple[str, int]] = []
    for m in re.finditer(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        if SKIP_BLOCK.search(text[: m.start()].rstrip() + "\n"):
            continue
        joined = re.sub(r"\\\n\s*", " ", m.group(1))
        for line in joined.splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#") or re.search(r"\bjobrelay dev up\b", stripped):
                continue
            expect = EXPECT.search(stripped)
            out.append((stripped, int(expect.group(1)) if expect else 0))
    return out


def script(lines: list[tuple[str, int]]) -> str:
    parts = [
        'curl() { command curl --fail-with-body "$@"; }',
        '__check() { if [ "$1" != "$2" ]; then echo "TOUR LINE $3 EXITED $1 (wanted $2)" >&2; exit 90; fi; }',
    ]
    for n, (line, expect) in enumerate(lines):
        parts += [line, f"__check $? {expect} {n}"]
    return "\n".join(parts) + "\n"


@pytest.fixture
def project(stack: Stack, tmp_path: Path) -> Path:
    for name, target in ((".jobrelay", stack.state_dir), (".venv", REPO / ".venv"), ("examples", REPO / "examples")):
        (tmp_path / name).symlink_to(target)
    (tmp_path / "infra").symlink_to(stack.options.infra_dir)
    return tmp_path


@pytest.mark.parametrize("doc", TOURS)
def test_every_shell_line_of_the_tour_runs(stack: Stack, project: Path, doc: str) -> None:
    lines = shell_lines(doc)
    assert len(lines) > 5, lines
    venv_bin = str(REPO / ".venv" / "bin")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_EMULATOR_HOST") and not k.startswith("JOBRELAY_") and k not in ("VIRTUAL_ENV",)
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["API"] = stack.url("api")
    run = subprocess.run(
        ["bash", "-c", script(lines)], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    failed = re.search(r"TOUR LINE (\d+) EXITED (\d+)", run.stderr)
    where = f"{doc}: `{lines[int(failed.group(1))][0]}` exited {failed.group(2)}" if failed else doc
    assert run.returncode == 0, f"{where}\n--- stderr ---\n{run.stderr[-3000:]}\n--- stdout ---\n{run.stdout[-2000:]}"


def test_the_tour_runner_catches_a_failing_line(stack: Stack, project: Path) -> None:
    lines = [("export JOBRELAY_LOCAL_USER=alice", 0), ("true", 0), ("false   # exits 1", 1), ("ls no-such-file", 0)]
    run = subprocess.run(["bash", "-c", script(lines)], cwd=project, capture_output=True, text=True, timeout=60)
    assert run.returncode == 90 and "TOUR LINE 3 EXITED 2" in run.stderr


# -- commands the docs name exist ---------------------------------------------------------------

DOCS = ("README.md", *(str(p.relative_to(REPO)) for p in sorted((REPO / "docs").rglob("*.md"))))


def named_commands(doc: str) -> list[str]:
    """Every `jobrelay ...` command line in the doc's code blocks and inline code."""
    text = (REPO / doc).read_text()
    fence = re.compile(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```[ \t]*$", flags=re.DOTALL | re.MULTILINE)
    pieces = [m.group(2) for m in fence.finditer(text) if m.group(1) in ("", "sh", "bash", "console")]
    prose = fence.sub("", text)
    pieces += re.findall(r"`((?:\.venv/bin/)?jobrelay [^`\n]+)`", prose)
    found = []
    for piece in pieces:
        for line in re.sub(r"\\\n\s*", " ", piece).splitlines():
            for m in re.finditer(r"(?:^|[\s/(=])jobrelay(\s+[^#|;&)]*)", line):
                found.append("jobrelay" + m.group(1).rstrip())
    return found


def resolve(words: list[str]) -> str | None:
    """None when `words` (after `jobrelay`) name an existing command, else what is wrong."""
    group = typer.main.get_command(app)
    assert isinstance(group, Group)
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            if name == "--help":
                return None
            param = next((p for p in group.params if name in getattr(p, "opts", [])), None)
            if param is None:
                return f"option {name} of `{group.name}`"
            takes_value = not getattr(param, "is_flag", False) and "=" not in word
            i += 2 if takes_value else 1
            continue
        if not re.fullmatch(r"[a-z][a-z-]*", word):
            return None  # a placeholder such as <env>: not a command name
        command = group.commands.get(word)
        if command is None:
            return f"command {word!r} (`{group.name}` has {', '.join(sorted(group.commands))})"
        if not isinstance(command, Group):
            return None
        group, i = command, i + 1
    return None


@pytest.mark.parametrize("doc", DOCS)
def test_every_jobrelay_command_a_doc_names_exists(doc: str) -> None:
    wrong = []
    for line in named_commands(doc):
        try:
            words = shlex.split(line)[1:]
        except ValueError:
            words = line.split()[1:]
        problem = resolve(words)
        if problem:
            wrong.append(f"{line!r}: no {problem}")
    assert not wrong, "\n".join(wrong)


def test_the_command_check_catches_a_command_that_does_not_exist() -> None:
    assert resolve(["dead-letters", "list"]) is not None
    assert resolve(["--admin", "dlq", "nope"]) is not None
    assert resolve(["--env", "stg", "dlq", "list"]) is None
    assert resolve(["dev", "seed", "f.yaml"]) is None
