"""terraform fmt agrees with terraform/ (needs only the terraform binary, no provider)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.infra import tfmodel


@pytest.mark.skipif(shutil.which("terraform") is None, reason="the terraform binary is not on PATH")
def test_terraform_files_are_formatted() -> None:
    proc = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-list=true", str(tfmodel.TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"run `terraform fmt -recursive terraform`:\n{proc.stdout}{proc.stderr}"
