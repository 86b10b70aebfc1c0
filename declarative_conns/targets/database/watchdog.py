"""Notice a database that stopped answering: shut the socket of a wait the server leaves silent.

libpq has no read timeout. A server, or a proxy or pooler in front of it, that keeps the TCP
connection open but never answers leaves psycopg waiting forever: TCP keepalives and
tcp_user_timeout do not help while the other side's kernel still acknowledges every packet,
and the server's statement_timeout cannot help when the server is the one that hangs. (PyMySQL
has its own read timeout; this is the same idea for psycopg.) No library does this, hence this
module.

One daemon thread serves every wait: a wait registers a `Watch`, notes each step the server
lets it make, and unregisters when it ends. When a watch sees no step for its limit, the
thread shuts the socket down; the driver's blocked wait then fails at once, and the caller
learns from `Watch.fired` that silence, not the server, ended it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

Sent = TypeVar("Sent")
Received = TypeVar("Received")
Result = TypeVar("Result")


#: psycopg's Ready.R: the socket has something to read.
_READABLE = 1


class Watch:
    """One wait for the server: its socket, how long it may stay silent, when it last moved."""

    def __init__(self, fileno: int, limit: float) -> None:
        self.fileno = fileno
        self.limit = limit
        self.last = time.monotonic()
        self.fired = False

    def follow(self, gen: Generator[Sent, Received, Result]) -> Generator[Sent, Received, Result]:
        """Run a driver's wait generator unchanged, noting each step the server lets it make.

        Only an answer (the socket readable) is progress: psycopg also steps its generator when
        its poll merely times out (every 0.1 s, to notice Ctrl-C), sending "ready: nothing" (0),
        and when the socket can take more to send, which a silent peer's kernel still allows.
        """
        try:
            state = next(gen)
            while True:
                ready = yield state
                if isinstance(ready, int) and ready & _READABLE:
                    self.last = time.monotonic()
                state = gen.send(ready)
        except StopIteration as done:
            result: Result = done.value
            return result

    def _fire(self) -> None:
        """Shut the socket down, so the waiting driver fails instead of waiting on."""
        self.fired = True
        try:
            duplicate = socket.socket(fileno=os.dup(self.fileno))
        except OSError:
            return
        with duplicate, suppress(OSError):  # closing the duplicate leaves the driver's descriptor
            duplicate.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One thread for every watch; it sleeps until the earliest one could be due."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._watches: set[Watch] = set()
        self._thread: threading.Thread | None = None
        self._wake_at: float | None = None

    def add(self, watch: Watch) -> None:
        """Start watching; wake the thread only when this watch is due before it wakes anyway."""
        with self._cond:
            self._watches.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dconn-db-watchdog", daemon=True)
                self._thread.start()
            elif self._wake_at is None or watch.last + watch.limit < self._wake_at:
                self._cond.notify()

    def remove(self, watch: Watch) -> None:
        """Stop watching (the wait ended)."""
        with self._cond:
            self._watches.discard(watch)

    def _run(self) -> None:
        """Fire every watch silent for its limit; sleep until the next could be."""
        with self._cond:
            while True:
                now = time.monotonic()
                wake: float | None = None
                for watch in list(self._watches):
                    due = watch.last + watch.limit
                    if due <= now:
                        self._watches.discard(watch)
                        watch._fire()
                    elif wake is None or due < wake:
                        wake = due
                self._wake_at = wake
                self._cond.wait(None if wake is None else wake - now)

    def _forget_thread(self) -> None:
        """After fork: the child has no watchdog thread yet, and none of the parent's waits."""
        self._cond = threading.Condition()
        self._watches = set()
        self._thread = None
        self._wake_at = None


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=_WATCHDOG._forget_thread)


@contextmanager
def watching(fileno: int, limit: float) -> Iterator[Watch]:
    """Watch one wait on a socket: it may stay silent `limit` seconds, then the socket is shut."""
    watch = Watch(fileno, limit)
    _WATCHDOG.add(watch)
    try:
        yield watch
    finally:
        _WATCHDOG.remove(watch)
