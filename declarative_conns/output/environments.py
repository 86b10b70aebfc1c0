"""Render the plans of every environment (`dconn plan --all-envs`): one section each, any format.

Each environment is planned, or failed with one message; a failure never hides the others.
Pure: the sections are the single-environment renderers' own output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from declarative_conns.core.operations import Plan
from declarative_conns.output.report import _code, _jsonable, plan_document, render_markdown
from declarative_conns.output.text import PLAN_FORMAT_VERSION, PlanContext, count, render_text, summary_line

Status = Literal["changes", "no_changes", "failed"]


@dataclass(frozen=True)
class EnvironmentPlan:
    """Hold one environment's plan and what it was made against, or why it failed."""

    name: str
    #: The target as dconn.toml names it (a reference as written, a URL masked).
    target: str
    plan: Plan | None = None
    context: PlanContext | None = None
    #: The one-line error that stopped this environment (never a secret).
    error: str | None = None

    @property
    def status(self) -> Status:
        """Return `failed`, `changes` (applying would change something) or `no_changes`."""
        if self.plan is None:
            return "failed"
        return "changes" if self.plan.summary.has_changes else "no_changes"

    @property
    def drifted(self) -> bool:
        """Tell whether a managed object was changed outside dconn since the last apply."""
        return self.plan is not None and bool(self.plan.drift)


def exit_code(results: Sequence[EnvironmentPlan]) -> int:
    """Return 1 if any environment failed, else 2 if any has changes or drift, else 0."""
    if any(r.status == "failed" for r in results):
        return 1
    return 2 if any(r.status == "changes" or r.drifted for r in results) else 0


def render(results: Sequence[EnvironmentPlan], fmt: str) -> str:
    """Return every environment's section in `fmt` (text, markdown or json)."""
    if fmt == "json":
        return render_json(results)
    if fmt == "markdown":
        return render_markdown_all(results)
    return render_text_all(results)


def overall_line(results: Sequence[EnvironmentPlan]) -> str:
    """Return `3 environments: 1 with changes, 1 without, 1 failed (production).`"""
    parts = []
    for status, words in (
        ("changes", "with changes"),
        ("no_changes", "without changes"),
        ("failed", "failed"),
    ):
        names = [r.name for r in results if r.status == status]
        if names:
            parts.append(f"{len(names)} {words} ({', '.join(names)})")
    drifted = [r.name for r in results if r.drifted]
    if drifted:
        parts.append(f"changed outside dconn: {', '.join(drifted)}")
    return f"{count(len(results), 'environment')}: {'; '.join(parts) or 'none'}."


def _headline(result: EnvironmentPlan) -> str:
    """Return one environment's result in a few words."""
    if result.plan is None:
        return "failed"
    return summary_line(result.plan)


def render_text_all(results: Sequence[EnvironmentPlan]) -> str:
    """Return one section per environment, a rule under its name, and the overall line last."""
    sections = []
    for result in results:
        title = f'Environment "{result.name}" ({result.target})'
        body = (
            render_text(result.plan, result.context)
            if result.plan is not None and result.context is not None
            else f"Error: {result.error}\n"
        )
        sections.append(f"{title}\n{'=' * min(len(title), 78)}\n\n{body}")
    return "\n".join(sections) + f"\n{overall_line(results)}\n"


def render_markdown_all(results: Sequence[EnvironmentPlan]) -> str:
    """Return a table of every environment's result, then each one's report under its heading."""
    lines = [
        "## dconn plan: every environment",
        "",
        f"**{overall_line(results)}**",
        "",
        "| Environment | Target | Result | Changed outside dconn |",
        "| --- | --- | --- | --- |",
    ]
    for r in results:
        result = f"**failed**: {r.error}" if r.plan is None else _headline(r)
        lines.append(
            f"| {_code(r.name)} | {_code(r.target)} | {result.replace('|', chr(92) + '|')} | "
            f"{'yes' if r.drifted else ''} |"
        )
    lines.append("")
    for r in results:
        lines += [f"## Environment {_code(r.name)}", ""]
        if r.plan is not None and r.context is not None:
            lines.append(render_markdown(r.plan, r.context).rstrip("\n"))
        else:
            lines.append(f"**Error:** {r.error}")
        lines.append("")
    return "\n".join(lines)


def environments_document(results: Sequence[EnvironmentPlan]) -> dict[str, Any]:
    """Return every environment's result as a JSON-compatible document (schemas/plans.schema.json)."""
    environments = []
    for r in results:
        entry: dict[str, Any] = {"name": r.name, "target": r.target, "status": r.status, "drift": r.drifted}
        if r.plan is not None and r.context is not None:
            entry["plan"] = plan_document(r.plan, r.context)
        else:
            entry["error"] = r.error
        environments.append(entry)
    statuses = [r.status for r in results]
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "environments": environments,
        "summary": {
            "environments": len(results),
            "changes": statuses.count("changes"),
            "no_changes": statuses.count("no_changes"),
            "failed": statuses.count("failed"),
            "drift": sum(r.drifted for r in results),
            "detailed_exitcode": exit_code(results),
        },
    }


def render_json(results: Sequence[EnvironmentPlan]) -> str:
    """Return every environment's result as one JSON document."""
    return json.dumps(environments_document(results), indent=2, ensure_ascii=False, default=_jsonable) + "\n"
