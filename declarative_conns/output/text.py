"""Render a Plan as text (Terraform's symbols), markdown (for pull requests) or JSON.

Pure: every value passes through `sensitive.redact` before it is shown, so no render can
contain a secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from declarative_conns.core.model import FIELDS, Action, Drift, FieldChange, Path, Plan, Values
from declarative_conns.core.sensitive import HIDDEN, redact

PLAN_FORMAT_VERSION = 1
_SYMBOL = {"add": "+", "remove": "-", "change": "~"}


@dataclass(frozen=True)
class PlanContext:
    """Describe what the plan was computed against, for its heading."""

    target: str
    shape: str
    rows: int
    connections: int
    verbose: bool = False


def render_text(plan: Plan, context: PlanContext) -> str:
    """Return the plan as a person reads it in a terminal."""
    lines = [
        f"Target: {context.target} (Airflow {context.shape} table, "
        f"{_count(context.connections, 'connection')} in {_count(context.rows, 'row')})",
        "",
    ]
    if plan.drift:
        lines += ["Note: objects have changed outside dconn since the last apply", ""]
        for drift in plan.drift:
            lines += [*_drift_block(drift), ""]
    if plan.old_key_rows:
        lines += [
            f"Note: {_count(len(plan.old_key_rows), 'connection')} encrypted with an older "
            "Fernet key (not the first of the ring): "
            + ", ".join(plan.old_key_rows)
            + ("" if any(a.reason == "rotate" for a in plan.actions) else "; --rotate re-encrypts them"),
            "",
        ]
    summary = plan.summary
    if summary.has_changes:
        lines += ["dconn will perform the following actions:", ""]
        for block in _action_blocks(plan.actions):
            lines += [*block, ""]
    lines += _tail(plan, context)
    return "\n".join(lines) + "\n"


def _tail(plan: Plan, context: PlanContext) -> list[str]:
    """Return the closing lines: counts of untouched connections, then the summary."""
    lines = []
    counts = [f"{_count(len(plan.unchanged), 'connection')} unchanged"]
    if plan.unmanaged:
        hint = "" if context.verbose else " (-v lists them)"
        counts.append(f"{len(plan.unmanaged)} unmanaged{hint}")
    if plan.ignored:
        counts.append(f"{len(plan.ignored)} ignored")
    lines.append(", ".join(counts) + ".")
    if context.verbose and plan.unmanaged:
        lines.append("Unmanaged: " + ", ".join(plan.unmanaged))
    if context.verbose and plan.ignored:
        lines.append("Ignored: " + ", ".join(plan.ignored))
    lines.append("")
    lines.append(summary_line(plan))
    return lines


def summary_line(plan: Plan) -> str:
    """Return `Plan: X to add, Y to change, Z to destroy (N duplicate rows).` or No changes."""
    s = plan.summary
    if not s.has_changes:
        return "No changes. The connections match the configuration."
    dupes = f" ({_count(s.duplicates, 'duplicate row')})" if s.duplicates else ""
    return f"Plan: {s.add} to add, {s.change} to change, {s.destroy} to destroy{dupes}."


def _count(n: int, noun: str) -> str:
    """Return `1 row` / `2 rows`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _action_blocks(actions: Sequence[Action]) -> Iterable[list[str]]:
    """Yield one block of lines per connection, sorted by conn_id."""
    by_conn: dict[str, list[Action]] = {}
    for action in actions:
        by_conn.setdefault(action.conn_id, []).append(action)
    for conn_id in sorted(by_conn):
        group = by_conn[conn_id]
        dupes = [a for a in group if a.reason == "duplicate"]
        for action in group:
            if action.reason == "rotate":
                row = action.row_id
                yield [f'  # connection "{conn_id}" will be re-encrypted with the first key (row {row})']
            elif action.kind in ("create", "update"):
                yield _change_block(action, has_dupes=bool(dupes))
            elif action.reason != "duplicate":
                yield _delete_block(action)
        if dupes:
            yield _duplicates_block(conn_id, dupes)


def _change_block(action: Action, *, has_dupes: bool) -> list[str]:
    """Describe a create or an in-place update."""
    if action.kind == "create":
        head = f'  # connection "{action.conn_id}" will be created'
        changes = action.changes
    else:
        row = f" (row {action.row_id})" if has_dupes else ""
        head = f'  # connection "{action.conn_id}" will be updated in place{row}'
        changes = action.changes
    return [head, *_change_lines(changes)]


def _delete_block(action: Action) -> list[str]:
    """Describe the deletion of an undeclared connection."""
    why = {
        "removed": "no longer in the configuration",
        "pruned": "not in the configuration, prune = true",
    }.get(action.reason, action.reason)
    head = f'  # connection "{action.conn_id}" will be destroyed ({why})'
    return [head, *_value_lines("-", action.values)]


def _duplicates_block(conn_id: str, dupes: Sequence[Action]) -> list[str]:
    """Describe the duplicate rows of one conn_id that will be deleted."""
    ids = [str(a.row_id) for a in dupes]
    total = len(dupes) + 1
    listed = ids[0] if len(ids) == 1 else ", ".join(ids[:-1]) + " and " + ids[-1]
    noun = "row" if len(ids) == 1 else "rows"
    head = (
        f'  # connection "{conn_id}" has {total} rows: row {dupes[0].kept_row_id} is kept, '
        f"duplicate {noun} {listed} will be destroyed"
    )
    return [head, *(f"  - row {i}" for i in ids)]


def _drift_block(drift: Drift) -> list[str]:
    """Describe a managed connection changed outside dconn."""
    if drift.row_id is None:
        return [f'  # connection "{drift.conn_id}" was deleted from the database']
    return [f'  # connection "{drift.conn_id}" was changed in the database', *_change_lines(drift.changes)]


def _change_lines(changes: Sequence[FieldChange]) -> list[str]:
    """Return aligned `~ path = before -> after` lines."""
    width = max((len(format_path(c.path)) for c in changes), default=0)
    return [f"  {_SYMBOL[c.kind]} {format_path(c.path).ljust(width)} = {show_change(c)}" for c in changes]


def show_change(change: FieldChange) -> str:
    """Return what a change does to a field: `"a" -> "b"`, the value added or removed, or a secret's mark."""
    if change.sensitive:
        return "(sensitive value changed)" if change.kind == "change" else "(sensitive value)"
    if change.kind == "add":
        return show_value(change.after)
    if change.kind == "remove":
        return show_value(change.before)
    return f"{show_value(change.before)} -> {show_value(change.after)}"


def _value_lines(symbol: str, values: Values | None) -> list[str]:
    """Return `- field = value` lines for every set field, secrets hidden."""
    pairs = list(flatten_values(values)) if values else []
    width = max((len(format_path(p)) for p, _ in pairs), default=0)
    return [f"  {symbol} {format_path(p).ljust(width)} = {show_value(v)}" for p, v in pairs]


def flatten_values(values: Values) -> Iterable[tuple[Path, Any]]:
    """Yield (path, redacted value) per field; extra is split into its top-level keys."""
    for name in FIELDS:
        value = values.get(name)
        if value is None:
            continue
        shown = redact(value, (name,), values.secret_paths)
        if name == "extra" and isinstance(shown, dict):
            yield from ((("extra", k), v) for k, v in shown.items())
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
    return _SHOW.encode(value)


def _hidden_json(value: object) -> str:
    """Serialize the secret marker inside JSON."""
    if value is HIDDEN:
        return "(sensitive value)"
    return repr(value)


#: json.dumps(value, ensure_ascii=False, default=_hidden_json), built once for every value shown.
_SHOW = json.JSONEncoder(ensure_ascii=False, default=_hidden_json)
