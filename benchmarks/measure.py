"""Measure one command as a whole process: wall time, peak RSS and CPU seconds, best of R runs.

Wall time is taken by this process around the child; peak RSS and CPU (user + system) come from
`/usr/bin/time`, or from getrusage of a fresh intermediate child where GNU time is missing. A
command may be pinned to one CPU with `taskset` (see `pin_prefix`), so that every measured
process works on one CPU, whatever it would do with more.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PYTHON = sys.executable
GNU_TIME = "/usr/bin/time"
TIMEOUT = 3600.0


@dataclass
class Measurement:
    """One measured process: best wall time of its runs, and that run's peak RSS and CPU time."""

    seconds: float
    rss_mb: float
    runs: int
    cpu_seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    #: The wall seconds of every run, in the order they ran (the spread shows the noise).
    all_seconds: list[float] = field(default_factory=list)


@dataclass
class Row:
    """One line of the results table: a dconn operation beside the raw process it compares with."""

    backend: str
    n: int
    operation: str
    dconn: Measurement
    raw_mode: str
    raw: Measurement

    @property
    def ratio(self) -> float:
        """Return how many times the raw process's wall time dconn took."""
        return self.dconn.seconds / self.raw.seconds


@dataclass(frozen=True)
class Pinning:
    """How measured commands are confined to CPUs: the argv prefix, and a sentence saying so."""

    prefix: tuple[str, ...]
    description: str

    @property
    def pinned(self) -> bool:
        """Tell whether commands run pinned."""
        return bool(self.prefix)


def pin_prefix(cpu: str | None) -> Pinning:
    """Return the `taskset -c CPU` prefix when taskset exists and the kernel grants that CPU."""
    if cpu is None:
        return Pinning((), "not pinned (--no-pin)")
    taskset = shutil.which("taskset")
    if taskset is None:
        return Pinning((), "not pinned: taskset not found")
    probe = subprocess.run([taskset, "-c", cpu, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return Pinning((), f"not pinned: taskset -c {cpu} failed ({probe.stderr.strip()})")
    return Pinning((taskset, "-c", cpu), f"pinned to CPU {cpu} (taskset -c {cpu})")


def run_once(
    argv: Sequence[str], env: dict[str, str], cwd: Path, expect: Sequence[int] = (0,)
) -> tuple[float, float, float, str]:
    """Run a command as a fresh process; return wall seconds, peak RSS in MB, CPU seconds, stdout."""
    stats = cwd / f".stats-{uuid.uuid4().hex}"
    out_path = cwd / f".stdout-{uuid.uuid4().hex}"
    if os.access(GNU_TIME, os.X_OK):
        wrapped = [GNU_TIME, "-f", "%M %U %S", "-o", str(stats), *argv]
    else:
        wrapped = [PYTHON, "-c", _RUSAGE_CHILD, str(stats), *argv]
    with out_path.open("wb") as out:
        start = time.perf_counter()
        done = subprocess.run(
            wrapped, cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE, timeout=TIMEOUT, check=False
        )
        seconds = time.perf_counter() - start
    stdout = out_path.read_text(encoding="utf-8", errors="replace")
    out_path.unlink()
    if done.returncode not in expect:
        tail = done.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{tail}")
    rss_kb, user, system = stats.read_text().strip().splitlines()[-1].split()
    stats.unlink()
    return seconds, int(rss_kb) / 1024, float(user) + float(system), stdout


# Run the command in a fresh child and report that child's peak RSS (KB), as GNU time does.
_RUSAGE_CHILD = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{usage.ru_maxrss} {usage.ru_utime} {usage.ru_stime}")
sys.exit(code)
"""


def best_of(
    runs: int,
    prepare: Callable[[], None],
    argv: Sequence[str],
    env: dict[str, str],
    cwd: Path,
    *,
    json_detail: bool = False,
    **kw: Any,
) -> Measurement:
    """Prepare, run the command, `runs` times; keep the fastest run (its last stdout line if JSON)."""
    best: tuple[float, float, float, str] | None = None
    every: list[float] = []
    for _ in range(runs):
        prepare()
        result = run_once(argv, env, cwd, **kw)
        every.append(round(result[0], 3))
        if best is None or result[0] < best[0]:
            best = result
    assert best is not None
    detail: dict[str, Any] = json.loads(best[3].strip().splitlines()[-1]) if json_detail else {}
    return Measurement(round(best[0], 3), round(best[1], 1), runs, round(best[2], 2), detail, every)


def nothing() -> None:
    """Prepare nothing: for commands that leave the database as they found it."""
