"""Run dconn as users do: a real subprocess with nothing of the outer Airflow or dconn settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_dconn(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    stdin: Any = subprocess.DEVNULL,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m declarative_conns ARGS` in cwd, with AIRFLOW_HOME inside it plus `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DCONN_", "DEMO_"))}
    base.update({"AIRFLOW_HOME": str(cwd / "airflow-home"), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "declarative_conns", *args],
        cwd=cwd,
        env=base,
        capture_output=True,
        text=True,
        stdin=stdin,
        timeout=timeout,
        check=False,
    )


def open_target(
    url: str,
    schema: str | None = None,
    lock_timeout: float = 30.0,
    fernet_key: str | None = None,
    db_timeout: float = 60.0,
) -> Any:
    """Return a DatabaseTarget for a URL, opened (its tables reflected)."""
    from declarative_conns.targets.database.target import DatabaseTarget
    from declarative_conns.targets.discovery import DatabaseSettings as Target

    target = DatabaseTarget(Target(url, fernet_key, schema, "test", None, db_timeout), lock_timeout)
    target.open()
    return target


def actions(plan: Any) -> list[tuple[str, str, str]]:
    """Return (action, key, reason) of each operation, as the JSON plan names them."""
    from declarative_conns.output.report import action_name, reason_name

    return [(action_name(op), op.address.key, reason_name(op)) for op in plan.operations]


def snapshot_rows(state: dict[str, Any], kind: str = "connection") -> list[dict[str, Any]]:
    """Return a state document's snapshot entries of one kind, each with its key as `conn_id` too."""
    return [{**e, "conn_id": e["key"]} for e in state["snapshot"]["objects"] if e["kind"] == kind]
