"""The errors the emulator answers with, named by their gRPC status code.

The engine raises `CloudTasksError`; the gRPC layer turns its `code` into the matching
`grpc.StatusCode`. Messages follow the real service's wording where it is known.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """gRPC status codes, spelled as `grpc.StatusCode` member names."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNIMPLEMENTED = "UNIMPLEMENTED"


class CloudTasksError(Exception):
    """A refused call: the gRPC code and the message the caller sees."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def invalid(message: str) -> CloudTasksError:
    return CloudTasksError(Code.INVALID_ARGUMENT, message)


def not_found(message: str = "Requested entity was not found.") -> CloudTasksError:
    return CloudTasksError(Code.NOT_FOUND, message)


def already_exists(message: str = "Requested entity already exists") -> CloudTasksError:
    return CloudTasksError(Code.ALREADY_EXISTS, message)


def failed_precondition(message: str) -> CloudTasksError:
    return CloudTasksError(Code.FAILED_PRECONDITION, message)


def unimplemented(message: str) -> CloudTasksError:
    return CloudTasksError(Code.UNIMPLEMENTED, message)


QUEUE_NOT_FOUND = (
    "Queue does not exist. If you just created the queue, wait at least a minute for the queue to initialize."
)
TASK_GONE = (
    "The task no longer exists, though a task with this name existed recently. "
    "The task either successfully completed or was deleted."
)
