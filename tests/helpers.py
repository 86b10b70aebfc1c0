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
