#!/usr/bin/env python3
"""Sync Airflow connections from a secrets manager: validate, plan, confirm, apply in one transaction.

The script this replaces loops over the secrets, skips a non-numeric port with a log line,
upserts each connection through Airflow's ORM and commits per connection. A bad secret then
leaves Airflow half-synced, a second row with the same conn_id goes unnoticed, and nobody sees
what changed. Here every secret is checked first (all problems at once, nothing written if any),
dconn computes a real plan against the `connection` table (creates, in-place updates, duplicate
rows removed), prints it with secrets masked, and applies it in one transaction after a `yes`,
with dconn's lock, staleness check, backup of the rows it replaces and state file.

    python examples/sync_from_secrets_manager.py examples/secrets_manager_dump.json \\
        --db-url sqlite:////path/to/airflow.db --fernet-key="$FERNET_KEY"

(Write --fernet-key=KEY with "=": a Fernet key may start with "-", which argparse would otherwise
take for an option.)

Without --db-url/--fernet-key the target is found as Airflow finds it (DCONN_DB_URL,
AIRFLOW__DATABASE__SQL_ALCHEMY_CONN, AIRFLOW__CORE__FERNET_KEY, $AIRFLOW_HOME/airflow.cfg).
--yes applies without asking (for a scheduled job); without it and without a terminal the
script refuses. --prune also deletes connections that are not in the secrets manager. Exit
codes: 0 applied or nothing to do; 1 invalid secrets, an error, or not confirmed (nothing
changed in the database).

The source: a JSON file standing in for the secrets manager, mapping secret names to secret
values. Secrets named <prefix><conn_id> (default prefix `airflow/connections/`) are connections;
each value is a JSON object in Airflow's own connection format (conn_type, description, host,
schema, login, password, port, extra), or the text of one, as a secrets manager returns it. A
port may be given as digits; `extra` may be an object or JSON text. Other secrets are skipped.

Reading a real secrets manager instead: replace `read_source` by a function returning the
same {secret name: value} mapping, e.g.

    AWS Secrets Manager (boto3):
        client = boto3.client("secretsmanager")
        names = [s["Name"] for page in client.get_paginator("list_secrets").paginate(
                     Filters=[{"Key": "name", "Values": [prefix]}]) for s in page["SecretList"]]
        return {n: client.get_secret_value(SecretId=n)["SecretString"] for n in names}

    HashiCorp Vault, KV version 2 (hvac; secrets at <mount>/airflow/connections/<conn_id>):
        kv = hvac.Client().secrets.kv.v2
        keys = kv.list_secrets(path=prefix)["data"]["keys"]
        return {prefix + k: kv.read_secret_version(path=prefix + k)["data"]["data"] for k in keys}

Secret values only pass through this process's memory: dconn masks them in the plan, encrypts
them with the Fernet key, and writes only keyed digests to its state file. To leave the values
in the manager and have dconn fetch them at apply time instead, put a reference in place of a
value, e.g. {"from_command": ["aws", "secretsmanager", "get-secret-value", "--secret-id", ...]}.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import declarative_conns as dc

PORT_RANGE = range(1, 65536)


class SourceError(Exception):
    """Raise when the source of secrets cannot be read at all."""


def read_source(path: Path) -> dict[str, Any]:
    """Return {secret name: secret value} from the JSON stand-in for a secrets manager."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        document = json.loads(text, object_pairs_hook=_refuse_duplicate_names)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(document, dict):
        raise SourceError(f"{path}: must hold a JSON object of secret name -> secret value")
    return document


def _refuse_duplicate_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Build a JSON object, refusing a key given twice (json would silently keep the last)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise SourceError(f"the secret {key!r} is given twice")
        seen[key] = value
    return seen


def to_connections(
    secrets: Mapping[str, Any], prefix: str, where: str
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Turn secrets named <prefix><conn_id> into dconn connection dicts; return them and problems."""
    connections: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for name, value in sorted(secrets.items()):
        if not name.startswith(prefix):
            continue
        conn_id = name[len(prefix) :]
        fields = _connection_fields(value, f"{where}: connections.{conn_id}", problems)
        if fields is not None:
            connections[conn_id] = fields
    return connections, problems


def _connection_fields(value: Any, where: str, problems: list[str]) -> dict[str, Any] | None:
    """Return one secret's connection fields: JSON text parsed, a port of digits as a number."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            # Never echo the value: a secret that fails to parse may still be a secret.
            problems.append(f"{where}: the secret is not a JSON object (a URI? store Airflow's JSON form)")
            return None
    if not isinstance(value, dict):
        problems.append(f"{where}: the secret is not a JSON object")
        return None
    fields = dict(value)
    port = fields.get("port")
    if isinstance(port, str):
        if port.strip().isdigit() and int(port) in PORT_RANGE:
            fields["port"] = int(port)
        else:
            shown = repr(port) if len(port) <= 20 else "the value"
            problems.append(f"{where}.port: {shown} is not a port number (1 to 65535)")
            del fields["port"]  # reported here; the schema would report it a second time
    extra = fields.get("extra")
    if isinstance(extra, str):
        try:
            fields["extra"] = json.loads(extra) if extra.strip() else None
        except json.JSONDecodeError as exc:
            problems.append(f"{where}.extra: not valid JSON ({exc.msg} at column {exc.colno})")
            del fields["extra"]
    return fields


def confirmed(auto_approve: bool) -> bool:
    """Ask on the terminal; only `yes` proceeds. Without a terminal, refuse unless --yes."""
    if auto_approve:
        return True
    if not sys.stdin.isatty():
        print("Error: no terminal to confirm on; pass --yes to apply without asking", file=sys.stderr)
        return False
    print("\nApply these changes to Airflow? Only 'yes' proceeds: ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip() == "yes"


def sync(args: argparse.Namespace) -> int:
    """Validate every secret, plan, print the plan, confirm and apply; return the exit code."""
    source = Path(args.source)
    connections, problems = to_connections(read_source(source), args.prefix, str(source))
    desired = None
    try:
        desired = dc.desired_from_dicts(connections, {"prune": args.prune}, source=str(source))
    except dc.ValidationFailed as exc:
        problems += exc.problems
    else:
        # The checks `dconn plan` runs too: known conn_types' fields and extras.
        for finding in dc.check_types(desired):
            if finding.severity == "error":
                problems.append(str(finding))
            else:
                print(f"{finding.severity.capitalize()}: {finding}", file=sys.stderr)
    if problems or desired is None:
        noun = "problem" if len(problems) == 1 else "problems"
        print(f"Error: {len(problems)} {noun} in {source}; nothing was changed:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    if not connections:
        print(f"Warning: no secret in {source} is named {args.prefix}<conn_id>", file=sys.stderr)
    workspace = dc.Workspace.from_url(args.db_url, args.fernet_key, state_path=args.state)
    with dc.plan(desired, workspace) as run:
        for warning in run.warnings:
            print(f"Warning: {warning}", file=sys.stderr)
        print(run.render("text"), end="", flush=True)
        if not run.plan.summary.has_changes:
            return 0
        if not confirmed(args.yes):
            print("Nothing was changed.", file=sys.stderr)
            return 1
        changed = dc.apply(run)
    print(f"Applied in one transaction: {changed} rows written or deleted.", file=sys.stderr)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        description="Sync Airflow connections from a secrets manager (a JSON dump here) with dconn."
    )
    parser.add_argument("source", help="JSON file: {secret name: secret value}")
    parser.add_argument("--prefix", default="airflow/connections/", help="name prefix of connection secrets")
    parser.add_argument("--db-url", help="Airflow metadata database URL (default: as Airflow finds it)")
    parser.add_argument("--fernet-key", help="Airflow's Fernet key (default: as Airflow finds it)")
    parser.add_argument("--state", default=".dconn/state.json", help="dconn state file")
    parser.add_argument("--prune", action="store_true", help="delete connections not in the source")
    parser.add_argument("--yes", action="store_true", help="apply without asking")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sync; print one clear `Error:` line instead of a traceback for what a user can fix."""
    args = parse_args(argv)
    try:
        return sync(args)
    except (dc.DconnError, SourceError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
