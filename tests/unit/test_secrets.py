import json
from pathlib import Path

import pytest

from jobrelay.infra_files import load_infra
from jobrelay.process_settings import RuntimeSettings
from jobrelay.secrets import SecretSource


def test_file_backend_gives_each_env_only_its_own_secrets(tmp_path: Path) -> None:
    (tmp_path / "dev.json").write_text(json.dumps({"API_KEY": "dev-key"}))
    (tmp_path / "prod.json").write_text(json.dumps({"API_KEY": "prod-key"}))
    source = SecretSource(RuntimeSettings(secrets_backend="file", secrets_dir=tmp_path), load_infra())
    assert source.for_env("dev") == {"API_KEY": "dev-key"}
    assert source.for_env("prod") == {"API_KEY": "prod-key"}
    assert source.for_env("stg") == {}


def test_file_backend_refuses_a_file_that_is_not_an_object(tmp_path: Path) -> None:
    (tmp_path / "dev.json").write_text("[1, 2]")
    source = SecretSource(RuntimeSettings(secrets_backend="file", secrets_dir=tmp_path), load_infra())
    with pytest.raises(RuntimeError, match="flat JSON object"):
        source.for_env("dev")


def test_doppler_backend_needs_the_envs_own_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOPPLER_TOKEN_PROD", raising=False)
    monkeypatch.setenv("DOPPLER_TOKEN_DEV", "dp.st.dev")
    source = SecretSource(RuntimeSettings(secrets_backend="doppler"), load_infra())
    with pytest.raises(RuntimeError, match="DOPPLER_TOKEN_PROD"):
        source.for_env("prod")
