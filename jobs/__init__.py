"""The job types this deployment offers. Importing the package registers them all."""

from jobs import report, testing

__all__ = ["report", "testing"]
