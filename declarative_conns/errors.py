"""Errors a user can act on: each carries a message naming what, where and what to do.

Messages never contain secret values; callers pass names and references, not values.
"""

from __future__ import annotations


class DconnError(Exception):
    """Raise for any failure the user can fix; the CLI prints it as one ``Error:`` line."""


class InputError(DconnError):
    """Raise when a configuration or input file is malformed or invalid."""


class ValidationFailed(InputError):
    """Raise when the desired-state document breaks the schema; carries every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        count = len(problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"the configuration has {count} {noun}:\n  " + "\n  ".join(problems))


class ProjectError(InputError):
    """Raise when dconn.toml cannot be found or read, or an environment names a missing layer."""


class UnknownEnvironment(ProjectError):
    """Raise when the environment picked is not in dconn.toml, or none is picked among several."""


class SecretError(DconnError):
    """Raise when a secret reference cannot be resolved."""


class TargetError(DconnError):
    """Raise when the target database or its Fernet key cannot be found or used."""


class DatabaseError(DconnError):
    """Raise when the database cannot be reached, read or written."""


class DecryptionError(DconnError):
    """Raise when stored rows cannot be decrypted with any key of the Fernet key ring."""


class StateError(DconnError):
    """Raise when the state file is corrupt, foreign or cannot be written."""


class PlanIsStale(DconnError):
    """Raise when the database or a secret changed between plan and apply."""


class ApplyInterrupted(DconnError):
    """Raise when an apply is interrupted after its changes were committed (the message says so)."""


class ApplyRefused(DconnError):
    """Raise when apply is not approved or cannot ask for approval."""
