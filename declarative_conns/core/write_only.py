"""Secrets a target never shows: what dconn takes them to be, and how many it takes on trust.

A REST API answers `***` for a password, a sensitive extra key, a sensitive variable's value;
Airflow 2's never says whether a connection has a password at all. The state records the keyed
digest of every secret dconn sent (the applied record). Before planning, each hidden value of a
stored object is filled in:

- with the declared value when the record's digest is that value's: dconn sent it and nothing
  shows otherwise, so it counts as unchanged (a value the API does not let dconn verify);
- with the recorded value when the record holds it in clear (a key Airflow hides but dconn does
  not call secret);
- else it stays hidden (`***`), which differs from any declared value: the plan sends it.

`resend` fills nothing, so every declared secret is sent again. Drift then compares a hidden
secret's presence only (the value cannot be seen), which the planner does for such targets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from declarative_conns.core.crypto import Digester
from declarative_conns.core.model import Address, Path, StoredObject, Values, canonical_json
from declarative_conns.core.recorded import DIGEST_KEY, Form, is_digest

#: What Airflow's API answers in place of a secret.
MASK = "***"


@dataclass(frozen=True)
class Filled:
    """Hold the stored objects with their hidden secrets filled in, and how many were taken on trust."""

    objects: list[StoredObject]
    #: Secret values taken to be what dconn last sent, which the target does not let it verify.
    unverified: int
    #: Secret values the target shows no trace of (Airflow 2's passwords), with no record to go by.
    unknown: int = 0


def fill_hidden(
    stored: Sequence[StoredObject],
    declared: Mapping[Address, Values],
    applied: Mapping[Address, Form],
    digester: Digester | None,
    *,
    resend: bool = False,
    unseen: Mapping[str, frozenset[str]] | None = None,
) -> Filled:
    """Return the stored objects with each hidden value filled in as the module says.

    `digester` is the one the record's digests were made with (None: they cannot be compared).
    `unseen` names, per kind, fields the target never returns (Airflow 2's password): one the
    record holds is taken as present and hidden; one it lacks as absent.
    """
    unseen = unseen or {}
    out: list[StoredObject] = []
    unverified = unknown = 0
    for obj in stored:
        record = applied.get(obj.address) if digester is not None else None
        want = declared.get(obj.address)
        fields = dict(obj.values.fields)
        for name in unseen.get(obj.address.kind, ()):
            if fields.get(name) is None and record is not None and record.get(name) is not None:
                fields[name] = MASK
            elif fields.get(name) is None and want is not None and want.get(name) is None:
                unknown += 1
        hidden = list(_hidden_paths(fields))
        if not hidden:
            out.append(obj)
            continue
        for path in hidden:
            value = _decide(path, want, record, digester, resend)
            if value is not _KEEP:
                fields = _set(fields, path, value)
                unverified += 1
        secret = obj.values.secret_paths | frozenset(hidden)
        out.append(
            StoredObject(obj.address, obj.row_id, Values(fields, secret), obj.fingerprint, obj.key_index)
        )
    return Filled(out, unverified, unknown)


_KEEP = object()


def _decide(
    path: Path, want: Values | None, record: Form | None, digester: Digester | None, resend: bool
) -> Any:
    """Return what a hidden value is taken to be, or _KEEP to leave it hidden."""
    if resend or record is None or digester is None:
        return _KEEP
    recorded = _at(record, path)
    if recorded is None:
        return _KEEP
    if not is_digest(recorded):
        return recorded
    wanted = _at(want.fields, path) if want is not None else None
    if wanted is None:
        return _KEEP
    return wanted if digester.digest(wanted) == recorded[DIGEST_KEY] else _KEEP


def _hidden_paths(fields: Mapping[str, Any]) -> list[Path]:
    """Return the path of every value the target hid (`***`), inside structures too."""
    found: list[Path] = []
    stack: list[tuple[Any, Path]] = [(value, (name,)) for name, value in fields.items()]
    while stack:
        value, path = stack.pop()
        if value == MASK and isinstance(value, str):
            found.append(path)
        elif isinstance(value, dict):
            stack.extend((item, (*path, key)) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))
    return sorted(found, key=canonical_json)


def _at(value: Any, path: Path) -> Any:
    """Return the value at a path, None when absent."""
    for part in path:
        if isinstance(value, dict) and isinstance(part, str):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            return None
    return value


def _set(fields: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    """Return the fields with the value at a path replaced (structures copied, never changed in place)."""

    def put(node: Any, rest: Path) -> Any:
        if not rest:
            return value
        head, tail = rest[0], rest[1:]
        if isinstance(node, dict):
            return {**node, head: put(node[head], tail)}
        copy = list(node)
        assert isinstance(head, int)
        copy[head] = put(copy[head], tail)
        return copy

    return put(fields, path)  # type: ignore[no-any-return]


def hidden_in(values: Values) -> bool:
    """Tell whether a value about to be written holds `***`, which a target would store as it is."""
    return bool(_hidden_paths(dict(values.fields)))
