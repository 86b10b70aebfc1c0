"""Find managed objects changed on the target since dconn last applied them ("changed outside dconn").

The state records each managed object as dconn applied it (its recorded form, secrets as
digests); the drift is the difference between that record and the object's recorded form now.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from declarative_conns.core.diff import explain, same_fields
from declarative_conns.core.kinds import Kind, plan_order
from declarative_conns.core.model import Address, FieldChange, StoredObject, Values, same_json
from declarative_conns.core.operations import Drift
from declarative_conns.core.recorded import DIGEST_KEY, Form, is_digest, with_recorded_secrets
from declarative_conns.core.sensitive import HIDDEN

#: Turns a stored object's values into a recorded form with the record's digest key.
ToRecorded = Callable[[Address, Values], Form]


def group_by_address(objects: Iterable[StoredObject]) -> dict[Address, list[StoredObject]]:
    """Group stored objects by address, each group sorted by row id (the lowest is the one kept)."""
    groups: dict[Address, list[StoredObject]] = {}
    for obj in objects:
        groups.setdefault(obj.address, []).append(obj)
    for group in groups.values():
        if len(group) > 1:
            group.sort(key=lambda o: o.row_id if o.row_id is not None else -1)
    return groups


def detect_drift(
    applied: Mapping[Address, Form],
    stored: Sequence[StoredObject],
    to_recorded: ToRecorded,
    managed: frozenset[Address],
    kinds: Mapping[str, Kind],
    *,
    compare_secrets: bool = True,
    current: Mapping[Address, Form] | None = None,
) -> tuple[Drift, ...]:
    """Return managed objects whose stored form differs from what dconn last applied.

    `to_recorded` must digest with the key the applied record was made with. Without that key
    (`compare_secrets=False`) a secret's presence is compared, not its value. `current` may hold
    the recorded forms of each kept object made with that same key (the snapshot's): a form
    identical to the record means no drift without working it out again.
    """
    groups = group_by_address(stored)
    known = current if compare_secrets and current is not None else {}
    drift: list[Drift] = []
    for address in sorted(managed & applied.keys(), key=plan_order):
        found = groups.get(address)
        if not found:
            drift.append(Drift(address, None, True, ()))
            continue
        record = applied[address]
        if _identical(known.get(address), record):
            continue
        kind = kinds[address.kind]
        kept = found[0]
        values = Values(kind.aligned(kept.values.fields, record), kept.values.secret_paths)
        form = to_recorded(address, with_recorded_secrets(values, record))
        changes = _recorded_changes(record, form, kind, compare_secrets)
        if changes:
            drift.append(Drift(address, kept.row_id, False, changes))
    return tuple(drift)


def _identical(form: Mapping[str, Any] | None, record: Mapping[str, Any]) -> bool:
    """Tell whether two recorded forms are the same JSON, types included (True is not 1)."""
    # One object when the state read the snapshot's form and the record as one.
    return form is not None and same_json(form, record)


def _recorded_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], kind: Kind, compare_secrets: bool
) -> tuple[FieldChange, ...]:
    """Compare two recorded (digested) forms of an object field by field."""
    old = {k: v for k, v in old.items() if v is not None}
    new = {k: v for k, v in new.items() if v is not None}
    if same_fields(old, new):
        return ()
    old = {k: _flatten_digests(v, compare_secrets) for k, v in old.items()}
    new = {k: _flatten_digests(v, compare_secrets) for k, v in new.items()}
    if same_fields(old, new):
        return ()
    return tuple(
        FieldChange(
            c.path, _hide_digests(c.before), _hide_digests(c.after), c.sensitive or _is_flat_digest(c), c.kind
        )
        for c in explain(old, new, frozenset(), kind)
    )


def rekey_applied(
    applied: Mapping[Address, Form],
    stored: Sequence[StoredObject],
    kinds: Mapping[str, Kind],
    to_old: ToRecorded | None,
    to_new: ToRecorded,
) -> dict[Address, Form]:
    """Return the applied records with their digests made with a new digest key.

    A digest is replaced by the new digest of the target's value where the old key shows that
    value is the one recorded; a drifted secret keeps its old digest, so it still shows as
    changed. Without the old key (`to_old` None) the target's values are taken.
    """
    groups = group_by_address(stored)
    out: dict[Address, Form] = {}
    for address, record in applied.items():
        found = groups.get(address)
        if not found:
            out[address] = dict(record)
            continue
        kind = kinds[address.kind]
        values = Values(kind.aligned(found[0].values.fields, record), found[0].values.secret_paths)
        values = with_recorded_secrets(values, record)
        old = to_old(address, values) if to_old is not None else None
        out[address] = _rekey(dict(record), old, to_new(address, values), verify=to_old is not None)
    return out


def _rekey(record: Any, old: Any, new: Any, *, verify: bool) -> Any:
    """Swap each digest of a record for the new one where the old one still matches."""
    if is_digest(record):
        unchanged = not verify or old == record
        return new if unchanged and is_digest(new) else record
    if isinstance(record, dict):
        return {k: _rekey(v, _child(old, k), _child(new, k), verify=verify) for k, v in record.items()}
    if isinstance(record, list):
        return [_rekey(v, _child(old, i), _child(new, i), verify=verify) for i, v in enumerate(record)]
    return record


def _child(value: Any, key: str | int) -> Any:
    """Return a dict's item or a list's element, None when absent."""
    if isinstance(value, dict):
        return value.get(key)
    if isinstance(value, list) and isinstance(key, int) and key < len(value):
        return value[key]
    return None


#: A digest flattened to one string, so a change shows at the secret's own path.
_DIGEST_PREFIX = "\x00digest:"


def _flatten_digests(value: Any, keep_value: bool = True) -> Any:
    """Replace every digest object by a marked string (the same for all without `keep_value`)."""
    if is_digest(value):
        return _DIGEST_PREFIX + (str(value[DIGEST_KEY]) if keep_value else "?")
    if isinstance(value, dict):
        return {k: _flatten_digests(v, keep_value) for k, v in value.items()}
    if isinstance(value, list):
        return [_flatten_digests(v, keep_value) for v in value]
    return value


def _hide_digests(value: Any) -> Any:
    """Replace flattened digests inside a shown value by the secret marker."""
    if isinstance(value, str) and value.startswith(_DIGEST_PREFIX):
        return HIDDEN
    if isinstance(value, dict):
        return {k: _hide_digests(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide_digests(v) for v in value]
    return value


def _is_flat_digest(change: FieldChange) -> bool:
    """Tell whether either side of a change is a secret's digest rather than a value."""
    return any(isinstance(v, str) and v.startswith(_DIGEST_PREFIX) for v in (change.before, change.after))
