"""Benchmark dconn at scale against the raw limit, as whole processes; write a markdown table.

For every backend (SQLite, PostgreSQL) and every N, on an Airflow-shaped `connection` table:

- raw process (`raw_limit.py`): parse the same TOML document, insert N encrypted rows and read
  them back / update / delete;
- `dconn apply` creating N connections into an empty table;
- `dconn plan` with no changes, and with every row changed;
- `dconn apply` updating N rows, and deleting N rows (a pruning document that declares none);
- `dconn --version` and `dconn --help` start-up, beside the bare interpreter;
- round trips (round_trips.py): `dconn plan` and an apply of one change on PostgreSQL through a
  proxy adding 20 ms of round-trip time (latency_proxy.py), counted, at N = 1,000 and 5,000.

Each measurement is a fresh process, pinned to one CPU (`taskset -c 0`, when taskset exists and
the kernel allows it; the results say whether), timed wall-clock by this script, its peak RSS
and CPU seconds taken from `/usr/bin/time` (see measure.py). Every run starts from a copy of a
prepared database (backends.py); preparing it is not measured. The commands of one size run
round by round; each keeps its best of 3 rounds below 100k, one at 100k. report.py writes the
markdown (targets first), and the JSON beside it keeps every run.

    python benchmarks/run.py                       # everything (make bench)
    python benchmarks/run.py --quick               # 1k only, one run each, round trips at 1k
    python benchmarks/run.py --sizes 10000 --backends sqlite --sections matrix
    python benchmarks/run.py --round-trips-only    # or --no-round-trips, --no-startup
    python benchmarks/run.py --sizes 10000 --sections matrix --kind variables   # variables alone (default: both, variables up to 10k)
    python benchmarks/run.py --from-json benchmarks/results.json   # the markdown again
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from backends import open_backend  # noqa: E402
from measure import PYTHON, Job, Measurement, Row, interleaved, nothing, pin_prefix  # noqa: E402
from report import render  # noqa: E402
from round_trips import RTT_MS, RoundTrips, bench_round_trips  # noqa: E402
from round_trips import SIZES as RT_SIZES  # noqa: E402
from workload import env_secrets, prune_document, toml_document  # noqa: E402

BIN = Path(sys.executable).parent
DCONN = str(BIN / "dconn")
RAW = str(HERE / "raw_limit.py")


# --- the scenarios ---------------------------------------------------------------------------


@dataclass
class Files:
    """The TOML documents of one size: as declared, every row changed, prune everything."""

    desired: Path
    changed: Path
    prune: Path


def write_documents(folder: Path, n: int, kind: str = "connection") -> Files:
    """Write the three documents for N connections (or variables)."""
    files = Files(folder / f"desired-{n}.toml", folder / f"changed-{n}.toml", folder / "prune.toml")
    files.desired.write_text(toml_document(n, kind=kind), encoding="utf-8")
    files.changed.write_text(toml_document(n, changed=True, kind=kind), encoding="utf-8")
    files.prune.write_text(prune_document(kind), encoding="utf-8")
    return files


OPERATIONS = ("create", "plan", "plan-changed", "update", "delete")
SECTIONS = ("matrix", "startup", "round-trips")
#: Each dconn operation, in the table's order, and the raw process's mode it is compared with.
COMPARED_WITH = {
    "plan, no changes": "create",
    "plan, every row changed": "create",
    "apply, create all": "create",
    "apply, update all": "update",
    "apply, delete all": "delete",
}


def bench_size(
    backend: Any,
    n: int,
    runs: int,
    work: Path,
    key: str,
    ops: set[str],
    pin: Sequence[str],
    kind: str = "connection",
) -> list[Row]:
    """Measure the operations for one backend and one N (apply creating all always: it prepares)."""
    files = write_documents(work, n, kind)
    state = work / "state" / "state.json"
    saved_state = work / f"state-{backend.name}-{n}.json"
    base_env = {**os.environ, "DCONN_FERNET_KEY": key, "NO_COLOR": "1"}
    base_env.pop("DCONN_DB_URL", None)

    def env(db: str, changed: bool = False) -> dict[str, str]:
        return {**base_env, **env_secrets(changed), "DCONN_DB_URL": backend.url(db)}

    def fresh(source: str, with_state: bool) -> Any:
        def prepare() -> None:
            backend.copy(source, "work")
            shutil.rmtree(state.parent, ignore_errors=True)
            if with_state:
                state.parent.mkdir()
                shutil.copyfile(saved_state, state)

        return prepare

    def dconn(*args: str) -> list[str]:
        return [*pin, DCONN, *args, "--state", str(state)]

    def raw(mode: str, config: Path) -> list[str]:
        url = backend.url("work")
        argv = [*pin, PYTHON, RAW, "--url", url, "--config", str(config), "--n", str(n), "--mode", mode]
        return [*argv, "--kind", kind]

    def keep_first() -> None:
        if not saved_state.exists():  # the first apply's result: N declared rows and their state
            backend.copy("work", "full")
            shutil.copyfile(state, saved_state)

    backend.create_empty("empty")
    saved_state.unlink(missing_ok=True)
    empty, full, full_with_state = fresh("empty", False), fresh("full", False), fresh("full", True)
    desired, changed, prune = str(files.desired), str(files.changed), str(files.prune)
    jobs = {
        "raw create": Job(empty, raw("create", files.desired), env("work"), json_detail=True),
        "apply, create all": Job(
            empty, dconn("apply", "-c", desired, "--auto-approve"), env("work"), after=keep_first
        ),
    }
    if "plan" in ops:
        plan = dconn("plan", "-c", desired, "--detailed-exitcode")
        jobs["plan, no changes"] = Job(full_with_state, plan, env("work"))
    if "plan-changed" in ops:
        plan = dconn("plan", "-c", changed, "--detailed-exitcode")
        jobs["plan, every row changed"] = Job(full_with_state, plan, env("work", True), expect=(2,))
    if "update" in ops:
        jobs["raw update"] = Job(full, raw("update", files.changed), env("work", True), json_detail=True)
        apply = dconn("apply", "-c", changed, "--auto-approve")
        jobs["apply, update all"] = Job(full_with_state, apply, env("work", True))
    if "delete" in ops:
        jobs["raw delete"] = Job(full, raw("delete", files.prune), env("work"), json_detail=True)
        apply = dconn("apply", "-c", prune, "--auto-approve")
        jobs["apply, delete all"] = Job(full_with_state, apply, env("work"))
    _log(f"{backend.name} N={n}: {runs} round(s) of {', '.join(jobs)}")
    measured = interleaved(runs, jobs, work)
    label = " (variables)" if kind == "variable" else ""
    return [
        Row(backend.name, n, operation + label, measured[operation], mode, measured[f"raw {mode}"])
        for operation, mode in COMPARED_WITH.items()
        if operation in measured
    ]


def bench_startup(work: Path, pin: Sequence[str], runs: int = 5) -> dict[str, Measurement]:
    """Measure start-up: dconn --version and --help, beside the bare interpreter and raw imports."""
    env = {**os.environ, "NO_COLOR": "1"}
    commands = {
        "dconn --version": [DCONN, "--version"],
        "dconn --help": [DCONN, "--help"],
        "python -c pass": [PYTHON, "-c", "pass"],
        "python -c 'import sqlalchemy, cryptography.fernet'": [
            PYTHON,
            "-c",
            "import sqlalchemy, cryptography.fernet",
        ],
    }
    return interleaved(
        runs, {name: Job(nothing, [*pin, *argv], env) for name, argv in commands.items()}, work
    )


# --- context ---------------------------------------------------------------------------------


def measured_package() -> str:
    """Say which declarative_conns the benchmarked processes import, and its git revision."""
    where = subprocess.run(
        [PYTHON, "-c", "import declarative_conns as d; print(d.__file__, d.__version__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout.split()
    package = Path(where[0]).parent
    folder = package.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    # The commit that last changed the package, not the checkout's: benchmark edits do not count.
    revision = git("log", "-1", "--format=%h", "--", package.name)
    if revision and git("status", "--porcelain", "--", package.name):
        revision += " with uncommitted changes"
    return f"dconn {where[1]} from {folder}" + (f", package at git {revision}" if revision else "")


def machine_versions(pg_url: str | None) -> tuple[str, str]:
    """Describe the machine and the versions that matter."""
    import sqlite3
    from importlib.metadata import version

    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = f"{names[0] if names else platform.processor()}, {len(names) or os.cpu_count()} cores"
    parts = [f"Python {platform.python_version()}", f"SQLite {sqlite3.sqlite_version}"]
    parts += [f"{p} {version(p)}" for p in ("SQLAlchemy", "cryptography", "psycopg", "deepdiff")]
    if pg_url:
        import sqlalchemy as sa

        engine = sa.create_engine(pg_url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            parts.append("PostgreSQL " + str(conn.execute(sa.text("SHOW server_version")).scalar()))
        engine.dispose()
    return f"{cpu}, {platform.system()} {platform.release()}", ", ".join(parts)


# --- command line ----------------------------------------------------------------------------


def _log(message: str) -> None:
    """Print progress on stderr with the time of day."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="comma-separated N (default: %(default)s)"
    )
    parser.add_argument(
        "--backends", default="sqlite,postgres", help="sqlite, postgres (default: %(default)s)"
    )
    parser.add_argument("--quick", action="store_true", help="N=1000 only, one run each (sizes may be given)")
    parser.add_argument("--repeat", type=int, help="runs per measurement (default: 3 below 100k, 1 at 100k)")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("DCONN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        help="an existing PostgreSQL database to connect to for CREATE DATABASE (default: %(default)s)",
    )
    parser.add_argument(
        "--output", type=Path, default=HERE / "results.md", help="markdown table (default: %(default)s)"
    )
    parser.add_argument(
        "--ops", default=",".join(OPERATIONS), help="operations to measure (default: %(default)s)"
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help="what to measure: matrix (dconn beside the raw process), startup, round-trips "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--round-trips-only", action="store_true", help="measure the round-trip section alone"
    )
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up measurements")
    parser.add_argument("--no-round-trips", action="store_true", help="skip the round-trip section")
    parser.add_argument(
        "--rtt-ms",
        type=float,
        default=RTT_MS,
        help="round-trip time the proxy adds in the round-trip section (default: %(default)s)",
    )
    parser.add_argument(
        "--rt-sizes",
        default=",".join(map(str, RT_SIZES)),
        help="N of the round-trip section (default: %(default)s; --quick: 1000)",
    )
    parser.add_argument(
        "--pin-cpu",
        default="0",
        help="run every measured process on this CPU with taskset, when taskset exists (default: %(default)s)",
    )
    parser.add_argument(
        "--no-pin", dest="pin_cpu", action="store_const", const=None, help="do not pin the measured processes"
    )
    parser.add_argument(
        "--kind",
        choices=("connections", "variables", "both"),
        default="both",
        help="what the matrix declares: N connections, N variables, or both, one after the other "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--variables-up-to",
        type=int,
        default=10_000,
        metavar="N",
        help="measure variables at the sizes up to N only (default: %(default)s; the 100k variables "
        "would add ~10 minutes to a whole run)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="RESULTS_JSON",
        help="measure nothing: write the markdown again from an earlier run's JSON",
    )
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv
    if args.quick and "--sizes" not in given:
        args.sizes = "1000"
    if args.quick and "--rt-sizes" not in given:
        args.rt_sizes = "1000"
    if args.quick and args.repeat is None:
        args.repeat = 1
    args.sizes = _numbers(args.sizes)
    args.rt_sizes = _numbers(args.rt_sizes)
    args.sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    if args.sections - set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(args.sections - set(SECTIONS)))}")
    if args.round_trips_only:
        args.sections = {"round-trips"}
    if args.no_startup:
        args.sections.discard("startup")
    if args.no_round_trips:
        args.sections.discard("round-trips")
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.ops = {o.strip() for o in args.ops.split(",") if o.strip()}
    if args.ops - set(OPERATIONS):
        parser.error(f"unknown operations: {', '.join(sorted(args.ops - set(OPERATIONS)))}")
    unknown = set(args.backends) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    return args


def _load() -> str:
    """Return the 1-minute load average and the CPU count: how shared the machine was."""
    if not hasattr(os, "getloadavg"):
        return "unknown"
    return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def _numbers(text: str) -> list[int]:
    """Read comma-separated sizes such as 1000,10_000."""
    return [int(s.replace("_", "")) for s in text.split(",") if s.strip()]


def load_results(path: Path) -> tuple[list[Row], dict[str, Measurement], list[RoundTrips], dict[str, Any]]:
    """Read the measurements of an earlier run back from its JSON."""
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = [
        Row(
            r["backend"],
            r["n"],
            r["operation"],
            Measurement(**r["dconn"]),
            r["raw_mode"],
            Measurement(**r["raw"]),
        )
        for r in data["rows"]
    ]
    startup = {name: Measurement(**m) for name, m in data.get("startup", {}).items()}
    trips = [RoundTrips(**r) for r in data.get("round_trips", [])]
    return rows, startup, trips, {"rtt_ms": RTT_MS, "pinning": "not recorded", **data["meta"]}


def compile_package() -> str:
    """Write dconn's bytecode, as `pip install` does for an installed package; say what was done.

    An editable install (`make`'s .venv) has none until a run writes it, and with
    PYTHONDONTWRITEBYTECODE set no run does: every measured process would then compile dconn's
    modules from source, a cost no installed copy pays.
    """
    package = ROOT / "declarative_conns"
    ok = compileall.compile_dir(str(package), quiet=1)
    return (
        f"bytecode of {package.name} written, as an install does" if ok else "bytecode: some modules failed"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark matrix and write the results."""
    args = parse_args(argv)
    if args.from_json:
        args.output.write_text(render(*load_results(args.from_json)), encoding="utf-8")
        _log(f"wrote {args.output} from {args.from_json}")
        return
    # A plain `kill` still drops the PostgreSQL databases and removes the work folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("benchmark stopped (SIGTERM)"))
    started = time.perf_counter()
    load_before = _load()
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    pin = pin_prefix(args.pin_cpu)
    _log(f"measured processes: {pin.description}")
    _log(compile_package())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dconn-bench-"))
    rows: list[Row] = []
    trips: list[RoundTrips] = []
    try:
        startup = bench_startup(work, pin.prefix) if "startup" in args.sections else {}
        for name in args.backends if "matrix" in args.sections else ():
            with open_backend(name, work, args.pg_url) as backend:
                for n in args.sizes:
                    runs = args.repeat or (3 if n < 100_000 else 1)
                    for kind in ("connection", "variable"):
                        if kind == "variable" and n > args.variables_up_to:
                            continue
                        if args.kind in (kind + "s", "both"):
                            rows.extend(bench_size(backend, n, runs, work, key, args.ops, pin.prefix, kind))
                    partial = args.output.with_suffix(".partial.json")
                    partial.write_text(json.dumps([{**asdict(r), "ratio": r.ratio} for r in rows], indent=1))
        if "round-trips" in args.sections:
            trips = bench_round_trips(
                args.pg_url, args.rt_sizes, args.repeat or 3, args.rtt_ms, work, key, DCONN, pin.prefix, _log
            )
    finally:
        if args.keep:
            _log(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    uses_postgres = "round-trips" in args.sections or (
        "matrix" in args.sections and "postgres" in args.backends
    )
    machine, versions = machine_versions(args.pg_url if uses_postgres else None)
    meta = {
        "command": "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "duration": f"{elapsed / 60:.1f} min" if elapsed >= 60 else f"{elapsed:.0f} s",
        "machine": machine,
        "package": measured_package(),
        "versions": versions,
        "runs": f"best of {args.repeat}" if args.repeat else "best of 3 below 100k, one run at 100k",
        "pinning": pin.description,
        "pinned": pin.pinned,
        "load": f"{load_before} at the start, {_load()} at the end",
        "sections": sorted(args.sections),
        "rtt_ms": args.rtt_ms,
    }
    text = render(rows, startup, trips, meta)
    args.output.write_text(text, encoding="utf-8")
    args.output.with_suffix(".json").write_text(
        json.dumps(
            {
                "meta": meta,
                "rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
                "startup": {k: asdict(v) for k, v in startup.items()},
                "round_trips": [asdict(r) for r in trips],
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    args.output.with_suffix(".partial.json").unlink(missing_ok=True)
    sys.stdout.write(text)
    _log(f"wrote {args.output} in {meta['duration']}")


if __name__ == "__main__":
    main()
