"""Count the round trips of `dconn plan` and `dconn apply` on PostgreSQL over a slow link (issue 15).

A CI runner reaching a cloud database pays 20-100 ms for each turn of the conversation, however
little CPU the turn takes. For each N (1,000 and 5,000 by default), through `latency_proxy.py`
adding a round-trip time (20 ms by default) in front of the PostgreSQL server:

- `dconn plan` of the declared document, with no changes;
- `dconn apply --auto-approve` of a document that changes exactly one connection (connection 0:
  its host, literal password and one extra value).

Each is measured as a fresh process (pinned like the rest of the benchmark) from a copy of a
prepared database and state file; it reports the proxy's counts (round trips, the unanswered ones
among them, connections opened), the best wall time with the added delay, and the best wall time
through the proxy with no delay (their difference is the time spent waiting on the link). dconn is
given the database by `--db-url postgresql+psycopg://...@127.0.0.1:PORT/DB?sslmode=disable` (no
TLS: its handshake would add the same round trips to any client) and the key by `--fernet-key`.
The database is prepared through the proxy as well, because a state file belongs to one URL.
A reference row shows the least a client can do: psycopg connecting, one SELECT, closing.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backends import PostgresBackend
from latency_proxy import Counts, LatencyProxy
from measure import PYTHON, run_once
from workload import env_secrets, toml_document

SIZES = (1000, 5000)
RTT_MS = 20.0
#: Issue #15's ceilings, whatever N.
TARGETS = {"plan, no changes": 10, "apply, one change": 15}
REFERENCE = "reference: psycopg connect, one SELECT, close"
_REFERENCE_CODE = (
    "import psycopg, sys\nwith psycopg.connect(sys.argv[1], autocommit=True) as c: c.execute('select 1')"
)
_ONE_CHANGED = re.compile(r"(?<!\d)1 changed")


@dataclass
class RoundTrips:
    """One command measured through the proxy: its counts, and its wall time with and without delay."""

    n: int
    operation: str
    round_trips: int
    unanswered: int
    connections: int
    per_connection: list[int]
    seconds: float
    seconds_no_delay: float
    cpu_seconds: float
    runs: int
    #: The round trips of every delayed run (they should all agree).
    all_round_trips: list[int] = field(default_factory=list)


def bench_round_trips(
    pg_url: str,
    sizes: Sequence[int],
    runs: int,
    rtt_ms: float,
    work: Path,
    key: str,
    dconn: str,
    pin: Sequence[str],
    log: Callable[[str], None],
) -> list[RoundTrips]:
    """Measure the reference client, then plan and apply of one change for each N."""
    import sqlalchemy as sa

    target = sa.engine.make_url(pg_url)
    backend = PostgresBackend(pg_url)
    rows: list[RoundTrips] = []
    try:
        with LatencyProxy(target.host or "127.0.0.1", target.port or 5432, rtt_ms=rtt_ms) as proxy:
            env = _environment()
            url = _through(proxy, backend.url("rt_ref"))
            backend.create_empty("rt_ref")
            libpq_url = (
                sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
            )
            reference = [*pin, PYTHON, "-c", _REFERENCE_CODE, libpq_url]
            log(f"round trips: {REFERENCE}")
            rows.append(_measure(proxy, 0, REFERENCE, runs, rtt_ms, _nothing, reference, env, work))
            for n in sizes:
                rows.extend(_bench_size(backend, proxy, n, runs, rtt_ms, work, key, dconn, pin, env, log))
    finally:
        backend.close()
    return rows


def _bench_size(
    backend: PostgresBackend,
    proxy: LatencyProxy,
    n: int,
    runs: int,
    rtt_ms: float,
    work: Path,
    key: str,
    dconn: str,
    pin: Sequence[str],
    env: dict[str, str],
    log: Callable[[str], None],
) -> list[RoundTrips]:
    """Prepare N declared rows through the proxy; measure plan, and apply of one change."""
    folder = work / f"round-trips-{n}"
    folder.mkdir()
    desired, one_change = folder / "desired.toml", folder / "one-change.toml"
    desired.write_text(toml_document(n), encoding="utf-8")
    one_change.write_text(toml_document(n, changed_ids={0}), encoding="utf-8")
    state, saved_state = folder / "state" / "state.json", folder / "prepared-state.json"
    url = _through(proxy, backend.url("rt_work"))

    def command(*args: str) -> list[str]:
        return [*pin, dconn, *args, "--db-url", url, "--fernet-key", key, "--state", str(state)]

    def fresh() -> None:
        backend.copy("rt_full", "rt_work")
        state.parent.mkdir(exist_ok=True)
        shutil.copyfile(saved_state, state)

    log(f"round trips N={n}: preparing (dconn apply through the proxy)")
    backend.create_empty("rt_work")
    run_once(command("apply", "-c", str(desired), "--auto-approve", "--quiet"), env, folder)
    proxy.wait_idle()
    backend.copy("rt_work", "rt_full")
    shutil.copyfile(state, saved_state)

    log(f"round trips N={n}: dconn plan, dconn apply (one change)")
    plan = command("plan", "-c", str(desired), "--detailed-exitcode")  # exit 0: no changes
    apply = command("apply", "-c", str(one_change), "--auto-approve")
    return [
        _measure(proxy, n, "plan, no changes", runs, rtt_ms, fresh, plan, env, folder),
        _measure(proxy, n, "apply, one change", runs, rtt_ms, fresh, apply, env, folder, _one_changed),
    ]


def _measure(
    proxy: LatencyProxy,
    n: int,
    operation: str,
    runs: int,
    rtt_ms: float,
    prepare: Callable[[], None],
    argv: Sequence[str],
    env: dict[str, str],
    cwd: Path,
    check: Callable[[str], None] | None = None,
) -> RoundTrips:
    """Run the command `runs` times with the delay and as often without, in turn; keep the best times."""
    delayed: list[tuple[float, float, Counts]] = []
    undelayed: list[float] = []
    for _ in range(runs):
        for delay in (rtt_ms, 0.0):  # in turn, so that both meet the same drift of the machine
            proxy.rtt_ms = delay
            prepare()
            proxy.wait_idle()
            proxy.reset()
            seconds, _rss, cpu, stdout = run_once(argv, env, cwd)
            if not proxy.wait_idle():
                raise RuntimeError(f"{' '.join(argv)}: a connection through the proxy stayed open")
            if check is not None:
                check(stdout)
            if delay:
                delayed.append((seconds, cpu, proxy.counts()))
            else:
                undelayed.append(seconds)
    proxy.rtt_ms = rtt_ms
    seconds, cpu, counts = min(delayed, key=lambda run: run[0])
    return RoundTrips(
        n,
        operation,
        counts.round_trips,
        counts.unanswered,
        counts.connections,
        counts.per_connection,
        round(seconds, 3),
        round(min(undelayed), 3),
        round(cpu, 2),
        runs,
        [run[2].round_trips for run in delayed],
    )


def _through(proxy: LatencyProxy, url: str) -> str:
    """Return the database URL with the proxy's address in place of the server's, without TLS."""
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url).set(host="127.0.0.1", port=proxy.port, query={"sslmode": "disable"})
    return parsed.render_as_string(hide_password=False)


def _environment() -> dict[str, str]:
    """Return the environment for dconn: the workload's secrets, no database or key from outside."""
    env = {**os.environ, **env_secrets(False), "NO_COLOR": "1"}
    for name in ("DCONN_DB_URL", "DCONN_FERNET_KEY", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        env.pop(name, None)
    return env


def _nothing() -> None:
    """Prepare nothing."""


def _one_changed(stdout: str) -> None:
    """Fail unless the apply reports exactly one changed connection."""
    if not _ONE_CHANGED.search(stdout):
        raise RuntimeError(f"apply of one change did not report '1 changed':\n{stdout[-2000:]}")


# --- report ----------------------------------------------------------------------------------


def render_round_trips(rows: list[RoundTrips], rtt_ms: float) -> list[str]:
    """Return the round-trip section as markdown lines."""
    out = [
        f"## Round trips (PostgreSQL, {rtt_ms:g} ms round-trip time)",
        "",
        f"Through `benchmarks/latency_proxy.py`, which delays each chunk by {rtt_ms / 2:g} ms each way "
        "and counts a round trip for a connection's first send and for each send of the client after "
        "the server's data reached it; *unanswered* are last turns no data followed (PostgreSQL's "
        "Terminate, which costs no wait). The database is given as `--db-url ...?sslmode=disable`. "
        f"Wall seconds: {_runs(rows)}, with the delay and without it (through the proxy all the "
        "same); their difference is the time spent waiting on the link, at least the answered round "
        "trips times the round-trip time.",
        "",
        "| N | command | round trips | unanswered | per connection | connections | "
        f"wall s at {rtt_ms:g} ms | wall s at 0 ms | waiting s | answered × RTT s |",
        "| ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        size = f"{r.n:,}" if r.n else "—"
        counted = str(r.round_trips)
        if len(set(r.all_round_trips)) > 1:
            counted += f" ({min(r.all_round_trips)}-{max(r.all_round_trips)})"
        out.append(
            f"| {size} | `{r.operation}` | {counted} | {r.unanswered} "
            f"| {' + '.join(map(str, r.per_connection))} | {r.connections} | {r.seconds:.2f} "
            f"| {r.seconds_no_delay:.2f} | {r.seconds - r.seconds_no_delay:.2f} "
            f"| {(r.round_trips - r.unanswered) * rtt_ms / 1000:.2f} |"
        )
    return out


def _runs(rows: list[RoundTrips]) -> str:
    runs = rows[0].runs if rows else 0
    return "one run each" if runs == 1 else f"best of {runs} runs"


def round_trip_targets(rows: list[RoundTrips]) -> list[str]:
    """Return issue #15's round-trip targets as rows of the targets table."""
    out = []
    for operation, limit in TARGETS.items():
        measured = [r for r in rows if r.operation == operation]
        if not measured:
            continue
        counts = ", ".join(f"{r.round_trips} at {r.n:,}" for r in measured)
        met = all(r.round_trips <= limit for r in measured)
        same = len({r.round_trips for r in measured}) == 1
        out.append(f"| postgres `{operation}` ≤ {limit} round trips | {counts} | {'yes' if met else 'no'} |")
        if len(measured) > 1:
            out.append(
                f"| postgres `{operation}` round trips independent of N | {counts} | {'yes' if same else 'no'} |"
            )
    return out
