#!/usr/bin/env python3
"""Check dconn against real Airflow: what dconn writes, Airflow reads back exactly, and back.

For each Airflow version (2.11, 3.3) and each metadata database (SQLite, PostgreSQL, MariaDB):

1. install Airflow once into a cached virtual environment (~/.cache/dconn-compat);
2. make a fresh database and let Airflow create its tables (`airflow db migrate`);
3. `dconn apply` a document using every field and every JSON type in `extra`, then check with
   Airflow's own CLI (`airflow connections export`) that Airflow reads exactly what was declared,
   and that the next `dconn plan --detailed-exitcode` exits 0;
4. add connections with `airflow connections add` (as JSON, as a URI, as flags) and check that
   `dconn plan --detailed-exitcode` finds nothing to change when they are declared as added.

dconn finds the database and the key as Airflow does, from the same environment: the PostgreSQL
case uses `sql_alchemy_schema`; the "sqlite-cfg" case sets nothing but AIRFLOW_HOME, so both
sides read the airflow.cfg Airflow wrote for itself; the "sqlite-nokey" case sets
AIRFLOW__CORE__FERNET_KEY='' (as Airflow's Docker Compose file does), which overrides the key in
that airflow.cfg: both sides store and read values in clear.

Run it with the project's virtual environment (it needs dconn, SQLAlchemy and the drivers):
`make compat`, or `.venv/bin/python compat/run_compat.py [--airflow 3.3] [--backend sqlite]`.
Exit code 0 when every case passed. Building mysqlclient needs Debian's libmariadb-dev and
pkg-config: installed with apt-get when missing and running as root.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from documents import (  # noqa: E402
    ADDED,
    SECRETS,
    TEAM,
    added_toml,
    declared_toml,
    expected_declared,
    export_differences,
)

VERSIONS = ("2.11", "3.3")
CASES = ("sqlite", "sqlite-cfg", "sqlite-nokey", "postgres", "mysql")
PG_ADMIN_URL = os.environ.get("DCONN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN_URL = os.environ.get("DCONN_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
AIRFLOW_TIMEOUT = 300


def drivers(version: str) -> list[str]:
    """Return the database drivers Airflow needs beside itself (3.x derives async URLs too)."""
    wanted = ["psycopg2-binary", "mysqlclient"]
    if not version.startswith("2."):
        wanted += ["asyncpg", "aiomysql"]
    return wanted


class CaseFailed(Exception):
    """Raise when a compatibility check finds a difference."""


@dataclass
class Case:
    """One Airflow version against one kind of metadata database."""

    version: str
    kind: str
    venv: Path
    work: Path
    log_lines: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Name the case, e.g. airflow-3.3/postgres."""
        return f"airflow-{self.version}/{self.kind}"

    def log(self, text: str) -> None:
        """Record a line of this case's log."""
        self.log_lines.append(text)

    def run(self, argv: list[str], env: dict[str, str], expect: tuple[int, ...] = (0,)) -> str:
        """Run a command in the case's folder; fail the case on an unexpected exit code."""
        started = time.monotonic()
        done = subprocess.run(
            argv,
            cwd=self.work,
            env=env,
            capture_output=True,
            text=True,
            timeout=AIRFLOW_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        shown = " ".join(a if len(a) < 120 else a[:117] + "..." for a in argv)
        self.log(f"$ {shown}\n  -> exit {done.returncode} in {time.monotonic() - started:.1f} s")
        if done.returncode not in expect:
            out = [line[:200] for line in done.stdout.strip().splitlines()[-8:]]
            tail = "\n".join(out + done.stderr.strip().splitlines()[-20:])
            raise CaseFailed(f"{shown}\nexited {done.returncode}, expected {expect}:\n{tail}")
        return done.stdout


# ---------------------------------------------------------------- environments


def ensure_build_deps() -> None:
    """Make sure mysqlclient can build: Debian's libmariadb-dev and pkg-config."""
    have = shutil.which("pkg-config") and any(
        subprocess.run(["pkg-config", "--exists", lib], check=False).returncode == 0
        for lib in ("libmariadb", "mysqlclient")
    )
    if have:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit("compat: mysqlclient needs libmariadb-dev and pkg-config: install them (apt-get) and rerun")
    print("compat: installing libmariadb-dev and pkg-config with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "libmariadb-dev", "pkg-config"],
        check=True,
        env=env,
    )


def constraints_file(version: str) -> Path | None:
    """Return the pinned versions recorded for this Airflow and Python, when there are some."""
    path = HERE / "constraints" / f"airflow-{version}-py{PY}.txt"
    return path if path.is_file() else None


def ensure_airflow(version: str, cache: Path) -> Path:
    """Return a virtual environment with Airflow `version`.*, installing it on first use."""
    venv = cache / f"airflow-{version}-py{PY}"
    requirements = [f"apache-airflow=={version}.*", *drivers(version)]
    pins = constraints_file(version)
    spec = json.dumps(
        {
            "requirements": requirements,
            "pins": hashlib.sha256(pins.read_bytes()).hexdigest() if pins else None,
        }
    )
    marker = venv / "dconn-compat.json"
    if marker.is_file() and marker.read_text() == spec:
        return venv
    if venv.exists():
        shutil.rmtree(venv)
    started = time.monotonic()
    print(f"compat: installing Airflow {version}.* into {venv} (once; later runs reuse it)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    extra = ["-c", str(pins)] if pins else []
    done = subprocess.run([*pip, *extra, *requirements], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(done.stdout[-3000:] + done.stderr[-6000:], file=sys.stderr)
        sys.exit(f"compat: pip could not install Airflow {version}")
    marker.write_text(spec)
    print(f"compat: Airflow {version} installed in {time.monotonic() - started:.0f} s", flush=True)
    return venv


def freeze(version: str, venv: Path) -> None:
    """Record the versions installed in a working environment as its constraints file."""
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze", "--all", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pins = [
        line for line in out.splitlines() if "==" in line and not line.startswith(("pip==", "setuptools=="))
    ]
    path = HERE / "constraints" / f"airflow-{version}-py{PY}.txt"
    path.parent.mkdir(exist_ok=True)
    header = f"# pip freeze of a working Airflow {version} environment (Python {PY}), for run_compat.py\n"
    path.write_text(header + "\n".join(pins) + "\n")
    print(f"compat: wrote {path.relative_to(HERE.parent)} ({len(pins)} pins)")


# ---------------------------------------------------------------- databases


def admin_engine(kind: str) -> Any:
    """Return an autocommit engine on the server's admin database."""
    import sqlalchemy as sa

    url = PG_ADMIN_URL if kind == "postgres" else MYSQL_ADMIN_URL
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 10})


def create_database(case: Case) -> tuple[str, dict[str, str]]:
    """Make a fresh metadata database; return Airflow's URL for it and the settings it needs."""
    if case.kind in ("sqlite", "sqlite-nokey"):
        return f"sqlite:///{case.work / 'airflow.db'}", {}
    if case.kind == "sqlite-cfg":
        return "", {}  # Airflow's default, written into its own airflow.cfg
    name = f"dconn_compat_{case.version.replace('.', '')}_{uuid.uuid4().hex[:8]}"
    engine = admin_engine(case.kind)
    with engine.connect() as conn:
        if case.kind == "postgres":
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        else:  # as Airflow's documentation sets up MySQL
            conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    engine.dispose()
    case.log(f"created database {name}")
    if case.kind == "postgres":
        import sqlalchemy as sa

        url = sa.make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
        schema_engine = sa.create_engine(url)
        with schema_engine.begin() as conn:
            conn.exec_driver_sql("CREATE SCHEMA airflow_meta")
        schema_engine.dispose()
        airflow_url = url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
        return airflow_url, {"AIRFLOW__DATABASE__SQL_ALCHEMY_SCHEMA": "airflow_meta"}
    import sqlalchemy as sa

    scheme = "mysql+mysqldb" if case.version.startswith("2.") else "mysql"
    url = sa.make_url(MYSQL_ADMIN_URL).set(drivername=scheme, database=name)
    return url.render_as_string(hide_password=False), {}


def drop_database(case: Case, url: str) -> None:
    """Drop a server database made for the case."""
    if case.kind not in ("postgres", "mysql"):
        return
    import sqlalchemy as sa

    name = sa.make_url(url).database
    engine = admin_engine(case.kind)
    with engine.connect() as conn:
        force = " WITH (FORCE)" if case.kind == "postgres" else ""
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
    engine.dispose()


# ---------------------------------------------------------------- the checks


def base_env() -> dict[str, str]:
    """Return this process's environment without anything that could aim at another Airflow."""
    drop = ("AIRFLOW__", "AIRFLOW_CONN_", "DCONN_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(drop) and k not in ("AIRFLOW_HOME", "AIRFLOW_CONFIG")
    }
    env.pop("VIRTUAL_ENV", None)
    return env


def run_case(case: Case, dconn: str) -> None:
    """Run every check of one case; raise CaseFailed on the first difference."""
    from cryptography.fernet import Fernet

    url, settings = create_database(case)
    try:
        env = {**base_env(), **SECRETS, "AIRFLOW_HOME": str(case.work / "airflow-home")}
        env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
        if case.kind != "sqlite-cfg":
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = url
            env["AIRFLOW__CORE__FERNET_KEY"] = Fernet.generate_key().decode()
        if case.kind == "sqlite-nokey":
            # As in Airflow's Docker Compose file: set but empty, so no encryption, although
            # the airflow.cfg Airflow writes holds a generated key.
            env["AIRFLOW__CORE__FERNET_KEY"] = ""
        env.update(settings)
        check_round_trip(case, env, dconn)
    finally:
        if url:
            drop_database(case, url)


def check_round_trip(case: Case, env: dict[str, str], dconn: str) -> None:
    """Apply, read back with Airflow, add with Airflow, plan with dconn."""
    airflow = str(case.venv / "bin" / "airflow")
    three = not case.version.startswith("2.")
    case.run([airflow, "db", "migrate"], env)
    if case.kind.startswith("sqlite-"):
        describe_cfg(case, Path(env["AIRFLOW_HOME"]) / "airflow.cfg")
    if three:
        case.run([airflow, "teams", "create", TEAM], env)
    config = case.work / "config"
    config.mkdir()
    (config / "declared.toml").write_text(declared_toml(team=three), encoding="utf-8")
    case.run([dconn, "plan", "-q", "-c", str(config), "--detailed-exitcode"], env, expect=(2,))
    case.run([dconn, "apply", "-q", "-c", str(config), "--auto-approve"], env)
    case.run([dconn, "plan", "-q", "-c", str(config), "--detailed-exitcode"], env, expect=(0,))

    case.run([airflow, "connections", "export", "exported.json", "--file-format", "json"], env)
    exported = json.loads((case.work / "exported.json").read_text(encoding="utf-8"))
    problems = export_differences(expected_declared(), exported)
    problems += stored_differences(case, env, team=three)
    if problems:
        raise CaseFailed(
            "Airflow read back something else than dconn was asked to write:\n  " + "\n  ".join(problems)
        )
    case.log(f"airflow connections export matches all {len(expected_declared())} declared connections")

    for conn_id, argv in ADDED.items():
        case.run([airflow, "connections", "add", conn_id, *argv], env)
    (config / "added.toml").write_text(added_toml(case.version), encoding="utf-8")
    out = case.run(
        [dconn, "plan", "-c", str(config), "--detailed-exitcode", "--no-color"], env, expect=(0, 2)
    )
    if "No changes." not in out:
        raise CaseFailed("dconn plans changes to connections Airflow added exactly as declared:\n" + out)
    case.log(f"dconn plans no change for the {len(ADDED)} connections added by airflow connections add")


def describe_cfg(case: Case, cfg: Path) -> None:
    """Log what Airflow wrote into its own airflow.cfg (whether it holds a Fernet key)."""
    import configparser

    parser = configparser.ConfigParser(strict=False)
    parser.read(cfg)
    key = parser.get("core", "fernet_key", fallback="")
    case.log(f"airflow.cfg written by Airflow: fernet_key {'set' if key else 'empty (no encryption)'}")


AIRFLOW_VIEW = """
import json
from airflow.configuration import conf
from airflow.models.connection import Connection
from airflow.utils.session import create_session
with create_session() as s:
    rows = {
        c.conn_id: {
            "team_name": getattr(c, "team_name", None),
            "is_encrypted": bool(c.is_encrypted),
            "is_extra_encrypted": bool(c.is_extra_encrypted),
        }
        for c in s.query(Connection)
    }
print(json.dumps({"has_key": bool(conf.get("core", "fernet_key")), "rows": rows}))
"""


def stored_differences(case: Case, env: dict[str, str], team: bool) -> list[str]:
    """Ask Airflow's own model whether it has a key, and check dconn encrypted exactly then.

    Also reads team_name, which `airflow connections export` leaves out.
    """
    out = case.run([str(case.venv / "bin" / "python"), "-c", AIRFLOW_VIEW], env)
    view = json.loads(out.strip().splitlines()[-1])
    case.log(f"Airflow's own configuration has a Fernet key: {view['has_key']}")
    problems = []
    for conn_id, fields in expected_declared(team=team).items():
        row = view["rows"].get(conn_id, {})
        for flag, name in (("is_encrypted", "password"), ("is_extra_encrypted", "extra")):
            wanted = bool(fields.get(name)) and view["has_key"]
            if row.get(flag) != wanted:
                problems.append(f'connection "{conn_id}" {flag}: {row.get(flag)}, Airflow expects {wanted}')
        if team and row.get("team_name") != fields.get("team_name"):
            problems.append(
                f'connection "{conn_id}" team_name: declared {fields.get("team_name")!r}, '
                f"Airflow read {row.get('team_name')!r}"
            )
    return problems


# ---------------------------------------------------------------- main


def main() -> int:
    """Parse the arguments, prepare the environments, run the cases, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--airflow", nargs="+", default=list(VERSIONS), help="Airflow versions (default: all)"
    )
    parser.add_argument(
        "--backend", nargs="+", default=list(CASES), choices=CASES, help="cases (default: all)"
    )
    parser.add_argument(
        "--cache", type=Path, default=Path(os.environ.get("DCONN_COMPAT_CACHE", "~/.cache/dconn-compat"))
    )
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep every case's folder")
    parser.add_argument(
        "--freeze", action="store_true", help="record constraints/ from the environments and stop"
    )
    args = parser.parse_args()
    started = time.monotonic()
    cache = args.cache.expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    dconn = os.environ.get("DCONN") or str(Path(sys.executable).parent / "dconn")
    if not Path(dconn).exists() and not shutil.which(dconn):
        sys.exit(f"compat: no dconn at {dconn}: run with the project's .venv/bin/python, or set DCONN")
    ensure_build_deps()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(args.airflow)) as pool:
        venvs = dict(
            zip(args.airflow, pool.map(lambda v: ensure_airflow(v, cache), args.airflow), strict=True)
        )
    if args.freeze:
        for version, venv in venvs.items():
            freeze(version, venv)
        return 0
    prepared = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="dconn-compat-"))
    cases = []
    for version in args.airflow:
        for kind in args.backend:
            work = root / f"airflow-{version}-{kind}"
            work.mkdir()
            cases.append(Case(version, kind, venvs[version], work))
    failed = run_all(cases, dconn, args.jobs)
    for case in cases:
        (case.work / "compat.log").write_text("\n".join(case.log_lines) + "\n", encoding="utf-8")
    if failed or args.keep:
        print(f"compat: logs and files kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    total = time.monotonic() - started
    setup = prepared - started
    print(
        f"compat: environments ready in {setup:.0f} s, cases took {total - setup:.0f} s, total {total:.0f} s"
    )
    print(f"compat: {len(cases) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def run_all(cases: list[Case], dconn: str, jobs: int) -> list[Case]:
    """Run the cases, a few at a time; print one line per case; return those that failed."""
    failed: list[Case] = []

    def one(case: Case) -> tuple[Case, str | None, float]:
        started = time.monotonic()
        try:
            run_case(case, dconn)
        except CaseFailed as error:
            return case, str(error), time.monotonic() - started
        except Exception:  # a broken environment: report it like a failed check
            return case, traceback.format_exc(), time.monotonic() - started
        return case, None, time.monotonic() - started

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for case, error, seconds in pool.map(one, cases):
            if error is None:
                print(f"compat: PASS {case.name} ({seconds:.0f} s)", flush=True)
                continue
            failed.append(case)
            case.log("FAILED: " + error)
            print(f"compat: FAIL {case.name} ({seconds:.0f} s)\n" + "\n".join(case.log_lines), flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
