"""The Target interface: what dconn needs from an Airflow deployment, and what each kind can do.

A target reads the objects it holds (a snapshot), checks a plan against its own rules, and
carries out operations inside a session that holds dconn's lock. What it cannot do is said in
its `Capabilities`, so the pipeline (api.py) and the plan's text can say it too: a REST API does
not show secrets, has no transaction and holds one object per key.

Implementations: targets.database.DatabaseTarget (SQLAlchemy) and targets.api.ApiTarget (httpx).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from declarative_conns.core.crypto import Digester, KeyRing
from declarative_conns.core.model import Address, StoredObject, Values
from declarative_conns.core.operations import Operation, Seen

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Capabilities:
    """Say what a kind of target can and cannot do."""

    #: Reads secrets back (a database: ciphertext it can decrypt; an API answers `***`).
    sees_secrets: bool
    #: Carries out a whole apply in one transaction (else: object by object, stopping at a failure).
    transactional: bool
    #: Can hold several objects of one key (Airflow 1.10's duplicate conn_id rows).
    duplicate_keys: bool
    #: Can keep dconn's state inside itself (the `dconn_state` table).
    holds_state: bool = False


@dataclass(frozen=True)
class TargetInfo:
    """Describe what a target holds, read when it is opened."""

    #: A short name of its generation: the connection table's ("1.10", "2.x", "3.2+"), or the Airflow version.
    shape: str
    #: How the plan's heading describes it: "Airflow 2.x tables", "Airflow 3.3.2 REST API".
    description: str
    #: The fields each kind has here (columns, or what the API takes), in the kind's order.
    fields: Mapping[str, tuple[str, ...]]
    #: Secret fields the target never returns, not even masked (Airflow 2 API's password), per kind.
    unseen: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class WriteResult:
    """Say what a session wrote: the operations carried out and how the objects they wrote are stored now."""

    done: tuple[Operation, ...]
    #: Each created object's row id (None through an API).
    new_ids: Mapping[Address, int | None] = field(default_factory=dict)
    #: The fingerprint of every object created or rewritten, by (address, row id).
    fingerprints: Mapping[tuple[Address, int | None], str] = field(default_factory=dict)
    #: Why it stopped before the end (a target without transactions); None when all was written.
    failure: Exception | None = None


class Session(Protocol):
    """One locked unit of work on a target: a transaction on a database, a lock on an API."""

    def fingerprints(
        self, kinds: Sequence[str], digester: Digester, only: Sequence[Address] | None = None
    ) -> Mapping[Address, Seen]:
        """Return what the plan's `expected` compares with: each stored object's row id and fingerprint.

        `only` names the objects the plan depends on, which a target may read alone (all else may be left out).
        """
        ...

    def pre_images(
        self, operations: Sequence[Operation], declared: Mapping[Address, Values], digester: Digester
    ) -> list[dict[str, Any]]:
        """Return each object the operations change or delete, as stored: ciphertext, never plaintext.

        A secret the target holds in clear (a password without a Fernet key, a field the
        configuration fills from a secret reference) becomes `{"$digest": ...}`.
        """
        ...

    def write(
        self, operations: Sequence[Operation], digester: Digester, progress: Progress | None = None
    ) -> WriteResult:
        """Carry out the operations (deletes, updates, creates); on a database, raise on any failure."""
        ...


class Target(Protocol):
    """An Airflow deployment dconn can plan against and apply to."""

    @property
    def display(self) -> str:
        """Return the target as it may be printed: a URL with its password masked."""
        ...

    @property
    def identity(self) -> Mapping[str, object]:
        """Return what identifies it across spellings (so a state or plan file is never used on another)."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """Say what the target can and cannot do."""
        ...

    @property
    def keyring(self) -> KeyRing:
        """Return the key ring values are encrypted with (an API target encrypts nothing itself)."""
        ...

    def open(self) -> TargetInfo:
        """Connect and describe what the target holds; never create anything."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    def read(self, kinds: Sequence[str], digester: Digester) -> Snapshot:
        """Return every stored object of the kinds, decrypted; undecryptable ones are one error naming them."""
        ...

    def check_keys(self, declared: Sequence[Address], stored: Sequence[StoredObject]) -> list[str]:
        """Return why the target would refuse or confuse declared keys (collations, the API's id rule)."""
        ...

    def check_writes(self, operations: Sequence[Operation]) -> list[str]:
        """Return why the target would refuse what the operations write (lengths, NUL, unknown teams)."""
        ...

    def session(self, lock_timeout: float) -> AbstractContextManager[Session]:
        """Open a session holding dconn's lock; on a database, one transaction committed at the end."""
        ...


@dataclass(frozen=True)
class Snapshot:
    """Hold what a target holds of some kinds: its objects, and those it had to leave alone."""

    objects: list[StoredObject]
    #: Objects that cannot be read (nested too deep), with why: they are left out of the plan.
    skipped: tuple[tuple[Address, str], ...] = ()
