"""Render a Plan as machine-readable JSON or as a markdown report for pull requests and CI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .model import Action, FieldChange, Plan
from .render import PLAN_FORMAT_VERSION, PlanContext, flatten_values, format_path, render_text, summary_line
from .sensitive import HIDDEN


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
        f"Target: `{context.target}` (Airflow {context.shape} table, {context.rows} rows)",
        "",
    ]
    if plan.drift:
        lines += ["#### Changed outside dconn", "", "| Connection | Field | Change |", "| --- | --- | --- |"]
        for d in plan.drift:
            fields = ", ".join(f"`{format_path(c.path)}`" for c in d.changes) or "row deleted"
            lines.append(f"| `{d.conn_id}` | {fields} | {'deleted' if d.row_id is None else 'changed'} |")
        lines.append("")
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
        "<details><summary>Full plan</summary>",
        "",
        "```diff",
        render_text(plan, context).rstrip("\n"),
        "```",
        "",
        "</details>",
    ]
    return "\n".join(lines) + "\n"


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
            f"`{format_path(c.path)}`" + (" (sensitive)" if c.sensitive else "") for c in action.changes
        )
    row = "" if action.row_id is None else str(action.row_id)
    return f"| {_SIGN[action.kind]} | `{action.conn_id}` | {_VERB[action.kind]} | {row} | {details} |"
