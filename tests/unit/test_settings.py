import shutil
from pathlib import Path

import pytest
import yaml

from jobrelay.errors import SettingsError
from jobrelay.infra_files import load_infra
from jobrelay.process_settings import RuntimeSettings
from jobrelay.settings import DEFAULT_INFRA_DIR


@pytest.fixture
def infra_copy(tmp_path: Path) -> Path:
    d = tmp_path / "infra"
    shutil.copytree(DEFAULT_INFRA_DIR, d)
    return d


def edit(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_repo_settings_load_with_three_envs_and_four_classes() -> None:
    infra = load_infra()
    assert set(infra.environments) == {"prod", "stg", "dev"}
    assert set(infra.classes) == {"A", "B", "C", "D"}
    assert infra.env("prod").project == "singular-dream"
    assert infra.env("dev").muscle_concurrency == 4
    assert (
        infra.env("dev").service_accounts.tasks_invoker == "jobrelay-tasks@singular-dream-dev.iam.gserviceaccount.com"
    )
    assert infra.classes["D"].route == "muscle"
    assert infra.env("dev").retention_days == 7 and infra.env("prod").retention_days == 30


def test_a_sharded_class_splits_its_rates_and_keeps_each_job_on_one_queue() -> None:
    a = load_infra().classes["A"]
    assert a.shards == 4 and a.queues == ("jobrelay-a", "jobrelay-a-1", "jobrelay-a-2", "jobrelay-a-3")
    assert a.shard_rate_limits.max_dispatches_per_second * a.shards == a.rate_limits.max_dispatches_per_second
    ids = [f"{i:024x}" for i in range(400)]
    picked = [a.queue_for(i) for i in ids]
    assert picked == [a.queue_for(i) for i in ids]  # stable
    assert set(picked) == set(a.queues)  # and spread: every shard gets jobs
    assert max(picked.count(q) for q in a.queues) < 2 * len(ids) / a.shards
    b = load_infra().classes["B"]
    assert b.queues == (b.queue,) and {b.queue_for(i) for i in ids} == {b.queue}


@pytest.mark.parametrize(
    ("file", "change", "key", "reason"),
    [
        (
            "classes.yaml",
            lambda d: d["classes"]["A"]["retry"].pop("max_attempts"),
            "classes.A.retry.max_attempts",
            "Field required",
        ),
        (
            "classes.yaml",
            lambda d: d["classes"]["B"]["rate_limits"].update(max_dispatches_per_second=900),
            "classes.B.rate_limits",
            "at most 500/s: add shards",
        ),
        (
            "classes.yaml",
            lambda d: d["classes"]["A"].update(shards=1),  # its 1,000/s on one queue
            "classes.A.rate_limits",
            "at most 500/s: add shards",
        ),
        (
            "classes.yaml",
            lambda d: d["classes"]["B"]["rate_limits"].update(max_concurrent_dispatches=6000),
            "classes.B.rate_limits",
            "at most 5000",
        ),
        ("classes.yaml", lambda d: d["classes"]["B"].update(shards=0), "classes.B.shards", "greater than or equal"),
        (
            "classes.yaml",
            lambda d: d["classes"]["C"].update(queue="jobrelay-a-1"),  # class A's second shard
            "classes",
            "share a queue",
        ),
        ("classes.yaml", lambda d: d["classes"]["C"].update(route="lambda"), "classes.C.route", "tasks"),
        ("classes.yaml", lambda d: d["classes"]["C"].update(queue="jobrelay-a"), "classes", "share a queue"),
        (
            "classes.yaml",
            lambda d: d["classes"]["A"].update(queue="bad queue!"),
            "classes.A.queue",
            "hyphens",
        ),
        (
            "environments.yaml",
            lambda d: d["environments"]["dev"].update(project="singular-dream"),
            "environments",
            "share a project",
        ),
        (
            "environments.yaml",
            lambda d: d["environments"].update(qa={"project": "x"}),
            "environments.qa",
            "unknown env",
        ),
        (
            "environments.yaml",
            lambda d: d["environments"]["prod"].update(muscle_concurrency=-1),
            "environments.prod.muscle_concurrency",
            "greater than or equal to 0",
        ),
        ("environments.yaml", lambda d: d.pop("muscle"), "muscle", "missing"),
        (
            "schedules.yaml",
            lambda d: d["schedules"]["cleanup"].update(cron="every day"),
            "schedules.cleanup.cron",
            "not a valid cron",
        ),
        (
            "schedules.yaml",
            lambda d: d["schedules"]["cleanup"].update(time_zone="Mars/Olympus"),
            "schedules.cleanup.time_zone",
            "unknown time zone",
        ),
        (
            "schedules.yaml",
            lambda d: d["schedules"]["cleanup"].update(envs=["qa"]),
            "schedules.cleanup.envs",
            "unknown env",
        ),
    ],
)
def test_broken_settings_fail_naming_file_key_and_reason(
    infra_copy: Path,
    file: str,
    change,
    key: str,  # type: ignore[no-untyped-def]
    reason: str,
) -> None:
    edit(infra_copy / file, change)
    with pytest.raises(SettingsError) as err:
        load_infra(infra_copy)
    assert err.value.file.endswith(file)
    assert err.value.key == key
    assert reason in err.value.reason
    assert file in str(err.value) and key in str(err.value)


def test_invalid_yaml_names_the_file(infra_copy: Path) -> None:
    (infra_copy / "classes.yaml").write_text("classes: [unclosed")
    with pytest.raises(SettingsError, match=r"classes\.yaml.*not valid YAML"):
        load_infra(infra_copy)


def test_runtime_settings_refuse_unknown_envs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBRELAY_ENVS", "prod,qa")
    with pytest.raises(ValueError, match="JOBRELAY_ENVS"):
        RuntimeSettings()


def test_runtime_settings_read_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBRELAY_ENVS", "dev")
    monkeypatch.setenv("JOBRELAY_WORKER_URL", "https://worker.example")
    s = RuntimeSettings()
    assert s.env_names == ("dev",) and s.worker_url == "https://worker.example"
