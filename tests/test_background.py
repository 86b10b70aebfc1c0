"""Loading the configuration in a forked child: `background.start`/`Pending`, and dconn unchanged by it.

The unit tests fork the test process itself (MIN_BYTES lowered to 0). The command tests run
`dconn plan` and `dconn apply` on a configuration big enough to fork, once with DCONN_PARALLEL=0
and once with forking allowed, and require the same stdout, stderr, exit code and database. A
sitecustomize module on PYTHONPATH logs each fork of the dconn process, so that a test proves
the child was used rather than assuming it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from declarative_conns import background
from tests.helpers import run_dconn


def _usable_cpus() -> int:
    """Return the number of CPUs this process may run on (0 where the platform cannot tell)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else 0


needs_fork = pytest.mark.skipif(
    sys.platform != "linux" or _usable_cpus() < 2,
    reason="background.start forks only on Linux with at least 2 usable CPUs "
    f"(platform {sys.platform}, {_usable_cpus()} usable CPUs)",
)


# --- background.start and Pending --------------------------------------------------------------


class WorkFailed(Exception):
    """The error of a piece of work, as the caller must see it."""


@pytest.fixture
def forking(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Allow forking for any input (MIN_BYTES 0, DCONN_PARALLEL unset); return an existing input file."""
    monkeypatch.setattr(background, "MIN_BYTES", 0)
    monkeypatch.delenv("DCONN_PARALLEL", raising=False)
    source = tmp_path / "connections.toml"
    source.write_text("version = 1\n")
    return source


def logged(log: Path, then: Callable[[], Any]) -> Callable[[], Any]:
    """Return work that appends the pid of the process running it to `log`, then returns `then()`."""

    def work() -> Any:
        with log.open("a") as file:
            file.write(f"{os.getpid()}\n")
        return then()

    return work


def pids(log: Path) -> list[int]:
    """Return the pids a `logged` work wrote, in order."""
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def assert_reaped(pid: int) -> None:
    """Fail unless the child `pid` was waited for (no zombie left)."""
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_for_pid(log: Path, timeout: float = 10.0) -> int:
    """Return the first pid a `logged` work wrote, waiting for the child to start."""
    deadline = time.monotonic() + timeout
    while not pids(log):
        assert time.monotonic() < deadline, "the child never started its work"
        time.sleep(0.01)
    return pids(log)[0]


def test_small_input_runs_inline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Input below MIN_BYTES: the work runs once, now, in this process; no child."""
    monkeypatch.delenv("DCONN_PARALLEL", raising=False)
    small = tmp_path / "connections.toml"
    small.write_text("version = 1\n")
    log = tmp_path / "pids"
    pending = background.start(logged(log, os.getpid), [small])
    assert not pending.in_background
    assert pids(log) == [os.getpid()]
    assert pending.result() == os.getpid()
    assert pids(log) == [os.getpid()], "result() must not run the work again"


def test_small_input_raises_the_work_error_at_start(tmp_path: Path) -> None:
    """Inline work's error is raised by start itself, as a sequential load raises it."""
    small = tmp_path / "connections.toml"
    small.write_text("version = 1\n")

    def work() -> NoReturn:
        raise WorkFailed("connections.toml: invalid TOML")

    with pytest.raises(WorkFailed, match=r"^connections\.toml: invalid TOML$"):
        background.start(work, [small])


@pytest.mark.parametrize(
    ("case", "inputs"),
    [("no inputs", []), ("a missing input", ["missing.toml"])],
)
def test_no_fork_without_readable_input(forking: Path, tmp_path: Path, case: str, inputs: list[str]) -> None:
    """Nothing to measure (no input, or one that cannot be read): the work runs inline."""
    pending = background.start(os.getpid, [tmp_path / name for name in inputs])
    assert not pending.in_background, case
    assert pending.result() == os.getpid()


@pytest.mark.parametrize("setting", ["0", " 0\n", "false", "No", "OFF"])
def test_dconn_parallel_0_disables_forking(
    forking: Path, monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    """DCONN_PARALLEL=0 (or false, no, off, any case) runs the work in this process whatever the input's size."""
    monkeypatch.setenv("DCONN_PARALLEL", setting)
    pending = background.start(os.getpid, [forking])
    assert not pending.in_background
    assert pending.result() == os.getpid()


def test_one_usable_cpu_disables_forking(forking: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process pinned to one CPU gains nothing from a child: the work runs inline."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    pending = background.start(os.getpid, [forking])
    assert not pending.in_background
    assert pending.result() == os.getpid()


@needs_fork
def test_folder_input_counts_only_its_toml_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A folder's size is its *.toml files': other files do not make the work fork."""
    monkeypatch.delenv("DCONN_PARALLEL", raising=False)
    monkeypatch.setattr(background, "MIN_BYTES", 100)
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "notes.txt").write_text("x" * 500)
    (folder / "a.toml").write_text("x" * 60)
    inline = background.start(os.getpid, [folder])
    assert not inline.in_background
    (folder / "b.toml").write_text("x" * 60)
    with background.start(os.getpid, [folder]) as forked:
        assert forked.in_background
        assert forked.result() != os.getpid()


@needs_fork
def test_forked_child_does_the_work(forking: Path) -> None:
    """Enough input: a child process computes the result and the parent receives it intact."""
    value = {"conn_ids": [f"c{i}" for i in range(20_000)], "port": 5432, "nested": (1.5, None, b"\x00")}
    pending = background.start(lambda: (os.getpid(), value), [forking])
    assert pending.in_background
    child, received = pending.result()
    assert child != os.getpid()
    assert received == value  # larger than a pipe's buffer: read in chunks
    assert not pending.in_background
    assert_reaped(child)
    assert pending.result() == (child, value), "a second result() returns the same, without a child"


@needs_fork
def test_failing_child_is_rerun_here_with_the_genuine_error(forking: Path, tmp_path: Path) -> None:
    """Work that fails in the child runs again in the parent, which raises its real type and message."""
    log = tmp_path / "pids"

    def fail() -> NoReturn:
        raise WorkFailed('connections.toml: connections.a.port: "x" is not of type integer')

    pending = background.start(logged(log, fail), [forking])
    assert pending.in_background, "start must not raise when the child does the work"
    with pytest.raises(WorkFailed) as raised:
        pending.result()
    assert str(raised.value) == 'connections.toml: connections.a.port: "x" is not of type integer'
    child, parent = pids(log)
    assert child != os.getpid()
    assert parent == os.getpid()
    assert_reaped(child)


@needs_fork
def test_unpicklable_result_is_recomputed_here(forking: Path, tmp_path: Path) -> None:
    """A result pickle cannot carry (a lambda) is computed again in the parent."""
    log = tmp_path / "pids"
    pending = background.start(logged(log, lambda: (os.getpid(), lambda: "made here")), [forking])
    maker, function = pending.result()
    assert maker == os.getpid()
    assert function() == "made here"
    child, parent = pids(log)
    assert (child != os.getpid(), parent) == (True, os.getpid())
    assert_reaped(child)


@needs_fork
def test_then_runs_in_the_child_after_the_result_is_sent(forking: Path) -> None:
    """The result arrives before `then` finishes; `then_result` waits for it, then the child is reaped."""
    release = forking.with_name("release")

    def then(result: int) -> tuple[int, int]:
        deadline = time.monotonic() + 10
        while not release.exists():  # `then` waits until the parent has the first result
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return result, os.getpid()

    pending = background.start(os.getpid, [forking], then=then)
    child = pending.result()
    assert child != os.getpid()
    assert pending.in_background, "the child is still running `then`"
    release.touch()
    assert pending.then_result() == (child, child)
    assert not pending.in_background
    assert_reaped(child)


@needs_fork
def test_then_failing_in_the_child_is_rerun_here(forking: Path, tmp_path: Path) -> None:
    """`then` failing in the child runs again in the parent on the child's result, with its real error."""
    log = tmp_path / "pids"

    def then(result: int) -> NoReturn:
        with log.open("a") as file:
            file.write(f"{os.getpid()}\n")
        raise WorkFailed(f"type check of {result} failed")

    pending = background.start(os.getpid, [forking], then=then)
    child = pending.result()
    with pytest.raises(WorkFailed, match=rf"^type check of {child} failed$"):
        pending.then_result()
    assert pids(log) == [child, os.getpid()]
    assert_reaped(child)


def test_then_inline_runs_at_start_and_raises_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a child, `then` runs at start too: its error is raised before the caller goes on."""
    monkeypatch.delenv("DCONN_PARALLEL", raising=False)
    small = tmp_path / "connections.toml"
    small.write_text("version = 1\n")
    pending = background.start(lambda: 2, [small], then=lambda n: n * 10)
    assert not pending.in_background
    assert (pending.result(), pending.then_result()) == (2, 20)

    def then(_: int) -> NoReturn:
        raise WorkFailed("strict: unknown extra")

    with pytest.raises(WorkFailed, match="strict: unknown extra"):
        background.start(lambda: 2, [small], then=then)


class BreaksOnLoad:
    """A value that pickles in the child and fails to unpickle in the parent."""

    def __init__(self, maker: int) -> None:
        self.maker = maker

    def __reduce__(self) -> tuple[Callable[[int], BreaksOnLoad], tuple[int]]:
        return _load_only_where_made, (self.maker,)


def _load_only_where_made(maker: int) -> BreaksOnLoad:
    """Unpickle a BreaksOnLoad only in the process that made it."""
    if maker != os.getpid():
        raise ValueError("made in another process")
    return BreaksOnLoad(maker)


@needs_fork
def test_result_that_does_not_unpickle_is_recomputed_here(forking: Path) -> None:
    """A pickled result that fails to load in the parent is computed again in the parent."""
    pending = background.start(lambda: BreaksOnLoad(os.getpid()), [forking])
    assert pending.in_background
    assert pending.result().maker == os.getpid()


@needs_fork
def test_crashed_child_is_rerun_here(forking: Path) -> None:
    """A child killed mid-work (as by the OOM killer) leaves the work to the parent."""
    parent = os.getpid()

    def work() -> int:
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return os.getpid()

    pending = background.start(work, [forking])
    assert pending.in_background
    assert pending.result() == parent


@needs_fork
def test_close_kills_and_reaps_an_unfinished_child(forking: Path, tmp_path: Path) -> None:
    """close() on a child still working stops it at once and waits for it: no zombie, no wait."""
    log = tmp_path / "pids"
    pending = background.start(logged(log, lambda: time.sleep(20)), [forking])
    child = wait_for_pid(log)
    began = time.monotonic()
    pending.close()
    assert time.monotonic() - began < 2
    assert not pending.in_background
    assert_reaped(child)
    pending.close()  # a second close is harmless


@needs_fork
def test_leaving_the_with_block_early_kills_the_child(forking: Path, tmp_path: Path) -> None:
    """An error before result() (the database failed) leaves no child behind."""
    log = tmp_path / "pids"
    began = time.monotonic()
    with pytest.raises(WorkFailed), background.start(logged(log, lambda: time.sleep(20)), [forking]):
        wait_for_pid(log)
        raise WorkFailed("cannot read the database")
    assert time.monotonic() - began < 5
    assert_reaped(pids(log)[0])


class Interrupted(Exception):
    """Raised by a signal handler, as Ctrl-C raises KeyboardInterrupt."""


@pytest.fixture
def interrupt_soon() -> Iterator[Callable[[float], object]]:
    """Return a function that makes an exception arrive in this process after some seconds."""

    def interrupt(*_: object) -> NoReturn:
        raise Interrupted("Ctrl-C")

    previous = signal.signal(signal.SIGALRM, interrupt)
    yield lambda seconds: signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


@needs_fork
def test_interrupted_while_waiting_for_the_child(
    forking: Path, tmp_path: Path, interrupt_soon: Callable[[float], object]
) -> None:
    """Ctrl-C while result() waits: the interruption propagates as is and the child is reaped."""
    log = tmp_path / "pids"
    with (
        pytest.raises(Interrupted),
        background.start(logged(log, lambda: time.sleep(20)), [forking]) as pending,
    ):
        wait_for_pid(log)
        interrupt_soon(0.1)
        pending.result()
    assert not pending.in_background
    assert_reaped(pids(log)[0])
    assert pids(log)[1:] == [], "an interrupted result() must not start the work here"


# --- dconn plan/apply, with and without the child -----------------------------------------------

CONNECTIONS = 2_000
TYPO_WARNING = (
    "Warning: connections.toml: connections.typo.extra.sslmod: unknown for postgres; did you mean 'sslmode'?"
)
IGNORED_WARNING = (
    'Warning: connection "legacy_default" matches an ignore pattern but is declared, so dconn manages it'
)
SECRET = "bg-secret-4f1a"
SITECUSTOMIZE = '''\
"""Log the pid of each child dconn forks to the file $FORK_LOG (a probe of tests/test_background.py)."""
import os

from declarative_conns import background

_fork = background._fork


def _logging_fork(*args):
    child = _fork(*args)  # the child never returns from here: it leaves with os._exit
    if child is not None:
        with open(os.environ["FORK_LOG"], "a") as log:
            log.write(f"{child[0]}\\n")
    return child


background._fork = _logging_fork
'''


def big_document(*, broken: str | None = None) -> str:
    """Return a configuration of CONNECTIONS connections plus a few special ones.

    "legacy_default" is declared though ignored (a load warning) and reads a secret file; "typo"
    has an unknown extra key (a conn_type warning); `broken` names a connection whose port is
    text (a schema error), near the end of the file.
    """
    parts = ['version = 1\n\n[settings]\nignore = ["*_default"]\n']
    for i in range(CONNECTIONS):
        conn_id = f"conn_{i:05d}"
        password = '{ from_env = "BG_SECRET" }' if i % 3 == 0 else f'"pw-{i}"'
        port = '"fifty"' if conn_id == broken else "5432"
        parts.append(
            f'\n[connections.{conn_id}]\nconn_type = "postgres"\ndescription = "Warehouse replica {i}"\n'
            f'host = "pg-{i}.internal"\nschema = "analytics"\nlogin = "etl_{i}"\npassword = {password}\n'
            f'port = {port}\nextra = {{ sslmode = "require", connect_timeout = 10, application_name = "a{i}" }}\n'
        )
    parts.append(
        '\n[connections.legacy_default]\nconn_type = "http"\nhost = "legacy.example.com"\n'
        'password = { from_file = "token.txt" }\n'
    )
    parts.append('\n[connections.typo]\nconn_type = "postgres"\nhost = "h"\nextra = { sslmod = "require" }\n')
    return "".join(parts)


@dataclass
class Run:
    """What a user sees of one dconn command, with the project's own paths masked."""

    code: int
    stdout: str
    stderr: str


@dataclass
class Project:
    """A folder with a configuration, a database and a state file, run with or without the child."""

    folder: Path
    db: Any
    parallel: bool

    @property
    def state(self) -> Path:
        """Return the state file's path."""
        return self.folder / ".dconn" / "state.json"

    @property
    def forks(self) -> Path:
        """Return the file the probe logs forks to."""
        return self.folder.parent / f"forks-{self.folder.name}"

    def write(self, document: str) -> None:
        """Write connections.toml (and the token file it reads)."""
        (self.folder / "connections.toml").write_text(document)
        (self.folder / "token.txt").write_text(SECRET + "-file\n")

    def dconn(self, *args: str, db_url: str | None = None) -> Run:
        """Run dconn in the folder, forking allowed or DCONN_PARALLEL=0; return masked output."""
        self.forks.unlink(missing_ok=True)
        url = self.db.url if db_url is None else db_url
        env = {
            "DCONN_DB_URL": url,
            "DCONN_FERNET_KEY": self.db.fernet_key,
            "BG_SECRET": SECRET,
            "FORK_LOG": str(self.forks),
            "PYTHONPATH": os.pathsep.join(
                [str(self.folder.parent / "probe"), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        if not self.parallel:
            env["DCONN_PARALLEL"] = "0"
        done = run_dconn(*args, cwd=self.folder, env=env, timeout=60)

        def mask(text: str) -> str:
            return text.replace(url, "<DB>").replace(str(self.folder), "<DIR>")

        assert SECRET not in done.stdout + done.stderr
        return Run(done.returncode, mask(done.stdout), mask(done.stderr))

    def forked(self) -> bool:
        """Tell whether the last command forked a child (as the probe logged)."""
        return bool(pids(self.forks))

    def stored(self) -> list[tuple[Any, ...]]:
        """Return the connection rows as (conn_id, conn_type, host, port), encrypted columns left out."""
        return sorted((r["conn_id"], r["conn_type"], r["host"], r["port"]) for r in self.db.rows())


@pytest.fixture
def pair(make_db: Any, tmp_path: Path) -> tuple[Project, Project]:
    """Two identical projects, each with its own empty Airflow 2.x SQLite table; the second may fork."""
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(SITECUSTOMIZE)
    projects = []
    for name, parallel in (("sequential", False), ("parallel", True)):
        folder = tmp_path / name
        folder.mkdir()
        projects.append(Project(folder, make_db("sqlite", "2.x"), parallel))
    assert len(big_document().encode()) >= background.MIN_BYTES, (
        "the configuration must be big enough to fork"
    )
    return projects[0], projects[1]


def run_both(pair: tuple[Project, Project], *args: str, db_url: str | None = None) -> Run:
    """Run the same command in both projects; require equal output, and a fork in the parallel one only."""
    sequential, parallel = pair
    expected = sequential.dconn(*args, db_url=db_url)
    assert not sequential.forked(), "DCONN_PARALLEL=0 must not fork"
    got = parallel.dconn(*args, db_url=db_url)
    assert parallel.forked(), "a configuration this big must be loaded in a child"
    assert got == expected
    assert "Traceback" not in got.stderr
    return got


@needs_fork
def test_plan_and_apply_print_the_same_with_the_child(pair: tuple[Project, Project]) -> None:
    """plan, apply, plan again: same output, exit codes and rows; each warning printed once."""
    for project in pair:
        project.write(big_document())
    planned = run_both(pair, "plan", "--detailed-exitcode")
    assert planned.code == 2
    assert planned.stdout.endswith(f"Plan: {CONNECTIONS + 2} to add, 0 to change, 0 to destroy.\n")
    assert planned.stderr.splitlines().count(TYPO_WARNING) == 1, planned.stderr
    assert planned.stderr.splitlines().count(IGNORED_WARNING) == 1, planned.stderr
    applied = run_both(pair, "apply", "--auto-approve")
    assert applied.code == 0, applied.stderr
    assert f"Apply complete! Resources: {CONNECTIONS + 2} added, 0 changed, 0 destroyed" in applied.stdout
    assert applied.stderr.splitlines().count(TYPO_WARNING) == 1, applied.stderr
    again = run_both(pair, "plan", "--detailed-exitcode")
    assert again.code == 0, again.stdout
    assert "No changes." in again.stdout
    sequential, parallel = pair
    assert parallel.stored() == sequential.stored()
    assert len(parallel.stored()) == CONNECTIONS + 2


@needs_fork
@pytest.mark.parametrize("command", [["plan"], ["apply", "--auto-approve"]])
def test_strict_fails_on_the_warning_and_writes_nothing(
    pair: tuple[Project, Project], command: list[str]
) -> None:
    """--strict turns the conn_type warning into exit 1, the same way, before the database or state is written."""
    for project in pair:
        project.write(big_document())
    failed = run_both(pair, *command, "--strict")
    assert failed.code == 1
    assert failed.stdout == ""
    assert failed.stderr.startswith("Error: ")
    assert "connections.typo.extra.sslmod: unknown for postgres" in failed.stderr
    for project in pair:
        assert project.stored() == []
        assert not project.state.exists()


@needs_fork
@pytest.mark.parametrize(
    ("unreachable", "command"),
    [
        ("sqlite:///{folder}/missing-folder/airflow.db", ["plan"]),
        ("postgresql+psycopg://dconn@127.0.0.1:{port}/airflow", ["apply", "--auto-approve"]),
    ],
)
def test_configuration_error_comes_before_an_unreachable_database(
    pair: tuple[Project, Project], closed_port: int, unreachable: str, command: list[str]
) -> None:
    """A schema error in the big file and no database: the configuration's error, as when run in order."""
    for project in pair:
        project.write(big_document(broken="conn_01900"))
    url = unreachable.format(folder=pair[0].folder.parent, port=closed_port)
    failed = run_both(pair, *command, db_url=url)
    assert failed.code == 1
    assert failed.stdout == ""
    assert failed.stderr == (
        "Error: the configuration has 1 problem:\n"
        "  connections.toml: connections.conn_01900.port: 'fifty' is not of type 'integer'\n"
    )


@needs_fork
def test_unreachable_database_with_a_valid_configuration(
    pair: tuple[Project, Project], closed_port: int
) -> None:
    """A valid big file and no database: the conn_type warning, then the database's error, the same way."""
    for project in pair:
        project.write(big_document())
    failed = run_both(pair, "plan", db_url=f"postgresql+psycopg://dconn@127.0.0.1:{closed_port}/airflow")
    assert failed.code == 1
    lines = failed.stderr.splitlines()
    assert lines[0] == TYPO_WARNING
    assert lines[1].startswith("Error: cannot read <DB>: cannot connect: ")
    assert len(lines) == 2


@needs_fork
@pytest.mark.parametrize("broken", [None, "conn_01900"])
def test_corrupt_state_file(pair: tuple[Project, Project], broken: str | None) -> None:
    """A corrupt state file: the configuration's error if it has one, else the state's; same both ways."""
    for project in pair:
        project.write(big_document(broken=broken))
        project.state.parent.mkdir()
        project.state.write_text('{"version": 1, "conn')
    failed = run_both(pair, "plan")
    assert failed.code == 1
    assert failed.stdout == ""
    if broken:
        assert failed.stderr.startswith("Error: the configuration has 1 problem:\n")
    else:
        assert failed.stderr.splitlines()[0] == TYPO_WARNING
        assert failed.stderr.splitlines()[-1].startswith("Error: state file .dconn/state.json is corrupt")
    for project in pair:
        assert project.state.read_text() == '{"version": 1, "conn'
        assert project.stored() == []
