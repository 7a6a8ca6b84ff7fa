"""The job types this deployment offers. Importing the package registers them all."""

from jobs import report, script, testing

__all__ = ["report", "script", "testing"]
