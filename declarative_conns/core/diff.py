"""Compare desired connections with the rows of the database and produce a Plan.

Pure: no I/O. deepdiff explains the differences, but only for pairs that differ, so a plan
over 100,000 unchanged connections costs one canonical comparison each.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from declarative_conns.core.model import (
    Action,
    Drift,
    FieldChange,
    Path,
    Plan,
    Settings,
    StoredRow,
    Values,
    canonical_json,
)
from declarative_conns.core.sensitive import HIDDEN, is_sensitive_path, redact


def compute_plan(
    desired: Mapping[str, Values],
    rows: Sequence[StoredRow],
    settings: Settings,
    columns: Iterable[str],
    *,
    managed: frozenset[str] = frozenset(),
    rotate: bool = False,
) -> Plan:
    """Return the actions that make the rows match the desired connections.

    With `rotate`, rows encrypted with an older key of the ring are re-encrypted with the first,
    as `airflow rotate-fernet-key` does.
    """
    columns = tuple(columns)
    by_conn = group_rows(rows)
    actions: list[Action] = []
    unchanged: list[str] = []
    unmanaged: list[str] = []
    ignored: list[str] = []
    for conn_id in sorted(desired):
        found = by_conn.get(conn_id, [])
        before = len(actions)
        actions.extend(_plan_declared(conn_id, desired[conn_id], found, columns))
        if len(actions) == before:
            unchanged.append(conn_id)
    for conn_id in sorted(set(by_conn) - set(desired)):
        found = by_conn[conn_id]
        if is_ignored(conn_id, settings.ignore):
            ignored.append(conn_id)
        elif settings.prune or conn_id in managed:
            reason = "removed" if conn_id in managed else "pruned"
            actions.extend(Action("delete", conn_id, r.row_id, (), r.values, reason) for r in found)
        else:
            unmanaged.append(conn_id)
            if settings.dedupe:
                actions.extend(_delete_duplicates(conn_id, found))
    if rotate:
        actions.extend(_rotations(rows, actions, settings))
    considered = set(desired) | {a.conn_id for a in actions}
    expected = {c: tuple((r.row_id, r.fingerprint) for r in by_conn.get(c, [])) for c in sorted(considered)}
    old_key = sorted({r.conn_id for r in rows if r.key_index not in (None, 0)})
    return Plan(
        actions=tuple(actions),
        unchanged=tuple(unchanged),
        unmanaged=tuple(unmanaged),
        ignored=tuple(ignored),
        expected=expected,
        old_key_rows=tuple(old_key),
    )


def _rotations(rows: Sequence[StoredRow], actions: Sequence[Action], settings: Settings) -> list[Action]:
    """Plan re-encryption of old-key rows that no other action rewrites or deletes."""
    rewritten = {a.row_id for a in actions}
    return [
        Action("update", r.conn_id, r.row_id, (), None, "rotate")
        for r in rows
        if r.key_index not in (None, 0)
        and r.row_id not in rewritten
        and not is_ignored(r.conn_id, settings.ignore)
    ]


def group_rows(rows: Iterable[StoredRow]) -> dict[str, list[StoredRow]]:
    """Group rows by conn_id, each group sorted by row id (the lowest is the one kept)."""
    groups: dict[str, list[StoredRow]] = {}
    for row in rows:
        groups.setdefault(row.conn_id, []).append(row)
    for group in groups.values():
        group.sort(key=lambda r: r.row_id)
    return groups


def is_ignored(conn_id: str, patterns: Sequence[str]) -> bool:
    """Tell whether a conn_id matches one of the `ignore` fnmatch patterns."""
    return any(fnmatch.fnmatchcase(conn_id, p) for p in patterns)


def _plan_declared(
    conn_id: str, want: Values, found: Sequence[StoredRow], columns: Sequence[str]
) -> list[Action]:
    """Plan one declared connection: create it, or update its kept row and drop duplicates."""
    if not found:
        changes = field_changes(Values({}), want, columns)
        return [Action("create", conn_id, None, changes, want)]
    kept = found[0]
    actions: list[Action] = []
    changes = field_changes(kept.values, want, columns)
    if changes:
        actions.append(Action("update", conn_id, kept.row_id, changes, want))
    actions.extend(_delete_duplicates(conn_id, found))
    return actions


def _delete_duplicates(conn_id: str, found: Sequence[StoredRow]) -> list[Action]:
    """Plan the deletion of every row of a conn_id but the lowest id."""
    kept = found[0].row_id
    return [
        Action("delete", conn_id, r.row_id, (), r.values, "duplicate", kept_row_id=kept) for r in found[1:]
    ]


def field_changes(before: Values, after: Values, columns: Sequence[str]) -> tuple[FieldChange, ...]:
    """Return the field-level differences between two connections' values."""
    old = {c: before.fields.get(c) for c in columns if before.fields.get(c) is not None}
    new = {c: after.fields.get(c) for c in columns if after.fields.get(c) is not None}
    if (not old and not new) or (old and new and canonical_json(old) == canonical_json(new)):
        return ()  # (one side empty, the other not: a create or delete, different without a test)
    secret_paths = before.secret_paths | after.secret_paths
    return tuple(_explain(old, new, secret_paths))


def _explain(
    old: Mapping[str, Any], new: Mapping[str, Any], secret_paths: frozenset[Path]
) -> list[FieldChange]:
    """Turn deepdiff's tree report into FieldChanges, in field order."""
    changes: list[FieldChange] = []
    if not old or not new:
        # deepdiff reports a whole-dict change at the root; a create or delete reads better field by field.
        return _whole(new, "add", secret_paths) if new else _whole(old, "remove", secret_paths)
    for name in old.keys() | new.keys():
        if name not in new:
            changes.extend(_split_extra((name,), old[name], None, "remove", secret_paths))
        elif name not in old:
            changes.extend(_split_extra((name,), None, new[name], "add", secret_paths))
        else:
            changes.extend(_field_explained(name, old[name], new[name], secret_paths))
    return sorted(changes, key=lambda c: _reading_order(c.path))


def _whole(fields: Mapping[str, Any], kind: Any, secret_paths: frozenset[Path]) -> list[FieldChange]:
    """Return every field of a connection created or deleted as one change, extra key by key.

    What _split_extra gives for each field, written out: it runs for every field of every
    connection a plan creates.
    """
    changes: list[FieldChange] = []
    for name, value in fields.items():
        pairs = value.items() if name == "extra" and isinstance(value, dict) and value else ((None, value),)
        for key, item in pairs:
            path: Path = (name,) if key is None else (name, key)
            sensitive = is_sensitive_path(path, secret_paths)
            shown = _shown(item, path, sensitive, secret_paths)
            if kind == "add":
                changes.append(FieldChange(path, None, shown, sensitive, kind))
            else:
                changes.append(FieldChange(path, shown, None, sensitive, kind))
    changes.sort(key=lambda c: _reading_order(c.path))
    return changes


def _field_explained(name: str, before: Any, after: Any, secret_paths: frozenset[Path]) -> list[FieldChange]:
    """Explain one field set on both sides: deepdiff inside a structure (extra), else one change.

    The same report deepdiff gives for the whole row, at a fraction of its cost per changed
    connection: a top-level scalar differs when its type or value does (values_changed or
    type_changes), and deepdiff runs only on a pair of structures.
    """
    if type(before) is type(after) and isinstance(before, (dict, list)):
        if before == after and canonical_json(before) == canonical_json(after):
            return []  # both tests: == alone takes True for 1, canonical JSON alone takes NaN for NaN
        from deepdiff import DeepDiff

        # threshold 0: always explain key by key, never as one whole-structure change.
        report = DeepDiff(before, after, view="tree", verbose_level=2, threshold_to_diff_deeper=0)
        changes: list[FieldChange] = []
        for report_type, items in report.items():
            for item in items:
                path: Path = (name, *item.path(output_format="list"))
                kind = _kind(report_type)
                old = None if kind == "add" else item.t1
                new = None if kind == "remove" else item.t2
                changes.extend(_split_extra(path, old, new, kind, secret_paths))
        return changes
    if before is after or (type(before) is type(after) and before == after):
        return []
    return _split_extra((name,), before, after, "change", secret_paths)


def _split_extra(
    path: Path, before: Any, after: Any, kind: Any, secret_paths: frozenset[Path]
) -> list[FieldChange]:
    """Return redacted changes; a whole extra added or removed is shown key by key."""
    whole = after if kind == "add" else before
    if path == ("extra",) and kind != "change" and isinstance(whole, dict) and whole:
        return [
            c
            for key, value in whole.items()
            for c in _split_extra(
                ("extra", key),
                None if kind == "add" else value,
                value if kind == "add" else None,
                kind,
                secret_paths,
            )
        ]
    sensitive = is_sensitive_path(path, secret_paths)
    return [
        FieldChange(
            path,
            _shown(before, path, sensitive, secret_paths),
            _shown(after, path, sensitive, secret_paths),
            sensitive,
            kind,
        )
    ]


def _shown(value: Any, path: Path, sensitive: bool, secret_paths: frozenset[Path]) -> Any:
    """Return redact(value, path, secret_paths), the path's sensitivity being known already."""
    if value is None:
        return None
    if sensitive:
        return HIDDEN
    if isinstance(value, (dict, list)):
        return redact(value, path, secret_paths)
    return value


def _kind(report_type: str) -> Any:
    """Map a deepdiff report type to add/remove/change."""
    if report_type.endswith("_added"):
        return "add"
    if report_type.endswith("_removed"):
        return "remove"
    return "change"


_RANK = {
    name: i
    for i, name in enumerate(
        ("conn_type", "description", "host", "schema", "login", "password", "port", "extra")
    )
}


@lru_cache(maxsize=8192)
def _reading_order(path: Path) -> tuple[int, str]:
    """Return the sort key of a change's path (cached: the same paths recur in every connection)."""
    return _field_rank(path), canonical_json(list(path))


def _field_rank(path: Path) -> int:
    """Order changes as people read a connection: conn_type first, extra last."""
    return _RANK.get(str(path[0]), len(_RANK)) if path else -1


def detect_drift(
    applied: Mapping[str, Mapping[str, Any]],
    rows: Sequence[StoredRow],
    to_recorded: Callable[[Values], Mapping[str, Any]],
    managed: frozenset[str],
    *,
    compare_secrets: bool = True,
    current: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[Drift, ...]:
    """Return managed connections whose rows differ from what dconn last applied.

    `to_recorded` must digest with the key the applied record was made with. Without that key
    (`compare_secrets=False`) a secret's presence is compared, not its value.

    `current` may hold recorded forms of each conn_id's kept row, made with that same key (the
    snapshot's). A form identical to the applied record means no drift: digesting the row at the
    record's digest paths, as below, gives that same form. Any other form is worked out in full.
    """
    by_conn = group_rows(rows)
    drift: list[Drift] = []
    known: Mapping[str, Mapping[str, Any]] = current if compare_secrets and current is not None else {}
    for conn_id in sorted(managed & set(applied)):
        found = by_conn.get(conn_id)
        if not found:
            drift.append(Drift(conn_id, None, ()))
            continue
        recorded = applied[conn_id]
        if _identical(known.get(conn_id), recorded):
            continue
        form = to_recorded(with_recorded_secrets(found[0].values, recorded))
        changes = _recorded_changes(recorded, form, compare_secrets)
        if changes:
            drift.append(Drift(conn_id, found[0].row_id, changes))
    return tuple(drift)


def _identical(form: Mapping[str, Any] | None, recorded: Mapping[str, Any]) -> bool:
    """Tell whether two recorded forms are the same JSON, types included (True is not 1).

    repr of JSON values differs whenever their JSON does; it also differs when only the order of
    keys does, which merely sends the comparison the long way.
    """
    return form is not None and form == recorded and repr(form) == repr(recorded)


def with_recorded_secrets(values: Values, recorded: Mapping[str, Any]) -> Values:
    """Return the values with every path the record holds as a digest marked secret.

    A value declared through a secret reference (a `login` from_env, say) is recorded as a
    digest although the database holds it in clear; it must be digested there too to compare.
    """
    found: list[Path] = []
    _digest_paths(dict(recorded), (), found)
    paths = frozenset(found)
    if paths <= values.secret_paths:
        return values
    return Values(values.fields, values.secret_paths | paths)


def _digest_paths(value: Any, path: Path, found: list[Path]) -> None:
    """Add the paths of a recorded form where a secret's digest stands to `found`."""
    # Recursion only into containers, without generators: this runs for every managed row.
    if _is_digest_object(value):
        found.append(path)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                _digest_paths(item, (*path, key), found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, (dict, list)):
                _digest_paths(item, (*path, index), found)


def rekey_applied(
    applied: Mapping[str, Mapping[str, Any]],
    rows: Sequence[StoredRow],
    to_old: Callable[[Values], Mapping[str, Any]] | None,
    to_new: Callable[[Values], Mapping[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Return the applied records with their digests made with a new digest key.

    A digest is replaced by the new digest of the database's value where the old key shows that
    value is the one recorded; a drifted secret keeps its old digest, so it still shows as changed.
    Without the old key (`to_old` None) nothing can be checked and the database's values are taken.
    """
    by_conn = group_rows(rows)
    out: dict[str, dict[str, Any]] = {}
    for conn_id, recorded in applied.items():
        found = by_conn.get(conn_id)
        if not found:
            out[conn_id] = dict(recorded)
            continue
        values = with_recorded_secrets(found[0].values, recorded)
        old = to_old(values) if to_old is not None else None
        out[conn_id] = _rekey(dict(recorded), old, to_new(values), verify=to_old is not None)
    return out


def _rekey(recorded: Any, old: Any, new: Any, *, verify: bool) -> Any:
    """Swap each digest of a record for the new one where the old one still matches."""
    if _is_digest_object(recorded):
        unchanged = not verify or old == recorded
        return new if unchanged and _is_digest_object(new) else recorded
    if isinstance(recorded, dict):
        return {k: _rekey(v, _child(old, k), _child(new, k), verify=verify) for k, v in recorded.items()}
    if isinstance(recorded, list):
        return [_rekey(v, _child(old, i), _child(new, i), verify=verify) for i, v in enumerate(recorded)]
    return recorded


def _child(value: Any, key: str | int) -> Any:
    """Return a dict's item or a list's element, None when absent."""
    if isinstance(value, dict):
        return value.get(key)
    if isinstance(value, list) and isinstance(key, int) and key < len(value):
        return value[key]
    return None


def _recorded_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], compare_secrets: bool = True
) -> tuple[FieldChange, ...]:
    """Compare two recorded (digested) forms of a connection field by field."""
    old = {k: v for k, v in old.items() if v is not None}
    new = {k: v for k, v in new.items() if v is not None}
    if canonical_json(old) == canonical_json(new):
        return ()  # equal as recorded, so equal with digests flattened too: the common case
    old = {k: _flatten_digests(v, compare_secrets) for k, v in old.items() if v is not None}
    new = {k: _flatten_digests(v, compare_secrets) for k, v in new.items() if v is not None}
    if canonical_json(old) == canonical_json(new):
        return ()
    changes = _explain(old, new, frozenset())
    return tuple(
        FieldChange(
            c.path, _hide_digests(c.before), _hide_digests(c.after), c.sensitive or _is_digest(c), c.kind
        )
        for c in changes
    )


#: Recorded secrets are {"$digest": "<hex>"}; flattened to one string so a change shows at
#: the secret's own path, never inside the digest object.
DIGEST_KEY = "$digest"
_DIGEST_PREFIX = "\x00digest:"


def _flatten_digests(value: Any, keep_value: bool = True) -> Any:
    """Replace every recorded digest object by a marked string (the same for all without `keep_value`)."""
    if _is_digest_object(value):
        return _DIGEST_PREFIX + (str(value[DIGEST_KEY]) if keep_value else "?")
    if isinstance(value, dict):
        return {k: _flatten_digests(v, keep_value) for k, v in value.items()}
    if isinstance(value, list):
        return [_flatten_digests(v, keep_value) for v in value]
    return value


def _is_digest_object(value: Any) -> bool:
    """Tell whether a recorded value is a secret's digest object."""
    return isinstance(value, dict) and len(value) == 1 and DIGEST_KEY in value


def _hide_digests(value: Any) -> Any:
    """Replace flattened digests inside a shown value by the secret marker."""
    if isinstance(value, str) and value.startswith(_DIGEST_PREFIX):
        return HIDDEN
    if isinstance(value, dict):
        return {k: _hide_digests(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide_digests(v) for v in value]
    return value


def _is_digest(change: FieldChange) -> bool:
    """Tell whether either side of a change is a secret's digest rather than a value."""
    return any(isinstance(v, str) and v.startswith(_DIGEST_PREFIX) for v in (change.before, change.after))
