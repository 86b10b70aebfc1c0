"""Measure commands as whole processes: wall time, peak RSS and CPU seconds, best of R rounds.

Wall time is taken by this process around the child; peak RSS and CPU (user + system) come from
`/usr/bin/time`, or from getrusage of a fresh intermediate child where GNU time is missing. A
command may be pinned to one CPU with `taskset` (see `pin_prefix`), so that every measured
process works on one CPU, whatever it would do with more.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
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
        """Return how many times the raw process's wall time dconn took (best run over best run)."""
        return self.dconn.seconds / self.raw.seconds

    @property
    def paired_ratio(self) -> float:
        """Return the median over rounds of dconn's time over the raw process's in the same round."""
        if not self.dconn.all_seconds or len(self.dconn.all_seconds) != len(self.raw.all_seconds):
            return self.ratio  # results of a run that kept only the best
        pairs = zip(self.dconn.all_seconds, self.raw.all_seconds, strict=True)
        return statistics.median(d / r for d, r in pairs)


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


@dataclass
class Job:
    """A command to measure: how to prepare each run, what to run, and what it must exit with."""

    prepare: Callable[[], None]
    argv: Sequence[str]
    env: dict[str, str]
    expect: Sequence[int] = (0,)
    #: Keep the last line of the fastest run's stdout, parsed as JSON (the raw process's timings).
    json_detail: bool = False
    #: Called after each run (not measured), e.g. to keep what the first run left behind.
    after: Callable[[], None] | None = None


def interleaved(runs: int, jobs: dict[str, Job], cwd: Path) -> dict[str, Measurement]:
    """Run every job once per round, `runs` rounds; keep each job's fastest run.

    Round-robin rather than one job's runs in a row: on a shared machine the speed drifts over
    minutes, and a job compared with another should have met the same drift.
    """
    results: dict[str, list[tuple[float, float, float, str]]] = {name: [] for name in jobs}
    for _ in range(runs):
        for name, job in jobs.items():
            job.prepare()
            results[name].append(run_once(job.argv, job.env, cwd, job.expect))
            if job.after is not None:
                job.after()
    out = {}
    for name, job in jobs.items():
        best = min(results[name], key=lambda run: run[0])
        detail: dict[str, Any] = json.loads(best[3].strip().splitlines()[-1]) if job.json_detail else {}
        every = [round(run[0], 3) for run in results[name]]
        out[name] = Measurement(round(best[0], 3), round(best[1], 1), runs, round(best[2], 2), detail, every)
    return out


def nothing() -> None:
    """Prepare nothing: for commands that leave the database as they found it."""
