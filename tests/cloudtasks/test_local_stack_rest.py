"""The local stack's Cloud Tasks emulator over REST, found through `.jobrelay/local.json`, as the README shows."""

from __future__ import annotations

import json

from jobrelay.infra_files import load_classes

from .helpers import REPO, gcloud_tasks


def test_gcloud_lists_the_local_stacks_queues_from_local_json(stack, tmp_path):
    state = json.loads((stack.state_dir / "local.json").read_text())
    rest_url = state["cloudtasks_rest"]
    project = state["envs"]["dev"]["project"]
    done = gcloud_tasks(rest_url, project, tmp_path / "gcloud", "queues", "list")
    assert done.returncode == 0, done.stderr
    listed = {q["name"].rsplit("/", 1)[1] for q in json.loads(done.stdout)}
    assert {q for c in load_classes(REPO / "infra" / "classes.yaml").values() for q in c.queues} <= listed
