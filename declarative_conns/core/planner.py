"""The plan's decisions: which objects to create, update, delete or re-encrypt, and the next state.

Pure: given the declared values, the stored objects, the previous state and the keys, return
the Plan (with the drift since the last apply) and the state a plan run records. Per kind the
configuration manages (a document without `[variables]` never touches variables):

- a declared key with no object: create; with one: update the fields that differ, or nothing;
  with several rows: keep the lowest id, update it, delete the duplicates;
- an undeclared key: ignored when it matches `ignore`; deleted when `prune` or when dconn managed
  it before (Terraform's rule), never when the kind protects it (default_pool); otherwise
  unmanaged, its duplicate rows deleted when `dedupe`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from declarative_conns.core.crypto import Digester, KeyRing
from declarative_conns.core.diff import field_changes
from declarative_conns.core.digests import digest_key_record, state_digester
from declarative_conns.core.drift import detect_drift, group_by_address, rekey_applied
from declarative_conns.core.kinds import BY_NAME, Kind, plan_order
from declarative_conns.core.lifecycle import IgnoredPaths, keep_ignored, without_ignored
from declarative_conns.core.model import Address, Settings, StoredObject, Values, address_order, same_json
from declarative_conns.core.model import Path as PathType
from declarative_conns.core.operations import (
    Create,
    Delete,
    DeleteReason,
    Drift,
    Operation,
    Plan,
    Reencrypt,
    Update,
)
from declarative_conns.core.recorded import Form, recorded_form, snapshot_entries
from declarative_conns.core.state import State

#: The fields each kind has on a target (its columns, or what its API returns).
Fields = Mapping[str, tuple[str, ...]]
ToForm = Callable[[Address, Values], Form]


def is_ignored(key: str, patterns: Sequence[str]) -> bool:
    """Tell whether a key matches one of the `ignore` fnmatch patterns."""
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def compute_plan(
    declared: Mapping[Address, Values],
    stored: Sequence[StoredObject],
    settings: Settings,
    kinds: Sequence[str],
    fields: Fields,
    *,
    managed: frozenset[Address] = frozenset(),
    rotate: bool = False,
    ignore_changes: IgnoredPaths | None = None,
    targets: Collection[Address] | None = None,
) -> Plan:
    """Return the operations that make the stored objects of `kinds` match the declared ones.

    `ignore_changes` names, per object, paths whose differences on an existing object are left
    alone (the target's value is kept); a create still sets them. `targets` limits the plan to
    those objects (`--target`): every other object is neither planned nor counted.
    """
    ignoring = ignore_changes or {}
    if targets is not None:
        scope = frozenset(targets)
        declared = {a: v for a, v in declared.items() if a in scope}
        stored = [o for o in stored if o.address in scope]
    in_scope = frozenset(kinds)
    groups = {a: g for a, g in group_by_address(stored).items() if a.kind in in_scope}
    operations: list[Operation] = []
    unchanged: list[Address] = []
    unmanaged: list[Address] = []
    ignored: list[Address] = []
    for address in sorted(declared, key=plan_order):
        before = len(operations)
        kind = BY_NAME[address.kind]
        wanted = kind.managed_fields(address.key, fields[address.kind])
        found = groups.get(address, [])
        lifecycle = ignoring.get(address, ())
        operations.extend(_plan_declared(address, declared[address], found, kind, wanted, lifecycle))
        if len(operations) == before:
            unchanged.append(address)
    for address in sorted(groups.keys() - declared.keys(), key=plan_order):
        found = groups[address]
        kind = BY_NAME[address.kind]
        if is_ignored(address.key, settings.ignore):
            ignored.append(address)
        elif (settings.prune or address in managed) and kind.can_delete(address.key):
            reason = DeleteReason.REMOVED if address in managed else DeleteReason.PRUNED
            operations.extend(Delete(address, o.row_id, o.values, reason) for o in found)
        else:
            unmanaged.append(address)
            if settings.dedupe:
                operations.extend(_duplicates(address, found))
    in_scope_stored = [o for o in stored if o.address.kind in in_scope]
    if rotate:
        operations.extend(_reencryptions(in_scope_stored, operations, settings))
    considered = set(declared) | {op.address for op in operations}
    expected = {a: tuple((o.row_id, o.fingerprint) for o in groups.get(a, [])) for a in sorted(considered)}
    return Plan(
        operations=tuple(operations),
        kinds=tuple(k for k in BY_NAME if k in in_scope),
        unchanged=tuple(unchanged),
        unmanaged=tuple(unmanaged),
        ignored=tuple(ignored),
        expected=expected,
        old_key=tuple(
            sorted({o.address for o in in_scope_stored if o.key_index not in (None, 0)}, key=address_order)
        ),
        targets=None if targets is None else tuple(sorted(targets, key=address_order)),
    )


def _plan_declared(
    address: Address,
    want: Values,
    found: Sequence[StoredObject],
    kind: Kind,
    fields: Sequence[str],
    ignored: Sequence[PathType] = (),
) -> list[Operation]:
    """Plan one declared object: create it, or update its kept row and drop duplicates."""
    if not found:
        return [Create(address, want, tuple(fields))]
    kept = found[0]
    aligned = kind.aligned(kept.values.fields, want.fields)  # as read_as_declared left it, mostly
    have = kept.values if aligned is kept.values.fields else Values(aligned, kept.values.secret_paths)
    want = keep_ignored(want, have, ignored)
    operations: list[Operation] = []
    changes = field_changes(have, want, kind, fields)
    if changes:
        operations.append(Update(address, kept.row_id, want, changes))
    operations.extend(_duplicates(address, found))
    return operations


def _duplicates(address: Address, found: Sequence[StoredObject]) -> list[Operation]:
    """Plan the deletion of every row of a key but the lowest id."""
    kept = found[0].row_id
    return [Delete(address, o.row_id, o.values, DeleteReason.DUPLICATE, kept) for o in found[1:]]


def _reencryptions(
    stored: Sequence[StoredObject], operations: Sequence[Operation], settings: Settings
) -> list[Operation]:
    """Plan re-encryption of old-key rows that no other operation rewrites or deletes."""
    rewritten = {(op.address, op.row_id) for op in operations}
    return [
        Reencrypt(o.address, o.row_id)
        for o in stored
        if o.key_index not in (None, 0)
        and (o.address, o.row_id) not in rewritten
        and not is_ignored(o.address.key, settings.ignore)
    ]


def read_as_declared(
    stored: Sequence[StoredObject], declared: Mapping[Address, Values]
) -> list[StoredObject]:
    """Return the stored objects with each declared one's fields read as its declaration reads them.

    A variable declared as a table is stored as JSON text: parsed here once, the plan, the drift
    check and the snapshot all compare it as the table it is (key order and whitespace are not
    changes), and the snapshot records the same form as the applied record.
    """
    out: list[StoredObject] = []
    for obj in stored:
        want = declared.get(obj.address)
        kind = BY_NAME[obj.address.kind]
        if want is not None and kind.json_text_fields:
            fields = kind.aligned(obj.values.fields, want.fields)
            if fields is not obj.values.fields:
                # A parsed table equal to the declared one is that one: one copy alive, not two.
                fields = {
                    name: want.fields[name]
                    if name in kind.json_text_fields and same_json(value, want.fields.get(name))
                    else value
                    for name, value in fields.items()
                }
                out.append(replace(obj, values=Values(fields, obj.values.secret_paths)))
                continue
        out.append(obj)
    return out


@dataclass(frozen=True)
class Planned:
    """Hold a plan and the state a plan run records (its snapshot refreshed)."""

    plan: Plan
    state: State
    warnings: tuple[str, ...] = ()


def make_plan(
    declared: Mapping[Address, Values],
    stored: Sequence[StoredObject],
    settings: Settings,
    kinds: Sequence[str],
    fields: Fields,
    previous: State | None,
    keyring: KeyRing,
    digester: Digester,
    same_key: bool,
    *,
    target: Mapping[str, object],
    shape: str,
    rotate: bool = False,
    sees_secrets: bool = True,
    ignore_changes: IgnoredPaths | None = None,
    targets: Collection[Address] | None = None,
) -> Planned:
    """Plan, find the drift of managed objects since the last apply, and prepare the next state.

    Drift at a path an object's `ignore_changes` names is not reported.
    """
    kind_map = {name: BY_NAME[name] for name in fields}
    stored = read_as_declared(stored, declared)
    snapshot: dict[str, Any] = {
        "shape": shape,
        "objects": snapshot_entries(
            stored, digester, kind_map, fields, declared, previous=_previous_entries(previous, shape)
        ),
    }
    managed = frozenset(previous.managed) if previous else frozenset()
    ignoring = ignore_changes or {}
    plan = compute_plan(
        declared,
        stored,
        settings,
        kinds,
        fields,
        managed=managed,
        rotate=rotate,
        ignore_changes=ignoring,
        targets=targets,
    )
    state = previous or State()
    warnings: list[str] = []
    if previous is not None and previous.applied:
        known = digester if same_key else state_digester(keyring, previous)

        def recorded(digests: Digester) -> ToForm:
            return lambda a, v: recorded_form(v, digests, kind_map[a.kind], _managed(a, fields))

        current = _kept_forms(stored, snapshot["objects"]) if same_key else None
        drift = detect_drift(
            previous.applied,
            stored,
            recorded(known or digester),
            managed if targets is None else managed & frozenset(targets),
            kind_map,
            # A target that hides secrets shows whether one is there, never its value.
            compare_secrets=known is not None and sees_secrets,
            current=current,
        )
        plan = replace(plan, drift=_drift_not_ignored(drift, ignoring))
        if not same_key:
            # Re-key the record (a key rotation is not drift) so the next run compares secrets again.
            state.applied = rekey_applied(
                previous.applied, stored, kind_map, recorded(known) if known else None, recorded(digester)
            )
            if known is None:
                warnings.append(
                    "the Fernet key changed since the state was written and the previous key is no longer in "
                    "the key ring: secrets changed outside dconn before this run cannot be detected; the state "
                    "now records the target's current ones"
                )
    state.target = dict(target)
    state.digest_key = digest_key_record(digester)
    state.snapshot = snapshot
    return Planned(plan, state, tuple(warnings))


def _previous_entries(previous: State | None, shape: str) -> list[Any]:
    """Return the last snapshot's entries, when it was taken of a table of the same shape."""
    if previous is None or previous.snapshot.get("shape") != shape:
        return []
    entries = previous.snapshot.get("objects", [])
    return entries if isinstance(entries, list) else []


def _drift_not_ignored(drift: Sequence[Drift], ignoring: IgnoredPaths) -> tuple[Drift, ...]:
    """Return the drift without the changes at ignored paths (an object left with none is dropped)."""
    kept = []
    for found in drift:
        ignored = ignoring.get(found.address, ())
        if found.deleted or not ignored:
            kept.append(found)
            continue
        changes = without_ignored(found.changes, ignored)
        if changes:
            kept.append(replace(found, changes=changes))
    return tuple(kept)


def _managed(address: Address, fields: Fields) -> tuple[str, ...]:
    """Return the fields dconn manages on one object (default_pool: slots and include_deferred)."""
    return BY_NAME[address.kind].managed_fields(address.key, fields[address.kind])


_KIND_INDEX = {name: i for i, name in enumerate(BY_NAME)}


def snapshot_order(obj: StoredObject) -> tuple[int, int, str]:
    """Order objects as a target reads them: kind by kind, by row id (by key where there are no ids)."""
    return (
        _KIND_INDEX[obj.address.kind],
        obj.row_id if obj.row_id is not None else -1,
        obj.address.key,
    )


def _kept_forms(stored: Sequence[StoredObject], entries: Sequence[Mapping[str, Any]]) -> dict[Address, Form]:
    """Return each address's recorded form in a snapshot, of its kept row (the lowest id).

    `entries` are the snapshot entries of `stored`, in the same order (snapshot_entries).
    """
    forms: dict[Address, Form] = {}
    kept: dict[Address, int] = {}
    for obj, entry in zip(stored, entries, strict=True):
        row = obj.row_id if isinstance(obj.row_id, int) else -1
        if row < kept.get(obj.address, row + 1):
            kept[obj.address] = row
            forms[obj.address] = entry["fields"]
    return forms


def state_after_apply(
    state: State,
    plan: Plan,
    declared: Mapping[Address, Values],
    stored: Sequence[StoredObject],
    done: Sequence[Operation],
    new_ids: Mapping[Address, int | None],
    fingerprints: Mapping[tuple[Address, int | None], str],
    digester: Digester,
    fields: Fields,
) -> State:
    """Return the state after carrying out `done` (all of the plan, or what a target wrote before failing).

    dconn then manages every declared object of the plan's kinds that exists (an apply with
    nothing to do adopts them, as after `dconn export`), records how it left each, and the
    snapshot reflects the writes without reading the target again.
    """
    kind_map = {name: BY_NAME[name] for name in fields}
    by_row = {(o.address, o.row_id): o for o in stored}
    key_index = 0 if digester.source == "fernet" else None  # written with the ring's first key, or in clear
    for op in done:
        if isinstance(op, Delete):
            by_row.pop((op.address, op.row_id), None)
        elif isinstance(op, (Create, Update)):
            row_id = new_ids.get(op.address) if isinstance(op, Create) else op.row_id
            # As the next plan will read it (default_pool's unmanaged description as it was; a
            # variable's table as the table: read_as_declared parses its text), so the next
            # plan's snapshot equals this one.
            new = op.values.fields
            old = by_row.get((op.address, row_id))
            if old is not None:
                new = {**old.values.fields, **{f: new.get(f) for f in _managed(op.address, fields)}}
            # Stored as declared (a created connection): the declared values themselves, whose
            # recorded form the snapshot then takes from `applied` instead of working it out again.
            written = op.values if new is op.values.fields else Values(new, op.values.secret_paths)
            by_row[(op.address, row_id)] = StoredObject(
                op.address, row_id, written, fingerprints[(op.address, row_id)], key_index
            )
        else:
            old = by_row[(op.address, op.row_id)]
            by_row[(op.address, op.row_id)] = StoredObject(
                op.address, op.row_id, old.values, fingerprints[(op.address, op.row_id)], 0
            )
    after = read_as_declared(sorted(by_row.values(), key=snapshot_order), declared)
    present = {o.address for o in after}
    failed = {op.address for op in plan.operations} - {op.address for op in done}
    adopted = {a for a in declared if a in present and a not in failed and plan.in_scope(a)}
    # A partial plan (--target) leaves what the state says of every other object as it was.
    state.managed = {a for a in state.managed if not plan.in_scope(a) or a in failed} | adopted
    applied = {a: f for a, f in state.applied.items() if not plan.in_scope(a) or a in failed}
    applied.update(
        {a: recorded_form(declared[a], digester, kind_map[a.kind], _managed(a, fields)) for a in adopted}
    )
    state.applied = applied
    state.snapshot = {
        **state.snapshot,
        "objects": snapshot_entries(after, digester, kind_map, fields, declared, applied),
    }
    return state
