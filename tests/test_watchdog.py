"""The watchdog: a wait the server leaves silent past its limit has its socket shut; progress is not silence."""

from __future__ import annotations

import socket
import time
from collections.abc import Generator, Iterator

import pytest

from declarative_conns.targets.database.watchdog import watching


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Return a connected socket pair: (dconn's end, the server's end)."""
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def steps(count: int, ready: int) -> Generator[int, int, str]:
    """Stand in for a driver's wait generator: `count` steps, each expecting `ready`."""
    for _ in range(count):
        got = yield 1
        assert got == ready
    return "done"


def drive(gen: Generator[int, int, str], ready: int, pause: float) -> str:
    """Drive a wait generator as psycopg's wait does, sending `ready` after each pause."""
    try:
        next(gen)
        while True:
            time.sleep(pause)
            gen.send(ready)
    except StopIteration as done:
        return str(done.value)


def test_silent_wait_is_ended_by_shutting_the_socket(pair: tuple[socket.socket, socket.socket]) -> None:
    """A read nothing answers returns (end of stream) once the limit passes; the watch says it fired."""
    ours, _ = pair
    started = time.monotonic()
    with watching(ours.fileno(), 0.3) as watch:
        assert ours.recv(1) == b""
    assert watch.fired and 0.25 <= time.monotonic() - started < 2


def test_answered_wait_is_left_alone(pair: tuple[socket.socket, socket.socket]) -> None:
    """A wait that ends in time leaves the socket open and usable."""
    ours, theirs = pair
    with watching(ours.fileno(), 0.3) as watch:
        theirs.sendall(b"x")
        assert ours.recv(1) == b"x"
    time.sleep(0.5)
    theirs.sendall(b"y")
    assert ours.recv(1) == b"y" and not watch.fired


def test_steady_progress_outlasts_the_limit(pair: tuple[socket.socket, socket.socket]) -> None:
    """The limit is on silence, not on the whole wait: a long answer arriving steadily is not cut."""
    ours, _ = pair
    with watching(ours.fileno(), 0.3) as watch:
        assert drive(watch.follow(steps(8, 1)), 1, 0.1) == "done"  # 0.8 s in all
    assert not watch.fired


def test_idle_polls_are_not_progress(pair: tuple[socket.socket, socket.socket]) -> None:
    """psycopg steps its generator with 'ready: nothing' (0) to notice Ctrl-C: that is still silence."""
    ours, _ = pair
    with watching(ours.fileno(), 0.3) as watch:
        drive(watch.follow(steps(8, 0)), 0, 0.1)
    assert watch.fired
