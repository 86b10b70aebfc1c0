"""What dconn knows between runs, as data: which objects it manages and how it last left them.

The state's content and its JSON document (format 2; format 1, connections only, is read and
converted). Where the document lives — a file, or a table of the target database — is the
business of files.state; nothing here reads or writes anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from declarative_conns.core.model import Address, address_of, address_order, same_json
from declarative_conns.core.recorded import Form

STATE_FORMAT_VERSION = 2


@dataclass
class State:
    """Hold what dconn knows between runs: what it manages and how it last left it."""

    lineage: str = field(default_factory=lambda: str(uuid.uuid4()))
    serial: int = 0
    #: {"url": masked URL or API URL, "identity": what identifies the target}.
    target: dict[str, Any] = field(default_factory=dict)
    digest_key: dict[str, Any] = field(default_factory=dict)
    managed: set[Address] = field(default_factory=set)
    #: Each managed object as dconn last applied it (recorded form).
    applied: dict[Address, Form] = field(default_factory=dict)
    #: {"taken_at", "shape", "objects": [{"kind", "key", "id", "fingerprint", "fields"}]}.
    snapshot: dict[str, Any] = field(default_factory=dict)
    #: Through an API (which never shows secrets): the digest of each secret last sent, by path.
    sent: dict[Address, dict[str, str]] = field(default_factory=dict)
    written_at: str = ""
    #: Only in a pending state (an apply's, written before its commit): the rows its operations
    #: touch as they were before it, so a later run can tell whether it committed.
    before_apply: dict[Address, list[list[Any]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the state as its JSON document (schemas/state.schema.json)."""
        document: dict[str, Any] = {
            "format_version": STATE_FORMAT_VERSION,
            "lineage": self.lineage,
            "serial": self.serial,
            "written_at": self.written_at,
            "target": self.target,
            "digest_key": self.digest_key,
            "managed": _by_kind({a: a.key for a in self.managed}, sort=True),
            "applied": _by_kind(self.applied),
            "snapshot": self.snapshot,
        }
        if self.sent:
            document["sent"] = _by_kind(self.sent)
        if self.before_apply:
            document["before_apply"] = _by_kind(self.before_apply)
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> State:
        """Build a state from its JSON document (format 2, or format 1 converted)."""
        if document.get("format_version") == 1:
            document = _from_format_1(document)
        applied = _addressed(document["applied"])
        # The managed objects are mostly the applied ones: the same Address objects, not a second set.
        known = {(a.kind, a.key): a for a in applied}
        snapshot = dict(document["snapshot"])
        _share_applied_forms(snapshot, applied)
        return cls(
            lineage=document["lineage"],
            serial=document["serial"],
            target=dict(document["target"]),
            digest_key=dict(document["digest_key"]),
            managed={
                known.get((kind, key)) or address_of(kind, key)
                for kind, keys in document["managed"].items()
                for key in keys
            },
            applied=applied,
            snapshot=snapshot,
            sent=_addressed(document.get("sent", {})),
            before_apply=_addressed(document.get("before_apply", {})),
            written_at=document["written_at"],
        )

    def same_content(self, other: State | None) -> bool:
        """Tell whether `content()` of both states is equal, without building either document.

        Member by member, as the documents compare: `managed` as a set and `applied` and `sent`
        as mappings of addresses hold what their by-kind groupings in the document hold.
        """
        if other is None:
            return False
        mine = {k: v for k, v in self.snapshot.items() if k != "taken_at"}
        theirs = {k: v for k, v in other.snapshot.items() if k != "taken_at"}
        return (
            self.lineage == other.lineage
            and self.target == other.target
            and self.digest_key == other.digest_key
            and self.managed == other.managed
            and self.applied == other.applied
            and self.sent == other.sent
            and mine == theirs
        )

    def content(self) -> dict[str, Any]:
        """Return the content without serial and times: a plan rewrites the state only when it changes."""
        document = self.to_json()
        del document["serial"], document["written_at"]
        document.pop("before_apply", None)
        document["snapshot"] = {k: v for k, v in document["snapshot"].items() if k != "taken_at"}
        return document


def _share_applied_forms(snapshot: dict[str, Any], applied: Mapping[Address, Any]) -> None:
    """Make each snapshot entry whose fields equal the object's applied record hold that record.

    After an apply they are the same JSON: read once, they are one object, which halves what a
    large state keeps in memory and lets a plan find an unchanged object unchanged at once.
    """
    objects = snapshot.get("objects")
    if not isinstance(objects, list) or not applied:
        return
    for entry in objects:
        record = applied.get((entry.get("kind"), entry.get("key")))  # type: ignore[call-overload]
        if record is not None and same_json(entry.get("fields"), record):
            entry["fields"] = record


def _by_kind(items: Mapping[Address, Any], *, sort: bool = False) -> dict[str, Any]:
    """Group a mapping of addresses as the document does: kind -> key -> value (or sorted keys)."""
    out: dict[str, dict[str, Any]] = {}
    for address in sorted(items, key=address_order):
        out.setdefault(address.kind, {})[address.key] = items[address]
    if sort:
        return {kind: list(keys) for kind, keys in out.items()}
    return out


def _addressed(section: Mapping[str, Mapping[str, Any]]) -> dict[Address, Any]:
    """Read a kind -> key -> value section back into a mapping of addresses."""
    return {address_of(kind, key): value for kind, items in section.items() for key, value in items.items()}


def _from_format_1(document: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a format 1 state (connections only, the first release) to format 2."""
    snapshot = dict(document["snapshot"])
    snapshot["objects"] = [
        {
            "kind": "connection",
            "key": row["conn_id"],
            "id": row["id"],
            "fingerprint": row["fingerprint"],
            "fields": row["fields"],
        }
        for row in snapshot.pop("rows")
    ]
    return {
        **document,
        "format_version": STATE_FORMAT_VERSION,
        "managed": {"connection": list(document["managed"])} if document["managed"] else {},
        "applied": {"connection": dict(document["applied"])} if document["applied"] else {},
        "snapshot": snapshot,
    }
