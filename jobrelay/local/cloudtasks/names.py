"""Cloud Tasks resource names: parse and validate them as the real API does.

    projects/PROJECT_ID/locations/LOCATION_ID
    projects/PROJECT_ID/locations/LOCATION_ID/queues/QUEUE_ID
    projects/PROJECT_ID/locations/LOCATION_ID/queues/QUEUE_ID/tasks/TASK_ID

PROJECT_ID: letters, digits, hyphens, colons, periods. QUEUE_ID: letters, digits, hyphens, at most
100. TASK_ID: letters, digits, hyphens, underscores, at most 500. A malformed name is INVALID_ARGUMENT.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from jobrelay.local.cloudtasks.errors import invalid

_PROJECT = r"[A-Za-z0-9.:-]+"
_LOCATION = r"[A-Za-z0-9-]+"
_LOCATION_NAME = re.compile(rf"^projects/({_PROJECT})/locations/({_LOCATION})$")
_QUEUE_NAME = re.compile(rf"^projects/({_PROJECT})/locations/({_LOCATION})/queues/([^/]*)$")
_TASK_NAME = re.compile(rf"^(projects/{_PROJECT}/locations/{_LOCATION}/queues/[^/]*)/tasks/([^/]*)$")
QUEUE_ID = re.compile(r"^[A-Za-z0-9-]{1,100}$")
TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")

_QUEUE_FORMAT = 'Queue name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/<QUEUE_ID>".'
_TASK_FORMAT = (
    'Task name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/<QUEUE_ID>/tasks/<TASK_ID>".'
)


@dataclass(frozen=True, slots=True)
class QueueName:
    project: str
    location: str
    queue_id: str

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    def __str__(self) -> str:
        return f"{self.parent}/queues/{self.queue_id}"


def parse_location(name: str) -> str:
    """Validate `projects/P/locations/L` and return it unchanged."""
    if not _LOCATION_NAME.match(name):
        raise invalid(
            f'Location name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>", got {name!r}.'
        )
    return name


def parse_queue(name: str) -> QueueName:
    match = _QUEUE_NAME.match(name)
    if match is None or not QUEUE_ID.match(match.group(3)):
        raise invalid(_QUEUE_FORMAT)
    return QueueName(match.group(1), match.group(2), match.group(3))


def parse_task(name: str) -> tuple[QueueName, str]:
    """Split a full task name into its queue and its task id."""
    match = _TASK_NAME.match(name)
    if match is None:
        raise invalid(_TASK_FORMAT)
    queue = parse_queue(match.group(1))
    return queue, check_task_id(match.group(2))


def check_task_id(task_id: str) -> str:
    if not TASK_ID.match(task_id):
        raise invalid(
            f"Task ID {task_id!r} can contain only letters ([A-Za-z]), numbers ([0-9]), hyphens (-), "
            "or underscores (_). Task ID must between 1 and 500 characters."
        )
    return task_id


def new_task_id() -> str:
    """A generated task id, numeric like the real service's (19 digits, no sequential prefix)."""
    return str(secrets.randbelow(9 * 10**18) + 10**18)


def task_name(queue: str, task_id: str) -> str:
    return f"{queue}/tasks/{task_id}"
