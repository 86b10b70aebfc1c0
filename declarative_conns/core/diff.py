"""Explain how two objects' values differ, field by field, with every secret redacted.

Pure: no I/O. deepdiff explains the differences inside structures, but only for pairs that
differ, so comparing 100,000 unchanged objects costs one canonical comparison each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cache
from operator import itemgetter
from typing import Any

from declarative_conns.core.kinds import Kind
from declarative_conns.core.model import ChangeKind, FieldChange, Path, Values, canonical_json, same_json
from declarative_conns.core.sensitive import HIDDEN, is_sensitive_path, redact


def field_changes(
    before: Values, after: Values, kind: Kind, fields: Sequence[str]
) -> tuple[FieldChange, ...]:
    """Return the field-level differences between two values of one kind, over `fields`."""
    got, want = before.fields.get, after.fields.get
    old = {c: v for c in fields if (v := got(c)) is not None}
    new = {c: v for c in fields if (v := want(c)) is not None}
    if (not old and not new) or (old and new and same_fields(old, new)):
        return ()  # (one side empty, the other not: a create or delete, different without a test)
    secret_paths = before.secret_paths | after.secret_paths
    return tuple(explain(old, new, secret_paths, kind))


def same_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Tell whether two field mappings are the same JSON, key order ignored.

    Most compared objects are unchanged and hold their keys in one order: `same_json` (== and
    repr) answers those without the two canonical encodings.
    """
    return same_json(old, new) or canonical_json(old) == canonical_json(new)


def created_changes(after: Values, kind: Kind, fields: Sequence[str]) -> tuple[FieldChange, ...]:
    """Return what creating an object sets: `field_changes` from no values, without comparing.

    The same changes in the same order (tests/test_fast_paths.py checks it): the fields in the
    kind's reading order, a table's keys ordered by their paths' canonical JSON. A plan creating
    many objects renders these for every one.
    """
    rank = _rank(kind)
    names = [c for c in fields if after.fields.get(c) is not None]
    if any(name not in rank for name in names) or len(set(names)) != len(names):
        return field_changes(Values({}), after, kind, fields)  # fields beyond the kind's: the general way
    names.sort(key=rank.__getitem__)
    explainer = _Explainer(after.secret_paths, kind)
    changes: list[FieldChange] = []
    for name in names:
        split = explainer.split((name,), None, after.fields[name], "add")
        if len(split) > 1:
            split.sort(key=lambda c: canonical_json(list(c.path)))
        changes.extend(split)
    return tuple(changes)


def explain(
    old: Mapping[str, Any], new: Mapping[str, Any], secret_paths: frozenset[Path], kind: Kind
) -> list[FieldChange]:
    """Turn two field mappings into FieldChanges, in the kind's reading order."""
    explainer = _Explainer(secret_paths, kind)
    changes: list[FieldChange] = []
    for name in old.keys() | new.keys():
        if name not in new:
            changes.extend(explainer.split((name,), old[name], None, "remove"))
        elif name not in old:
            changes.extend(explainer.split((name,), None, new[name], "add"))
        else:
            changes.extend(explainer.field(name, old[name], new[name]))
    return _in_reading_order(changes, kind)


def _in_reading_order(changes: list[FieldChange], kind: Kind) -> list[FieldChange]:
    """Sort changes by the kind's field order, then by their paths' canonical JSON.

    The JSON of a path only orders changes of the same field: a change alone at its rank (most
    are) needs none, which spares a JSON encoding per field of every object a plan creates.
    """
    rank = _rank(kind)
    ranks = [rank.get(str(c.path[0]), len(rank)) for c in changes]
    counts = Counter(ranks)
    if len(counts) == len(ranks):
        return [c for _, c in sorted(zip(ranks, changes, strict=True), key=itemgetter(0))]
    shared = {r for r, n in counts.items() if n > 1}
    keyed = [
        ((r, canonical_json(list(c.path)) if r in shared else ""), c)
        for r, c in zip(ranks, changes, strict=True)
    ]
    return [c for _, c in sorted(keyed, key=itemgetter(0))]


@cache
def _rank(kind: Kind) -> dict[str, int]:
    """Return each field's place in a kind's reading order."""
    return {name: i for i, name in enumerate(kind.fields)}


class _Explainer:
    """Explain the changes of one pair of objects, redacting with their secret paths."""

    def __init__(self, secret_paths: frozenset[Path], kind: Kind) -> None:
        self.secret_paths = secret_paths
        self.kind = kind

    def field(self, name: str, before: Any, after: Any) -> list[FieldChange]:
        """Explain one field set on both sides: deepdiff inside a structure, else one change."""
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
                    change = _change_kind(report_type)
                    old = None if change == "add" else item.t1
                    new = None if change == "remove" else item.t2
                    changes.extend(self.split(path, old, new, change))
            return changes
        if before is after or (type(before) is type(after) and before == after):
            return []
        return self.split((name,), before, after, "change")

    def split(self, path: Path, before: Any, after: Any, change: ChangeKind) -> list[FieldChange]:
        """Return redacted changes; a whole structure added or removed is shown key by key."""
        whole = after if change == "add" else before
        if len(path) == 1 and change != "change" and isinstance(whole, dict) and whole:
            return [
                c
                for key, value in whole.items()
                for c in self.split(
                    (*path, key),
                    None if change == "add" else value,
                    value if change == "add" else None,
                    change,
                )
            ]
        sensitive = is_sensitive_path(path, self.secret_paths, self.kind)
        return [
            FieldChange(
                path,
                self.shown(before, path, sensitive),
                self.shown(after, path, sensitive),
                sensitive,
                change,
            )
        ]

    def shown(self, value: Any, path: Path, sensitive: bool) -> Any:
        """Return the value as a plan may show it: the secret marker, or redacted inside."""
        if value is None:
            return None
        if sensitive:
            return HIDDEN
        if isinstance(value, (dict, list)):
            return redact(value, path, self.secret_paths, self.kind)
        return value


def _change_kind(report_type: str) -> ChangeKind:
    """Map a deepdiff report type to add/remove/change."""
    if report_type.endswith("_added"):
        return "add"
    if report_type.endswith("_removed"):
        return "remove"
    return "change"
