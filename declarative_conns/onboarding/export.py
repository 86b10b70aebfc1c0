"""Onboard an existing deployment: export its connections, or convert Airflow's own files.

Export reads the objects through the plan's own path (the target's `read`, with its key ring),
so table shapes and decryption errors behave as in `dconn plan`, and it writes what the plan
compares: the lowest row of each conn_id, the fields
the table has. Export, set the variables, plan: "No changes" (duplicate rows aside, which the plan
deletes). A connection the document cannot declare as it is (no conn_id or conn_type, a conn_id
Airflow 3 refuses, a port outside 1-65535, an extra that is not a JSON object) is left out with
a comment and a note: it stays unmanaged, so the plan still says "No changes".

Convert reads `airflow connections export` files and `AIRFLOW_CONN_*` variables
(`airflow_files`) into the same document. Neither touches the database or prints: the CLI does.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from declarative_conns import __version__
from declarative_conns.core.drift import group_by_address
from declarative_conns.core.kinds import BY_NAME, CONN_ID_RULE, CONNECTION, KINDS, plan_order
from declarative_conns.core.model import StoredObject, canonical_json
from declarative_conns.errors import DconnError, InputError
from declarative_conns.onboarding.airflow_files import parse_airflow_file, parse_env_vars, read_variables_file
from declarative_conns.onboarding.toml_writer import (
    ConnSpec,
    Placeholder,
    PoolSpec,
    VariableSpec,
    printable,
    render_document,
    render_env_example,
)
from declarative_conns.targets.base import Target, TargetInfo

_SECRETS_NOTE = (
    'Secrets are { from_env = "..." } references: set those variables before `dconn plan`, or\n'
    'change them to { from_file = "..." } or { from_command = [...] } for your secret manager.'
)
_CLEAR_NOTE = "This file holds secret values in clear (--include-secrets): keep it out of version control."


@dataclass(frozen=True)
class Onboarded:
    """Hold a rendered document, the variables it reads, and what the user should be told."""

    text: str
    placeholders: list[Placeholder]
    #: Warnings: what was left out or needs attention; conn_ids and paths, never values.
    notes: list[str]
    conn_ids: list[str]
    source: str
    include_secrets: bool
    #: Rows read from the database (export only).
    rows: int | None = None
    #: The keys written of each kind the document declares: connection -> conn_ids, variable -> keys, ...
    keys: Mapping[str, list[str]] = field(default_factory=dict)

    def written(self) -> str:
        """Say what the document declares: `2 connections, 3 variables and 1 pool`."""
        parts = [_count(len(keys), kind) for kind, keys in self.keys.items()]
        parts = parts or [_count(len(self.conn_ids), "connection")]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

    def listed(self) -> str:
        """List what the document declares, for -v: conn_ids, then `variable KEY`, `pool NAME`."""
        others = [f"{kind} {key}" for kind, keys in self.keys.items() if kind != "connection" for key in keys]
        return ", ".join([*self.conn_ids, *others]) or "nothing"


def export_document(
    target: Target, *, include_secrets: bool = False, kinds: Sequence[str] | None = None
) -> Onboarded:
    """Read every object of the kinds (default: every kind the target has) and render them as a document."""
    if include_secrets and not target.capabilities.sees_secrets:
        target.close()
        raise InputError(
            f"--include-secrets cannot work with {target.display}: the REST API never shows secret values "
            "(it answers ***), so they become { from_env = ... } references"
        )
    try:
        info = target.open()
        chosen = _export_kinds(info, target.display, kinds)
        snapshot = target.read(chosen, target.keyring.digester())
    finally:
        target.close()
    notes = [why for _, why in snapshot.skipped]
    if info.unseen.get("connection") and "connection" in chosen:
        notes.append(
            f"{target.display} (Airflow 2's REST API) never says whether a connection has a password: add "
            'password = { from_env = "..." } to those that need one'
        )
    result = export_rows(
        snapshot.objects, info, target.display, include_secrets=include_secrets, kinds=chosen
    )
    result.notes[:0] = notes
    return result


def _export_kinds(info: TargetInfo, display: str, kinds: Sequence[str] | None) -> list[str]:
    """Return the kinds to export, in plan order; a kind asked for that the target lacks is an error."""
    if kinds is None:
        return [k.name for k in KINDS if info.fields.get(k.name)]
    missing = [BY_NAME[k].plural for k in kinds if not info.fields.get(k)]
    if missing:
        raise InputError(f"{display} has no table for {', '.join(missing)} ({info.description})")
    return [k.name for k in KINDS if k.name in kinds]


def export_rows(
    rows: Sequence[StoredObject],
    info: TargetInfo,
    target: str,
    *,
    include_secrets: bool = False,
    kinds: Sequence[str] = ("connection",),
) -> Onboarded:
    """Render decoded objects of a target as a dconn document (pure: no I/O)."""
    connections = [r for r in rows if r.address.kind == "connection"]
    specs, comments, left_out, notes = specs_from_rows(connections, info)
    variables, pools = kind_specs(rows, left_out, notes)
    where = f"{target} ({info.description})"
    counted = {"connection": len(specs), "variable": len(variables), "pool": len(pools)}
    header = [
        f"dconn {__version__} export of {where}:",
        ", ".join(_count(counted[k], k) for k in kinds) + f" from {_count(len(rows), 'row')}.",
        "",
        _CLEAR_NOTE if include_secrets else _SECRETS_NOTE,
    ]
    return _render(
        specs if "connection" in kinds else None,
        where,
        include_secrets,
        header,
        comments,
        left_out,
        notes,
        rows=len(rows),
        variables=variables if "variable" in kinds else None,
        pools=pools if "pool" in kinds else None,
    )


def kind_specs(
    rows: Sequence[StoredObject], left_out: list[str], notes: list[str]
) -> tuple[list[VariableSpec], list[PoolSpec]]:
    """Return the variables and pools a document can declare (the lowest row of each key); note the rest."""
    variables: list[VariableSpec] = []
    pools: list[PoolSpec] = []
    for address, group in sorted(group_by_address(rows).items(), key=lambda item: plan_order(item[0])):
        kept = group[0]
        if address.kind == "connection":
            continue
        problem = _unexportable_kind(kept)
        if problem:
            left_out.append(f"{address.kind} {_shown(address.key)} (row {kept.row_id}): {problem}")
            notes.append(
                f"{address.kind} {_shown(address.key)} left out: {problem}; dconn leaves it unmanaged"
            )
        elif address.kind == "variable":
            variables.append({"key": address.key, **kept.values.fields})
        else:
            pools.append({"name": address.key, **kept.values.fields})
    return variables, pools


def _unexportable_kind(row: StoredObject) -> str | None:
    """Say why a variable or pool cannot be declared as it is stored, or return None."""
    key = row.address.key
    if not key or not key.isprintable():
        return "its key is empty or holds control characters"
    if row.address.kind == "variable" and not isinstance(row.values.get("value"), str):
        return "it has no value"
    if row.address.kind == "pool":
        slots = row.values.get("slots")
        if not isinstance(slots, int) or isinstance(slots, bool) or slots < -1:
            return "its slots are not an integer of at least -1"
    return None


def specs_from_rows(
    rows: Sequence[StoredObject], info: TargetInfo
) -> tuple[list[ConnSpec], dict[str, list[str]], list[str], list[str]]:
    """Return the specs of the rows the plan keeps, comments on duplicates, and what is left out."""
    specs: list[ConnSpec] = []
    comments: dict[str, list[str]] = {}
    left_out: list[str] = []
    notes: list[str] = []
    columns = list(info.fields.get("connection", CONNECTION.fields))
    for address, group in sorted(group_by_address(rows).items()):
        conn_id = address.key
        kept = group[0]
        problem = _unexportable(kept)
        ids = ", ".join(str(r.row_id) for r in group)
        if problem:
            rows_text = f"row {ids}" if len(group) == 1 else f"rows {ids}"
            left_out.append(f"{_shown(conn_id)} ({rows_text}): {problem}")
            notes.append(f"connection {_shown(conn_id)} left out: {problem}; dconn leaves it unmanaged")
            continue
        specs.append({"conn_id": conn_id, **{name: kept.values.get(name) for name in columns}})
        if len(group) > 1:
            comments[conn_id] = _duplicate_comment(group, columns)
            notes.append(f"connection {_shown(conn_id)} has {len(group)} rows: " + comments[conn_id][-1])
    return specs, comments, left_out, notes


def _unexportable(row: StoredObject) -> str | None:
    """Say why a row cannot be declared as it is stored, or return None."""
    if not row.address.key:
        return "the row has no conn_id"
    if not CONN_ID_RULE.fullmatch(row.address.key):
        return "the conn_id breaks Airflow's rule (1-250 letters, digits and _ # ! ( ) - . : / \\)"
    if not row.values.get("conn_type"):
        return "it has no conn_type, which dconn requires"
    port = row.values.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        return "its port is outside 1-65535"
    extra = row.values.get("extra")
    if extra is not None and not isinstance(extra, dict):
        kind = "not JSON" if ("extra",) in row.values.secret_paths else f"a JSON {_json_kind(extra)}"
        return f"its extra is {kind}, not a JSON object (Airflow cannot read it either)"
    return None


def _json_kind(value: Any) -> str:
    """Name the JSON type of a value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "value"


def _duplicate_comment(group: Sequence[StoredObject], columns: Sequence[str]) -> list[str]:
    """Explain a conn_id's duplicate rows: which is written and kept, which the plan deletes."""
    kept, others = group[0], group[1:]
    same = canonical_json({c: kept.values.get(c) for c in columns})
    differ = [r.row_id for r in others if canonical_json({c: r.values.get(c) for c in columns}) != same]
    ids = ", ".join(str(r.row_id) for r in others)
    lines = [
        f"{len(group)} rows have this conn_id (Airflow 1.10 allowed it): this is row {kept.row_id}, "
        "the one dconn keeps;",
        f"dconn plan will propose deleting duplicate row{'s' if len(others) > 1 else ''} {ids}",
    ]
    if differ:
        many = len(differ) > 1
        rows = ", ".join(map(str, differ))
        lines[-1] += f" (row{'s' if many else ''} {rows} hold{'' if many else 's'} other values)"
    return lines


def convert_file(path: Path, *, include_secrets: bool = False, kind: str | None = None) -> Onboarded:
    """Convert a file of Airflow's exports to a dconn document.

    `kind` says what the file holds: connections (`airflow connections export`: .json,
    .yaml/.yml, .env), variables or pools (`airflow variables export` / `airflow pools export`,
    .json); None: pools when every entry has slots and a description, else connections.
    """
    from declarative_conns.onboarding import kind_files

    if kind is None:
        kind = "pool" if kind_files.looks_like_pools(path) else "connection"
    if kind == "variable":
        variables = kind_files.parse_variables_file(path)
        return _converted_kind(str(path), include_secrets, variables=variables)
    if kind == "pool":
        return _converted_kind(str(path), include_secrets, pools=kind_files.parse_pools_file(path))
    try:
        specs = parse_airflow_file(path)
    except InputError as error:
        if path.suffix.lower() != ".json" or "connection '" not in str(error):
            raise  # not a file of entries that fail as connections
        raise InputError(
            f"{error}\n  (for a file of `airflow variables export` or `airflow pools export`, "
            "add --kind variables or --kind pools)"
        ) from None
    result = _converted(specs, str(path), include_secrets)
    if any(str(spec["conn_id"]).startswith("AIRFLOW_CONN_") for spec in specs):
        result.notes.append(
            f"{path}: conn_ids such as AIRFLOW_CONN_... look like environment variables; for a file "
            f"of AIRFLOW_CONN_<ID>=... lines, run: dconn convert --from-env {path}"
        )
    return result


def _converted_kind(
    source: str,
    include_secrets: bool,
    *,
    variables: list[VariableSpec] | None = None,
    pools: list[PoolSpec] | None = None,
) -> Onboarded:
    """Render converted variables or pools with convert's header."""
    kind, found = ("variable", variables) if variables is not None else ("pool", pools or [])
    header = [
        f"dconn {__version__} convert of {source}: {_count(len(found), kind)}.",
        "",
        _CLEAR_NOTE if include_secrets else _SECRETS_NOTE,
    ]
    notes = [] if found else [f"{source} holds no {kind}s"]
    return _render(None, source, include_secrets, header, {}, [], notes, variables=variables, pools=pools)


def convert_environment(
    environ: Mapping[str, str] | None = None, *, file: Path | None = None, include_secrets: bool = False
) -> Onboarded:
    """Convert AIRFLOW_CONN_* variables, of an environment or of an env file, to a dconn document."""
    if file is not None:
        source = f"the AIRFLOW_CONN_* variables of {file}"
        specs = parse_env_vars(read_variables_file(file), str(file))
    else:
        source = "the AIRFLOW_CONN_* environment variables"
        specs = parse_env_vars(environ if environ is not None else os.environ)
    return _converted(specs, source, include_secrets)


def _converted(specs: list[ConnSpec], source: str, include_secrets: bool) -> Onboarded:
    """Render converted specs with convert's header."""
    header = [
        f"dconn {__version__} convert of {source}: {_count(len(specs), 'connection')}.",
        "",
        _CLEAR_NOTE if include_secrets else _SECRETS_NOTE,
    ]
    notes = [] if specs else [f"{source} holds no connections"]
    return _render(specs, source, include_secrets, header, {}, [], notes)


def _render(
    specs: list[ConnSpec] | None,
    source: str,
    include_secrets: bool,
    header: list[str],
    comments: Mapping[str, Sequence[str]],
    left_out: Sequence[str],
    notes: list[str],
    rows: int | None = None,
    *,
    variables: list[VariableSpec] | None = None,
    pools: list[PoolSpec] | None = None,
) -> Onboarded:
    """Render the document and collect what the user must be told."""
    footer = ""
    if left_out:
        footer = "\n".join(
            ["Left out, as dconn cannot declare them as they are (they stay unmanaged):"]
            + [f"  {line}" for line in left_out]
        )
    rendered = render_document(
        specs,
        include_secrets=include_secrets,
        header="\n".join(header),
        comments=comments,
        footer=footer,
        variables=variables,
        pools=pools,
    )
    return Onboarded(
        text=rendered.text,
        placeholders=rendered.placeholders,
        notes=[*notes, *rendered.notes],
        conn_ids=sorted(str(spec["conn_id"]) for spec in specs or ()),
        source=source,
        include_secrets=include_secrets,
        rows=rows,
        keys={
            kind: keys
            for kind, keys, rendered in (
                ("connection", sorted(str(spec["conn_id"]) for spec in specs or ()), specs is not None),
                ("variable", sorted(str(v["key"]) for v in variables or ()), variables is not None),
                ("pool", sorted(str(p["name"]) for p in pools or ()), pools is not None),
            )
            if rendered
        },
    )


def _count(n: int, noun: str) -> str:
    """Return '1 row', '2 rows'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _shown(conn_id: str) -> str:
    """Return a conn_id quoted for a message, escaped to one printable line."""
    return f'"{printable(conn_id)}"'


# -- delivering the result -------------------------------------------------------------------


def refuse_secrets_on_terminal(out: Path | None, include_secrets: bool, stdout: TextIO) -> None:
    """Refuse to print secret values on a terminal, where they stay in the scrollback."""
    if include_secrets and out is None and stdout.isatty():
        raise InputError(
            "--include-secrets would print secret values on the terminal; write them to a file "
            "with -o FILE (mode 0600), or redirect stdout"
        )


def secret_warnings(result: Onboarded, out: Path | None, stdout: TextIO) -> list[str]:
    """Return the warnings a document with secrets in clear deserves."""
    if not result.include_secrets:
        return []
    warnings = [
        "the document holds secret values in clear (--include-secrets): keep it out of version control"
    ]
    if out is None and _shared_file(stdout):
        warnings.append(
            "stdout is a file that others may read; prefer -o FILE, which dconn writes with mode 0600"
        )
    return warnings


def deliver(result: Onboarded, out: Path | None, env_example: Path | None, stdout: TextIO) -> list[str]:
    """Write the document (to `out`, else stdout) and the .env.example; return what was written.

    With secrets in clear, `out` is written with mode 0600.
    """
    messages: list[str] = []
    if out is None:
        stdout.write(result.text)
        stdout.flush()
    else:
        write_file(out, result.text, private=result.include_secrets)
        messages.append(f"Wrote {result.written()} to {out}.")
    if env_example is not None:
        write_file(env_example, render_env_example(result.placeholders), private=False)
        messages.append(
            f"Wrote the names of {_count(len(result.placeholders), 'variable')} to {env_example}."
        )
    return messages


def variable_lines(result: Onboarded) -> list[str]:
    """Return the list of variables the document reads, for stderr."""
    if not result.placeholders:
        return []
    width = max(len(p.variable) for p in result.placeholders)
    return [
        f"The document reads {_count(len(result.placeholders), 'secret')} from environment "
        "variables; set them before `dconn plan`:",
        *(
            f"  {p.variable:<{width}}  {printable(p.conn_id)}: {printable(p.field)}"
            for p in result.placeholders
        ),
    ]


def _shared_file(stream: TextIO) -> bool:
    """Tell whether a stream is a regular file that group or others may read."""
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISREG(info.st_mode) and bool(info.st_mode & 0o044)


def write_file(path: Path, text: str, *, private: bool) -> None:
    """Write a file atomically; mode 0600 when private, else as the umask allows."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise DconnError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
