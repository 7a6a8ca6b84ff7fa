"""The console's pure logic (console/src/features/graph.js and flow.js) under Node's test runner:
pipeline layout and labels, a type's pause and breaker as GET .../types answers them.

Node is what builds the console, so it is there wherever the console is; missing, this fails.
The pages that use this logic run in headless Chromium in tests/e2e/test_console.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CONSOLE = Path(__file__).resolve().parents[2] / "console"


def test_the_consoles_pure_logic_passes_its_node_tests() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the console is built and tested with Node 20", pytrace=False)
    done = subprocess.run(
        [node, "--test", "test/"], cwd=CONSOLE, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout and "# pass 0" not in done.stdout
