"""Render a Plan as machine-readable JSON (schemas/plan.schema.json) or as a markdown report for pull requests."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from declarative_conns.core.model import Address, FieldChange
from declarative_conns.core.operations import Create, Delete, DeleteReason, Operation, Plan, Reencrypt, Update
from declarative_conns.core.sensitive import HIDDEN
from declarative_conns.output.text import (
    PLAN_FORMAT_VERSION,
    PlanContext,
    count,
    flatten_values,
    format_path,
    heading,
    noun_of,
    render_text,
    show_change,
    summary_line,
)


def plan_document(plan: Plan, context: PlanContext) -> dict[str, Any]:
    """Return the plan as a JSON-compatible document (schemas/plan.schema.json)."""
    s = plan.summary
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "target": {
            "url": context.target,
            "description": context.description,
            "shape": context.shape,
            "rows": context.rows,
            "connections": context.connections,
            "kinds": {kind: {"objects": n, "rows": rows} for kind, (n, rows) in context.counts.items()},
        },
        "notes": list(context.notes),
        "kinds": list(plan.kinds),
        "changes_outside": [
            {
                **_named(d.address),
                "row_id": d.row_id,
                "deleted": d.deleted,
                "changes": _changes(d.changes),
            }
            for d in plan.drift
        ],
        "actions": [_action(op) for op in plan.operations],
        "summary": {
            "add": s.add,
            "change": s.change,
            "destroy": s.destroy,
            "duplicates": s.duplicates,
            "unchanged": len(plan.unchanged),
            "unmanaged": len(plan.unmanaged),
            "ignored": len(plan.ignored),
            "has_changes": s.has_changes,
        },
        "unchanged": [a.key for a in plan.unchanged],
        "unmanaged": [a.key for a in plan.unmanaged],
        "ignored": [a.key for a in plan.ignored],
        "objects": {
            "unchanged": [_named(a) for a in plan.unchanged],
            "unmanaged": [_named(a) for a in plan.unmanaged],
            "ignored": [_named(a) for a in plan.ignored],
        },
        "old_key_rows": [a.key for a in plan.old_key],
        "targets": None if plan.targets is None else [{"kind": a.kind, "key": a.key} for a in plan.targets],
    }


def _named(address: Address) -> dict[str, str]:
    """Return an object's kind and key (and conn_id, as the first format named connections)."""
    named = {"kind": address.kind, "key": address.key}
    if address.kind == "connection":
        named["conn_id"] = address.key
    return named


def render_json(plan: Plan, context: PlanContext) -> str:
    """Return the plan as one JSON document."""
    return json.dumps(plan_document(plan, context), indent=2, ensure_ascii=False, default=_jsonable) + "\n"


def _jsonable(value: object) -> object:
    """Serialize the secret marker (the only non-JSON value a redacted plan holds)."""
    if value is HIDDEN:
        return "(sensitive value)"
    raise TypeError(type(value).__name__)


def action_name(op: Operation) -> str:
    """Return the JSON plan's action: create, update (a re-encryption too) or delete."""
    if isinstance(op, Create):
        return "create"
    return "delete" if isinstance(op, Delete) else "update"


def reason_name(op: Operation) -> str:
    """Return the JSON plan's reason: declared, duplicate, removed, pruned or rotate."""
    if isinstance(op, Delete):
        return op.reason.value
    return "rotate" if isinstance(op, Reencrypt) else "declared"


def _action(op: Operation) -> dict[str, Any]:
    """Return one operation as JSON."""
    out: dict[str, Any] = {
        "action": action_name(op),
        **_named(op.address),
        "row_id": op.row_id,
        "reason": reason_name(op),
    }
    if isinstance(op, Delete):
        out["kept_row_id"] = op.kept_row_id
        if op.reason is not DeleteReason.DUPLICATE:
            out["values"] = {format_path(p): v for p, v in flatten_values(op.address, op.values)}
    elif isinstance(op, (Create, Update)):
        out["changes"] = _changes(op.changes)
    else:
        out["changes"] = []
    return out


def _changes(changes: Sequence[FieldChange]) -> list[dict[str, Any]]:
    """Return field changes as JSON; a secret's sides are left out."""
    out = []
    for c in changes:
        item: dict[str, Any] = {"path": format_path(c.path), "kind": c.kind, "sensitive": c.sensitive}
        if not c.sensitive:
            if c.kind != "add":
                item["before"] = c.before
            if c.kind != "remove":
                item["after"] = c.after
        out.append(item)
    return out


_VERB = {"create": "create", "update": "update in place", "delete": "destroy"}
_SIGN = {"create": "+", "update": "~", "delete": "-"}


def render_markdown(plan: Plan, context: PlanContext) -> str:
    """Return a markdown report: summary, drift, a table of actions, the full plan folded."""
    lines = [
        "### dconn plan",
        "",
        f"**{summary_line(plan)}**",
        "",
        f"Target: {_code(context.target)}{heading(context)[len(context.target) :]}",
        "",
    ]
    if plan.drift:
        lines += _markdown_drift(plan, context.where)
    lines += [*(f"**Note:** {note}" for note in context.notes), *([""] if context.notes else [])]
    if plan.old_key:
        listed = ", ".join(_code(a.key) for a in plan.old_key)
        lines += [
            f"**Note:** {count(len(plan.old_key), noun_of(plan.old_key))} encrypted with an older Fernet key "
            f"(not the first of the ring): {listed}",
            "",
        ]
    if plan.operations:
        lines += [
            "#### Actions",
            "",
            "| | Object | Action | Row | Details |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [_markdown_row(op) for op in plan.operations]
        lines.append("")
    lines += [
        f"{len(plan.unchanged)} unchanged, {len(plan.unmanaged)} unmanaged, {len(plan.ignored)} ignored.",
        "",
    ]
    if context.verbose:
        for label, names in (("Unmanaged", plan.unmanaged), ("Ignored", plan.ignored)):
            if names:
                lines += [f"{label}: " + ", ".join(f"{a.kind} {_code(a.key)}" for a in names), ""]
    text = render_text(plan, context).rstrip("\n")
    fence = _fence(text)
    lines += ["<details><summary>Full plan</summary>", "", f"{fence}diff", text, fence, "", "</details>"]
    return "\n".join(lines) + "\n"


def _markdown_drift(plan: Plan, where: str) -> list[str]:
    """Return the section on managed objects changed outside dconn, one row per field."""
    lines = [
        "#### Changed outside dconn",
        "",
        f"These objects were changed in {where} since dconn last applied them; the actions below revert them.",
        "",
        "| Object | Field | Change |",
        "| --- | --- | --- |",
    ]
    for d in plan.drift:
        name = f"{d.address.kind} {_code(d.address.key)}"
        if d.deleted:
            lines.append(f"| {name} | | deleted |")
        for c in d.changes:
            shown = show_change(c) if c.sensitive else _code(show_change(c))
            shown = {"add": "added: ", "remove": "removed: "}.get(c.kind, "") + shown
            lines.append(f"| {name} | {_code(format_path(c.path))} | {shown} |")
    return [*lines, ""]


def _code(text: str) -> str:
    """Return text as an inline code span that survives a markdown table cell."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    # GitHub splits cells on | even inside code spans; a backslash keeps it in the cell.
    return f"{ticks}{pad}{text.replace('|', chr(92) + '|')}{pad}{ticks}"


def _fence(text: str) -> str:
    """Return a code fence longer than any run of backticks inside the text."""
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=0)
    return "`" * max(3, longest + 1)


def _markdown_row(op: Operation) -> str:
    """Return one table row describing an operation."""
    if isinstance(op, Reencrypt):
        details = "re-encrypt with the first Fernet key"
    elif isinstance(op, Delete):
        details = {
            DeleteReason.DUPLICATE: f"duplicate of row {op.kept_row_id}",
            DeleteReason.REMOVED: "no longer in the configuration",
            DeleteReason.PRUNED: "prune = true",
        }[op.reason]
    else:
        details = ", ".join(
            _code(format_path(c.path)) + (" (sensitive)" if c.sensitive else "") for c in op.changes
        )
    row = "" if op.row_id is None else str(op.row_id)
    action = action_name(op)
    name = f"{op.address.kind} {_code(op.address.key)}"
    return f"| {_SIGN[action]} | {name} | {_VERB[action]} | {row} | {details} |"
