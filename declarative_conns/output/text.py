"""Render a Plan as text a person reads in a terminal, with Terraform's symbols.

Pure: every value shown passed through the core's redaction, so no render can contain a secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from declarative_conns.core.kinds import BY_NAME, plan_order
from declarative_conns.core.model import Address, FieldChange, Path, Values
from declarative_conns.core.operations import Create, Delete, DeleteReason, Drift, Operation, Plan, Reencrypt
from declarative_conns.core.sensitive import HIDDEN, redact

PLAN_FORMAT_VERSION = 1
_SYMBOL = {"add": "+", "remove": "-", "change": "~"}
_WHY = {
    DeleteReason.REMOVED: "no longer in the configuration",
    DeleteReason.PRUNED: "not in the configuration, prune = true",
}


@dataclass(frozen=True)
class PlanContext:
    """Describe what the plan was computed against, for its heading."""

    target: str
    #: "Airflow 2.x table", "Airflow 3.3.2 REST API /api/v2".
    description: str
    shape: str
    #: kind -> (objects, rows) the target holds, for every kind the plan manages.
    counts: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    verbose: bool = False
    #: Notes the target adds under the heading (what it cannot verify, a partial plan).
    notes: tuple[str, ...] = ()
    #: Where objects live, as drift reports name it.
    where: str = "the database"
    #: Whether the heading counts rows (a database may hold several rows of one key; an API cannot).
    counts_rows: bool = True
    #: With -v: the file that set each planned change, by object and field path (layers).
    origins: Mapping[tuple[Address, Path], str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Return how many connection rows the target holds."""
        return self.counts.get("connection", (0, 0))[1]

    @property
    def connections(self) -> int:
        """Return how many distinct conn_ids the target holds."""
        return self.counts.get("connection", (0, 0))[0]


def heading(context: PlanContext) -> str:
    """Return `postgresql://…/airflow (Airflow 2.x table, 3 connections in 4 rows)`."""
    parts = []
    for kind, (objects, rows) in context.counts.items():
        text = count(objects, kind)
        if rows != objects or (kind == "connection" and context.counts_rows):
            text += f" in {count(rows, 'row')}"
        parts.append(text)
    description = context.description
    if len(context.counts) > 1 and description.endswith(" table"):
        description += "s"
    return (
        f"{context.target} ({description}, {', '.join(parts)})"
        if parts
        else f"{context.target} ({description})"
    )


def render_text(plan: Plan, context: PlanContext) -> str:
    """Return the plan as a person reads it in a terminal."""
    lines = [f"Target: {heading(context)}", ""]
    lines += [*(f"Note: {note}" for note in context.notes), *([""] if context.notes else [])]
    if plan.drift:
        lines += ["Note: objects have changed outside dconn since the last apply", ""]
        for drift in plan.drift:
            lines += [*_drift_block(drift, context.where), ""]
    if plan.old_key:
        rotating = any(isinstance(op, Reencrypt) for op in plan.operations)
        lines += [
            f"Note: {count(len(plan.old_key), noun_of(plan.old_key))} encrypted with an older Fernet key (not the "
            "first of the ring): "
            + ", ".join(a.key for a in plan.old_key)
            + ("" if rotating else "; --rotate re-encrypts them"),
            "",
        ]
    if plan.summary.has_changes:
        lines += ["dconn will perform the following actions:", ""]
        for block in _operation_blocks(plan.operations, context.origins if context.verbose else {}):
            lines += [*block, ""]
    lines += _tail(plan, context)
    return "\n".join(lines) + "\n"


def noun_of(addresses: Sequence[Address]) -> str:
    """Return the kind name shared by the addresses, or 'object'."""
    kinds = {a.kind for a in addresses}
    return kinds.pop() if len(kinds) == 1 else "object"


def _tail(plan: Plan, context: PlanContext) -> list[str]:
    """Return the closing lines: per kind, counts of untouched objects; then the summary."""
    lines = []
    for kind in plan.kinds:
        unchanged = [a for a in plan.unchanged if a.kind == kind]
        unmanaged = [a for a in plan.unmanaged if a.kind == kind]
        ignored = [a for a in plan.ignored if a.kind == kind]
        counts = [f"{count(len(unchanged), kind)} unchanged"]
        if unmanaged:
            counts.append(f"{len(unmanaged)} unmanaged{'' if context.verbose else ' (-v lists them)'}")
        if ignored:
            counts.append(f"{len(ignored)} ignored")
        lines.append(", ".join(counts) + ".")
        if context.verbose and unmanaged:
            lines.append("Unmanaged: " + ", ".join(a.key for a in unmanaged))
        if context.verbose and ignored:
            lines.append("Ignored: " + ", ".join(a.key for a in ignored))
    lines.append("")
    lines.append(summary_line(plan))
    return lines


def summary_line(plan: Plan) -> str:
    """Return `Plan: X to add, Y to change, Z to destroy (N duplicate rows).` or No changes."""
    s = plan.summary
    if not s.has_changes:
        kinds = [BY_NAME[k].plural for k in plan.kinds] or ["connections"]
        listed = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " and " + kinds[-1]
        return f"No changes. The {listed} match the configuration."
    dupes = f" ({count(s.duplicates, 'duplicate row')})" if s.duplicates else ""
    return f"Plan: {s.add} to add, {s.change} to change, {s.destroy} to destroy{dupes}."


def count(n: int, noun: str) -> str:
    """Return `1 row` / `2 rows`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _operation_blocks(
    operations: Sequence[Operation], origins: Mapping[tuple[Address, Path], str] | None = None
) -> Iterable[list[str]]:
    """Yield one block of lines per object, kinds in plan order, keys sorted; -v: each change's file."""
    origins = origins or {}
    by_address: dict[Address, list[Operation]] = {}
    for op in operations:
        by_address.setdefault(op.address, []).append(op)
    for address in sorted(by_address, key=plan_order):
        group = by_address[address]
        dupes = [op for op in group if isinstance(op, Delete) and op.reason is DeleteReason.DUPLICATE]
        for op in group:
            if isinstance(op, Reencrypt):
                yield [f"  # {address} will be re-encrypted with the first key (row {op.row_id})"]
            elif isinstance(op, Create):
                yield [f"  # {address} will be created", *_change_lines(op.changes, address, origins)]
            elif not isinstance(op, Delete):
                row = f" (row {op.row_id})" if dupes else ""
                yield [
                    f"  # {address} will be updated in place{row}",
                    *_change_lines(op.changes, address, origins),
                ]
            elif op.reason is not DeleteReason.DUPLICATE:
                yield [f"  # {address} will be destroyed ({_WHY[op.reason]})", *_value_lines("-", op)]
        if dupes:
            yield _duplicates_block(address, dupes)


def _duplicates_block(address: Address, dupes: Sequence[Delete]) -> list[str]:
    """Describe the duplicate rows of one key that will be deleted."""
    ids = [str(d.row_id) for d in dupes]
    listed = ids[0] if len(ids) == 1 else ", ".join(ids[:-1]) + " and " + ids[-1]
    noun = "row" if len(ids) == 1 else "rows"
    head = (
        f"  # {address} has {len(dupes) + 1} rows: row {dupes[0].kept_row_id} is kept, "
        f"duplicate {noun} {listed} will be destroyed"
    )
    return [head, *(f"  - row {i}" for i in ids)]


def _drift_block(drift: Drift, where: str) -> list[str]:
    """Describe a managed object changed outside dconn."""
    if drift.deleted:
        return [f"  # {drift.address} was deleted from {where}"]
    return [f"  # {drift.address} was changed in {where}", *_change_lines(drift.changes)]


def _change_lines(
    changes: Sequence[FieldChange],
    address: Address | None = None,
    origins: Mapping[tuple[Address, Path], str] | None = None,
) -> list[str]:
    """Return aligned `~ path = before -> after` lines; with origins, `# from FILE` after each."""
    paths = [format_path(c.path) for c in changes]  # once each: the width and the lines
    width = max(map(len, paths), default=0)
    lines = [
        f"  {_SYMBOL[c.kind]} {path.ljust(width)} = {show_change(c)}"
        for c, path in zip(changes, paths, strict=True)
    ]
    if not origins or address is None:
        return lines
    found = [origins.get((address, c.path)) for c in changes]
    pad = max(len(line) for line in lines)
    return [
        f"{line.ljust(pad)}  # from {where}" if where else line
        for line, where in zip(lines, found, strict=True)
    ]


def show_change(change: FieldChange) -> str:
    """Return what a change does to a field: `"a" -> "b"`, the value added or removed, or a secret's mark."""
    if change.sensitive:
        return "(sensitive value changed)" if change.kind == "change" else "(sensitive value)"
    if change.kind == "add":
        return show_value(change.after)
    if change.kind == "remove":
        return show_value(change.before)
    return f"{show_value(change.before)} -> {show_value(change.after)}"


def _value_lines(symbol: str, op: Delete) -> list[str]:
    """Return `- field = value` lines for every set field of a deleted object, secrets hidden."""
    pairs = list(flatten_values(op.address, op.values))
    width = max((len(format_path(p)) for p, _ in pairs), default=0)
    return [f"  {symbol} {format_path(p).ljust(width)} = {show_value(v)}" for p, v in pairs]


def flatten_values(address: Address, values: Values) -> Iterable[tuple[Path, Any]]:
    """Yield (path, redacted value) per field; a table (extra) is split into its top-level keys."""
    kind = BY_NAME[address.kind]
    for name in kind.fields:
        value = values.get(name)
        if value is None:
            continue
        shown = redact(value, (name,), values.secret_paths, kind)
        if isinstance(shown, dict) and shown:
            yield from (((name, k), v) for k, v in shown.items())
        else:
            yield (name,), shown


@lru_cache(maxsize=8192)
def format_path(path: Path) -> str:
    """Return `extra.hosts[0].name` for a field path (cached: the same paths recur in a plan)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def show_value(value: Any) -> str:
    """Return a value as JSON text, secrets as (sensitive value)."""
    if value is HIDDEN:
        return "(sensitive value)"
    return _SHOW_JSON(value)


def _hidden_json(value: object) -> str:
    """Serialize the secret marker inside JSON."""
    if value is HIDDEN:
        return "(sensitive value)"
    return repr(value)


#: show_value's encoder, built once: json.dumps with options builds one per call (per plan line).
_SHOW_JSON = json.JSONEncoder(ensure_ascii=False, default=_hidden_json).encode
