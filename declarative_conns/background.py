"""Run one piece of work in a forked child while this process does another, on a second core.

`dconn plan` and `apply` spend most of their time on two independent things: parsing and
checking the TOML files (pure Python: tomllib, the schema, the conn_type rules) and reading and
decrypting the database's rows. `start` forks a child that does the first while the caller does
the second; `Pending.result()` then receives the child's result through a pipe (pickled, in
memory only: a literal password in the TOML never touches the disk).

The child only computes; it never writes to the terminal, a file or the database, and it leaves
with `os._exit`, running no exit handler of the parent's. Errors are never carried across: when
the child fails in any way (an invalid file, a crash, a result that does not unpickle),
`result()` runs the work again in this process, so the error raised is the one a sequential run
raises, with its real type and message.

Small inputs, a single usable CPU, platforms other than Linux (where fork without exec is not
safe for every library) and DCONN_PARALLEL=0 run the work at once, in this process, exactly as
before: `start` then raises the work's error itself.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

#: Below this many bytes of input, forking costs more than it saves (about 1,000 connections).
MIN_BYTES = 256 * 1024


class Pending(Generic[T]):
    """The result of work started with `start`: done already, or being done by a child process."""

    def __init__(self, work: Callable[[], T], child: tuple[int, int] | None = None) -> None:
        self._work = work
        self._child = child  # (pid, read end of the pipe) until the child is collected
        self._result: tuple[T] | None = None

    @classmethod
    def done(cls, work: Callable[[], T], value: T) -> Pending[T]:
        """Return a Pending whose work was done already, in this process."""
        pending = cls(work)
        pending._result = (value,)
        return pending

    @property
    def in_background(self) -> bool:
        """Tell whether a child process is doing the work (until its result is collected)."""
        return self._child is not None

    def result(self) -> T:
        """Return the work's result, waiting for the child; raise the work's error."""
        if self._result is None:
            self._result = (self._from_child() if self._child is not None else None) or (self._work(),)
        return self._result[0]

    def _from_child(self) -> tuple[T] | None:
        """Return the child's result, or None when it failed in any way."""
        assert self._child is not None
        pid, fd = self._child
        self._child = None  # _collect closes the pipe and collects the child, even when interrupted
        data, ok = _collect(pid, fd)
        if not ok:
            return None
        try:
            return (pickle.loads(data),)  # noqa: S301 - our own child's bytes, through a pipe
        except Exception:  # whatever went wrong, the work is done here instead
            return None

    def close(self) -> None:
        """Stop and collect a child whose result is no longer wanted."""
        if self._child is not None:
            pid, fd = self._child
            self._child = None
            _kill(pid)
            os.close(fd)
            _wait(pid)

    def __enter__(self) -> Pending[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def start(work: Callable[[], T], inputs: Iterable[Path] = ()) -> Pending[T]:
    """Start `work` in a child process when it is worth it; else do it now, raising its error."""
    if _worth_forking(inputs):
        child = _fork(work)
        if child is not None:
            return Pending(work, child)
    return Pending.done(work, work())


def _worth_forking(inputs: Iterable[Path]) -> bool:
    """Tell whether to fork: Linux, two usable CPUs, not switched off, and enough input."""
    if sys.platform != "linux" or os.environ.get("DCONN_PARALLEL", "1").strip() == "0":
        return False
    if len(os.sched_getaffinity(0)) < 2:
        return False
    total = 0
    for path in inputs:
        try:
            files = path.glob("*.toml") if path.is_dir() else [path]
            total += sum(f.stat().st_size for f in files)
        except OSError:
            return False  # the work itself will report it
        if total >= MIN_BYTES:
            return True
    return False


def _fork(work: Callable[[], object]) -> tuple[int, int] | None:
    """Fork a child that runs `work` and writes its pickled result to a pipe; None if fork fails."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return None
    if pid == 0:  # pragma: no cover - the child; its work is measured through the parent
        code = 1
        try:
            os.close(read_end)
            data = pickle.dumps(work(), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def _collect(pid: int, fd: int) -> tuple[bytes, bool]:
    """Read everything the child wrote, then wait for it; ok when it exited 0."""
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        status = _wait(pid)
    except BaseException:  # interrupted (Ctrl-C) while waiting: leave no child behind, then go on
        _kill(pid)
        _wait(pid)
        raise
    finally:
        os.close(fd)
    return b"".join(chunks), status == 0


def _wait(pid: int) -> int | None:
    """Collect a child; return its exit code (None if it was killed or already collected)."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None


def _kill(pid: int) -> None:
    """Stop a child (it only computes; nothing of it needs to finish)."""
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
