"""Queue administration through the official client: create, list, update, delete, pause, purge."""

from __future__ import annotations

import time
import uuid

import pytest
from google.api_core.exceptions import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from google.cloud import tasks_v2
from google.protobuf import field_mask_pb2

from jobrelay.infra_files import load_classes

from .helpers import LOCATION, PROJECTS, REPO, eventually, http_task

RUNNING, PAUSED = tasks_v2.Queue.State.RUNNING, tasks_v2.Queue.State.PAUSED


def test_new_queue_reports_the_services_defaults(client, make_queue):
    queue = client.get_queue(name=make_queue())
    assert queue.state == RUNNING
    assert (
        queue.rate_limits.max_dispatches_per_second,
        queue.rate_limits.max_burst_size,
        queue.rate_limits.max_concurrent_dispatches,
    ) == (500, 100, 1000)
    retry = queue.retry_config
    assert (retry.max_attempts, retry.max_doublings) == (100, 16)
    assert retry.min_backoff.total_seconds() == pytest.approx(0.1)
    assert retry.max_backoff.total_seconds() == 3600
    assert not queue.purge_time


def test_creating_an_existing_queue_is_already_exists(client, make_queue):
    name = make_queue()
    with pytest.raises(AlreadyExists):
        client.create_queue(parent=name.split("/queues/")[0], queue={"name": name})


@pytest.mark.parametrize("project", PROJECTS)
def test_config_creates_every_shard_queue_of_every_class_in_every_project(client, project):
    classes = load_classes(REPO / "infra" / "classes.yaml")
    parent = f"projects/{project}/locations/{LOCATION}"
    queues = {q.name.rsplit("/", 1)[1]: q for q in client.list_queues(parent=parent)}
    assert any(c.shards > 1 for c in classes.values())  # the sharded case is really covered
    for job_class in classes.values():
        rates = [queues[q].rate_limits.max_dispatches_per_second for q in job_class.queues]
        assert sum(rates) == pytest.approx(job_class.rate_limits.max_dispatches_per_second)
        assert all(rate <= 500 for rate in rates)
        concurrent = [queues[q].rate_limits.max_concurrent_dispatches for q in job_class.queues]
        assert sum(concurrent) >= job_class.rate_limits.max_concurrent_dispatches
        queue = queues[job_class.queue]
        assert queue.retry_config.max_attempts == job_class.retry.max_attempts
        assert queue.retry_config.min_backoff.total_seconds() == job_class.retry.min_backoff_seconds
        assert queue.retry_config.max_backoff.total_seconds() == job_class.retry.max_backoff_seconds
        assert queue.retry_config.max_doublings == job_class.retry.max_doublings


def test_list_queues_pages_in_name_order(client):
    parent = f"projects/proj-paging-{uuid.uuid4().hex[:6]}/locations/europe-west1"
    names = [f"{parent}/queues/q{i}" for i in range(5)]
    for name in reversed(names):
        client.create_queue(parent=parent, queue={"name": name})
    pages = list(client.list_queues(request={"parent": parent, "page_size": 2}).pages)
    assert [[q.name for q in page.queues] for page in pages] == [names[0:2], names[2:4], names[4:5]]
    paused = client.list_queues(request={"parent": parent, "filter": "state: PAUSED"})
    assert list(paused) == []


def test_update_queue_changes_only_the_masked_fields(client, make_queue):
    name = make_queue(retry_config={"max_attempts": 7})
    updated = client.update_queue(
        queue={
            "name": name,
            "rate_limits": {"max_dispatches_per_second": 50},
            "retry_config": {"max_attempts": 2},
        },
        update_mask=field_mask_pb2.FieldMask(paths=["rate_limits.max_dispatches_per_second"]),
    )
    assert updated.rate_limits.max_dispatches_per_second == 50
    assert updated.rate_limits.max_burst_size == 10  # output only, derived from the rate
    assert updated.retry_config.max_attempts == 7
    assert client.get_queue(name=name).rate_limits.max_dispatches_per_second == 50


def test_update_queue_with_an_unknown_mask_path_is_invalid_argument(client, make_queue):
    name = make_queue()
    with pytest.raises(InvalidArgument):
        client.update_queue(queue={"name": name}, update_mask=field_mask_pb2.FieldMask(paths=["rate_limits.speed"]))


def test_update_queue_creates_a_missing_queue(client):
    name = f"projects/{PROJECTS[1]}/locations/{LOCATION}/queues/upserted-{uuid.uuid4().hex[:8]}"
    created = client.update_queue(queue={"name": name, "rate_limits": {"max_concurrent_dispatches": 3}})
    assert created.rate_limits.max_concurrent_dispatches == 3
    assert client.get_queue(name=name).state == RUNNING
    client.delete_queue(name=name)


def test_deleted_queue_is_gone_and_its_name_is_held(client, make_queue):
    name = make_queue()
    client.delete_queue(name=name)
    with pytest.raises(NotFound):
        client.get_queue(name=name)
    with pytest.raises(FailedPrecondition, match="existed too recently"):
        client.create_queue(parent=name.split("/queues/")[0], queue={"name": name})


def test_paused_queue_accepts_tasks_but_dispatches_only_after_resume(client, make_queue, target):
    name = make_queue(paused=True)
    assert client.get_queue(name=name).state == PAUSED
    client.create_task(parent=name, task=http_task(target.url))
    time.sleep(0.6)
    assert target.requests == []
    assert client.resume_queue(name=name).state == RUNNING
    target.wait_for(1, timeout=3)


def test_purge_removes_the_tasks_created_before_it(client, make_queue, target):
    name = make_queue(paused=True)
    for _ in range(3):
        client.create_task(parent=name, task=http_task(target.url, body=b"old"))
    purged = client.purge_queue(name=name)
    assert purged.purge_time
    assert list(client.list_tasks(parent=name)) == []
    client.create_task(parent=name, task=http_task(target.url, body=b"new"))
    client.resume_queue(name=name)
    target.wait_for(1, timeout=3)
    time.sleep(0.3)
    assert [r.body for r in target.requests] == [b"new"]
    eventually(lambda: list(client.list_tasks(parent=name)) == [], what="the new task to finish")
