"""`dconn envs`: list the environments of dconn.toml; nothing is resolved, nothing is contacted."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from declarative_conns.cli.common import (
    DebugOpt,
    NoColorOpt,
    Output,
    ProjectOpt,
    QuietOpt,
    guarded,
    project_option,
)
from declarative_conns.errors import InputError

_LABEL_WIDTH = 12


def envs(
    ctx: typer.Context,
    project: ProjectOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="Output: text or json.")] = "text",
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """List the environments of dconn.toml: target (masked), state, layers, vars.

    Secret references are shown as written, never resolved. Exit codes: 0 listed, 1 error.
    """
    out = Output(quiet, no_color)
    with guarded(debug):
        if fmt not in ("text", "json"):
            raise InputError(f"--format must be text or json, not {fmt!r}")
        from declarative_conns.config.project import load_project, summarize

        loaded = load_project(project_option(ctx, project))
        summaries = [summarize(env) for env in loaded.environments.values()]
        targets = [env.describe_target() for env in loaded.environments.values()]
        for warning in loaded.warnings:
            out.warn(warning)
        for summary in summaries:
            for layer in summary["missing_layers"]:
                out.warn(f'environment "{summary["name"]}": layer {layer} does not exist')
        if fmt == "json":
            out.report(json.dumps({"project": str(loaded.path), "environments": summaries}, indent=2) + "\n")
        else:
            count = len(summaries)
            head = f"Project {loaded.path}: {count} environment{'s' if count != 1 else ''}\n"
            out.report(head + "".join(_text(s, target) for s, target in zip(summaries, targets, strict=True)))


def _text(summary: dict[str, Any], target: str) -> str:
    """Render one environment's summary as the lines `dconn envs` prints."""
    lines = [f"target: {target}"]
    if summary["fernet_key"] is not None:
        lines.append(f"fernet key: {summary['fernet_key']}")
    state = summary["state"]
    in_db = state.startswith("db:") and summary["target"] != "api"
    lines.append(f"state: {state}" + (" (table dconn_state of the target database)" if in_db else ""))
    missing = set(summary["missing_layers"])
    layers = [f"{layer} (missing)" if layer in missing else layer for layer in summary["layers"]]
    lines.append("layers: " + ", ".join(layers))
    if summary["vars"]:
        lines.append("vars: " + ", ".join(f"{k} = {_toml(v)}" for k, v in summary["vars"].items()))
    if summary["exclude"]:
        lines.append("exclude: " + ", ".join(summary["exclude"]))
    if summary["timeouts"]:
        lines.append("timeouts: " + ", ".join(f"{k} {v:g} s" for k, v in summary["timeouts"].items()))
    body = "".join(
        f"  {label + ':':<{_LABEL_WIDTH}}{rest}\n" for label, rest in (_split(line) for line in lines)
    )
    return f"\n{summary['name']}\n{body}"


def _split(line: str) -> tuple[str, str]:
    """Split `label: rest` at its first colon."""
    label, _, rest = line.partition(": ")
    return label, rest


def _toml(value: object) -> str:
    """Spell a var's value as dconn.toml does."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else str(value)
