"""Queues from a YAML file, for teams that run the emulator without the rest of jobrelay.

    project: my-project            # or `projects: [a, b]`: every queue in each; default: --projects
    location: us-central1          # default: --location
    queues:
      - name: emails               # a queue id, or a full projects/P/locations/L/queues/Q name
        rateLimits: {maxDispatchesPerSecond: 10, maxConcurrentDispatches: 5}
        retryConfig: {maxAttempts: 5, minBackoff: 1s, maxBackoff: 300s, maxDoublings: 4}

Each entry is a Queue resource as the REST API writes it (what `gcloud tasks queues describe
--format=json` prints), read by the same strict reader and validated by the same rules as a
CreateQueue call; a bad file fails the start with the file, the entry and the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobrelay.local.cloudtasks import jsonpb, protos
from jobrelay.local.cloudtasks.config import QueueSettings
from jobrelay.local.cloudtasks.errors import CloudTasksError
from jobrelay.local.cloudtasks.names import QueueName, parse_queue


class QueueFileError(ValueError):
    """The queue file cannot be used; the message names the file, the entry and the reason."""


def load_queue_file(path: Path, *, projects: Sequence[str], location: str) -> list[tuple[QueueName, QueueSettings]]:
    import yaml  # only needed with --queues

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise QueueFileError(f"{path}: cannot read it: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("queues"), list):
        raise QueueFileError(f"{path}: expected a mapping with a 'queues' list")
    unknown = set(data) - {"project", "projects", "location", "queues"}
    if unknown:
        raise QueueFileError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    homes = _projects(path, data, projects)
    where = str(data.get("location") or location)
    loaded: list[tuple[QueueName, QueueSettings]] = []
    for index, entry in enumerate(data["queues"]):
        label = f"{path}: queues[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise QueueFileError(f"{label}: each queue needs a 'name' (a queue id or a full queue name)")
        for name in _names(label, entry["name"], homes, where):
            loaded.append((name, _settings(label, name, entry)))
    return loaded


def _projects(path: Path, data: dict[str, Any], fallback: Sequence[str]) -> list[str]:
    if "project" in data and "projects" in data:
        raise QueueFileError(f"{path}: give 'project' or 'projects', not both")
    if "project" in data:
        return [str(data["project"])]
    if "projects" in data:
        if not isinstance(data["projects"], list) or not data["projects"]:
            raise QueueFileError(f"{path}: 'projects' must be a non-empty list")
        return [str(p) for p in data["projects"]]
    return list(fallback)


def _names(label: str, name: str, projects: Sequence[str], location: str) -> list[QueueName]:
    try:
        if name.startswith("projects/"):
            return [parse_queue(name)]
        if not projects:
            raise QueueFileError(f"{label}: {name!r} needs a project: set 'project' in the file or --projects")
        return [parse_queue(f"projects/{p}/locations/{location}/queues/{name}") for p in projects]
    except CloudTasksError as exc:
        raise QueueFileError(f"{label}: {exc.message}") from exc


def _settings(label: str, name: QueueName, entry: dict[str, Any]) -> QueueSettings:
    pb = protos.QueuePb()
    try:
        jsonpb.merge({k: v for k, v in entry.items() if k != "name"}, pb, at="queue")
        return protos.settings_from_pb(pb, None, ())
    except jsonpb.BadRequest as exc:
        raise QueueFileError(f"{label} ({name.queue_id}): {exc.message}") from exc
    except CloudTasksError as exc:
        raise QueueFileError(f"{label} ({name.queue_id}): {exc.message}") from exc
