"""Render a Plan as machine-readable JSON or as a markdown report for pull requests and CI."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from declarative_conns.core.model import Action, FieldChange, Plan
from declarative_conns.core.sensitive import HIDDEN
from declarative_conns.output.text import (
    PLAN_FORMAT_VERSION,
    PlanContext,
    flatten_values,
    format_path,
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
            "shape": context.shape,
            "rows": context.rows,
            "connections": context.connections,
        },
        "changes_outside": [
            {
                "conn_id": d.conn_id,
                "row_id": d.row_id,
                "deleted": d.row_id is None,
                "changes": _changes(d.changes),
            }
            for d in plan.drift
        ],
        "actions": [_action(a) for a in plan.actions],
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
        "unchanged": list(plan.unchanged),
        "unmanaged": list(plan.unmanaged),
        "ignored": list(plan.ignored),
        "old_key_rows": list(plan.old_key_rows),
    }


def render_json(plan: Plan, context: PlanContext) -> str:
    """Return the plan as one JSON document."""
    return json.dumps(plan_document(plan, context), indent=2, ensure_ascii=False, default=_jsonable) + "\n"


def _jsonable(value: object) -> object:
    """Serialize the secret marker (the only non-JSON value a redacted plan holds)."""
    if value is HIDDEN:
        return "(sensitive value)"
    raise TypeError(type(value).__name__)


def _action(action: Action) -> dict[str, Any]:
    """Return one action as JSON."""
    out: dict[str, Any] = {
        "action": action.kind,
        "conn_id": action.conn_id,
        "row_id": action.row_id,
        "reason": action.reason,
    }
    if action.kind == "delete":
        out["kept_row_id"] = action.kept_row_id
        if action.reason != "duplicate" and action.values is not None:
            out["values"] = {format_path(p): v for p, v in flatten_values(action.values)}
    else:
        out["changes"] = _changes(action.changes)
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
        f"Target: {_code(context.target)} (Airflow {context.shape} table, "
        f"{_count(context.connections, 'connection')} in {_count(context.rows, 'row')})",
        "",
    ]
    if plan.drift:
        lines += _markdown_drift(plan)
    if plan.old_key_rows:
        listed = ", ".join(_code(c) for c in plan.old_key_rows)
        lines += [
            f"**Note:** {_count(len(plan.old_key_rows), 'connection')} encrypted with an older Fernet key "
            f"(not the first of the ring): {listed}",
            "",
        ]
    if plan.actions:
        lines += [
            "#### Actions",
            "",
            "| | Connection | Action | Row | Details |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [_markdown_row(a) for a in plan.actions]
        lines.append("")
    lines += [
        f"{len(plan.unchanged)} unchanged, {len(plan.unmanaged)} unmanaged, {len(plan.ignored)} ignored.",
        "",
    ]
    if context.verbose:
        for label, names in (("Unmanaged", plan.unmanaged), ("Ignored", plan.ignored)):
            if names:
                lines += [f"{label}: " + ", ".join(_code(c) for c in names), ""]
    text = render_text(plan, context).rstrip("\n")
    fence = _fence(text)
    lines += ["<details><summary>Full plan</summary>", "", f"{fence}diff", text, fence, "", "</details>"]
    return "\n".join(lines) + "\n"


def _markdown_drift(plan: Plan) -> list[str]:
    """Return the section on managed connections changed outside dconn, one row per field."""
    lines = [
        "#### Changed outside dconn",
        "",
        "These connections were changed in the database since dconn last applied them; "
        "the actions below revert them.",
        "",
        "| Connection | Field | Change |",
        "| --- | --- | --- |",
    ]
    for d in plan.drift:
        if d.row_id is None:
            lines.append(f"| {_code(d.conn_id)} | | row deleted |")
        for c in d.changes:
            shown = show_change(c) if c.sensitive else _code(show_change(c))
            shown = {"add": "added: ", "remove": "removed: "}.get(c.kind, "") + shown
            lines.append(f"| {_code(d.conn_id)} | {_code(format_path(c.path))} | {shown} |")
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


def _count(n: int, noun: str) -> str:
    """Return `1 row` / `2 rows`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _markdown_row(action: Action) -> str:
    """Return one table row describing an action."""
    if action.reason == "rotate":
        details = "re-encrypt with the first Fernet key"
    elif action.kind == "delete":
        details = (
            f"duplicate of row {action.kept_row_id}"
            if action.reason == "duplicate"
            else {"removed": "no longer in the configuration", "pruned": "prune = true"}.get(
                action.reason, ""
            )
        )
    else:
        details = ", ".join(
            _code(format_path(c.path)) + (" (sensitive)" if c.sensitive else "") for c in action.changes
        )
    row = "" if action.row_id is None else str(action.row_id)
    return f"| {_SIGN[action.kind]} | {_code(action.conn_id)} | {_VERB[action.kind]} | {row} | {details} |"
