"""The plan as data: typed operations on objects, the drift found, and what the plan was made against.

Like alembic's operations, each step is a value of its own type — `Create`, `Update`, `Delete`
(with why), `Reencrypt` — that renderers describe and targets carry out; nothing decides by
comparing strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Union

from declarative_conns.core.diff import created_changes
from declarative_conns.core.kinds import BY_NAME
from declarative_conns.core.model import Address, FieldChange, Values


class DeleteReason(str, Enum):
    """Say why an object is deleted."""

    #: A row beyond the first (lowest id) of its key: Airflow 1.10 allowed several.
    DUPLICATE = "duplicate"
    #: Managed by dconn, no longer declared (Terraform's rule).
    REMOVED = "removed"
    #: Undeclared and `prune = true`.
    PRUNED = "pruned"


@dataclass(frozen=True)
class Create:
    """Create an object that does not exist."""

    address: Address
    values: Values
    #: The fields the create sets, of those the target has, in the kind's order.
    fields: tuple[str, ...]

    row_id: None = None

    @property
    def changes(self) -> tuple[FieldChange, ...]:
        """Return every field the create sets, as changes from nothing (redacted).

        Worked out when asked, not kept: they follow from the values, and a plan creating many
        objects would otherwise hold about ten small objects per create from planning to exit.
        """
        return created_changes(self.values, BY_NAME[self.address.kind], self.fields)


@dataclass(frozen=True)
class Update:
    """Change the fields of an existing object (its kept row) in place."""

    address: Address
    row_id: int | None
    values: Values
    changes: tuple[FieldChange, ...]


@dataclass(frozen=True)
class Delete:
    """Delete one stored object (one row: a duplicate is deleted row by row)."""

    address: Address
    row_id: int | None
    #: What the object holds, as stored (to show and to back up).
    values: Values
    reason: DeleteReason
    #: For a duplicate: the row of the same key that is kept.
    kept_row_id: int | None = None


@dataclass(frozen=True)
class Reencrypt:
    """Re-encrypt a row's secrets with the first key of the ring, changing nothing else (--rotate)."""

    address: Address
    row_id: int | None


Operation = Union[Create, Update, Delete, Reencrypt]


@dataclass(frozen=True)
class Drift:
    """Describe a managed object changed on the target since dconn last applied it."""

    address: Address
    #: The kept row now; None when the object was deleted.
    row_id: int | None
    deleted: bool
    changes: tuple[FieldChange, ...]


@dataclass(frozen=True)
class Summary:
    """Count what a plan does, in the words of its summary line."""

    add: int
    change: int
    destroy: int
    duplicates: int

    @property
    def has_changes(self) -> bool:
        """Tell whether applying the plan would change anything."""
        return bool(self.add or self.change or self.destroy)


#: (row id or None, fingerprint) of each stored object of one key, as the plan saw them.
Seen = tuple[tuple[int | None, str], ...]


@dataclass(frozen=True)
class Plan:
    """Hold every operation that makes the target match the configuration, and its context."""

    operations: tuple[Operation, ...]
    #: The kinds the configuration manages (its tables), in plan order.
    kinds: tuple[str, ...] = ("connection",)
    drift: tuple[Drift, ...] = ()
    unchanged: tuple[Address, ...] = ()
    unmanaged: tuple[Address, ...] = ()
    ignored: tuple[Address, ...] = ()
    #: Every stored object the plan depends on, to refuse a stale apply.
    expected: Mapping[Address, Seen] = field(default_factory=dict)
    #: Objects encrypted with a key other than the ring's first.
    old_key: tuple[Address, ...] = ()
    #: The objects a partial plan is limited to (`--target`); None: every object of its kinds.
    targets: tuple[Address, ...] | None = None

    def in_scope(self, address: Address) -> bool:
        """Tell whether the plan covers an object: one of its kinds, and a target of a partial plan."""
        return address.kind in self.kinds and (self.targets is None or address in self.targets)

    @property
    def summary(self) -> Summary:
        """Count the plan's operations."""
        add = change = destroy = duplicates = 0
        for op in self.operations:
            if isinstance(op, Create):
                add += 1
            elif isinstance(op, (Update, Reencrypt)):
                change += 1
            else:
                destroy += 1
                duplicates += op.reason is DeleteReason.DUPLICATE
        return Summary(add, change, destroy, duplicates)

    def of_kind(self, kind: str) -> tuple[Operation, ...]:
        """Return the operations on one kind of object."""
        return tuple(op for op in self.operations if op.address.kind == kind)
