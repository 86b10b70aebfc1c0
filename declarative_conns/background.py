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
safe for every library) and DCONN_PARALLEL=0 (or false, no, off) run the work at once, in this
process, exactly as before: `start` then raises the work's error itself.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")

#: DCONN_PARALLEL values that keep everything in one process.
_OFF = frozenset({"0", "false", "no", "off"})

#: Below this many bytes of input, forking costs more than it saves (about 1,000 connections).
MIN_BYTES = 256 * 1024


class Pending(Generic[T, U]):
    """Work started with `start`, and optionally what follows from it: done already, or by a child.

    The child sends each result as soon as it has it: `result()` returns while the child is still
    doing `then` (type-checking the configuration, say), which `then_result()` waits for.
    """

    def __init__(
        self,
        work: Callable[[], T],
        then: Callable[[T], U] | None = None,
        child: tuple[int, int] | None = None,
    ) -> None:
        self._work = work
        self._then = then
        self._child = child  # (pid, read end of the pipe) until the child is collected
        self._result: tuple[T] | None = None
        self._then_result: tuple[U] | None = None

    @classmethod
    def done(cls, work: Callable[[], T], then: Callable[[T], U] | None = None) -> Pending[T, U]:
        """Do the work (and what follows) now, in this process; raise its error."""
        pending = cls(work, then)
        pending.result()
        if then is not None:
            pending.then_result()
        return pending

    @property
    def in_background(self) -> bool:
        """Tell whether a child process is doing the work (until it is collected)."""
        return self._child is not None

    @property
    def has_result(self) -> bool:
        """Tell whether the work's result was received (or computed) already."""
        return self._result is not None

    def result(self) -> T:
        """Return the work's result, waiting for the child; raise the work's error."""
        if self._result is None:
            self._result = self._receive() or (self._work(),)
            if self._then is None and self._child is not None:
                self._finish()
        return self._result[0]

    def then_result(self) -> U:
        """Return what `then` made of the result, waiting for the child; raise its error."""
        assert self._then is not None, "start() was given no `then`"
        result = self.result()
        if self._then_result is None:
            self._then_result = self._receive() or (self._then(result),)
        if self._child is not None:
            self._finish()
        return self._then_result[0]

    def _receive(self) -> tuple[Any] | None:
        """Return the child's next result, or None (the child collected) when it failed in any way."""
        if self._child is None:
            return None
        fd = self._child[1]
        try:
            data = _read_message(fd)
        except BaseException:
            self.close()  # interrupted (Ctrl-C) while waiting: leave no child behind, then go on
            raise
        if data is None:  # the child ended before sending it: it failed
            self.close()
            return None
        try:
            return (pickle.loads(data),)  # noqa: S301 - our own child's bytes, through a pipe
        except Exception:  # whatever went wrong, the work is done here instead
            self.close()
            return None

    def _finish(self) -> None:
        """Collect a child that has sent everything."""
        assert self._child is not None
        pid, fd = self._child
        self._child = None
        os.close(fd)
        _wait(pid)

    def close(self) -> None:
        """Stop and collect a child whose results are no longer wanted."""
        if self._child is not None:
            pid, fd = self._child
            self._child = None
            _kill(pid)
            os.close(fd)
            _wait(pid)

    def __enter__(self) -> Pending[T, U]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def start(
    work: Callable[[], T], inputs: Iterable[Path] = (), then: Callable[[T], U] | None = None
) -> Pending[T, U]:
    """Start `work`, then `then(result)`, in a child process when it is worth it; else do both now.

    Done now, their errors are raised here, before the caller goes on.
    """
    if _worth_forking(inputs):
        child = _fork(work, then)
        if child is not None:
            return Pending(work, then, child)
    return Pending.done(work, then)


def _worth_forking(inputs: Iterable[Path]) -> bool:
    """Tell whether to fork: Linux, two usable CPUs, not switched off, and enough input."""
    if sys.platform != "linux" or os.environ.get("DCONN_PARALLEL", "").strip().lower() in _OFF:
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


def _fork(work: Callable[[], T], then: Callable[[T], object] | None) -> tuple[int, int] | None:
    """Fork a child that sends each result, pickled, through a pipe; None if fork fails."""
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
            with os.fdopen(write_end, "wb") as pipe:
                result = work()
                _write_message(pipe, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
                if then is not None:
                    _write_message(pipe, pickle.dumps(then(result), protocol=pickle.HIGHEST_PROTOCOL))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def _write_message(pipe: Any, data: bytes) -> None:
    """Write one message: its length in 8 bytes, then the bytes."""
    pipe.write(len(data).to_bytes(8, "big"))
    pipe.write(data)
    pipe.flush()


def _read_message(fd: int) -> bytes | None:
    """Read one message from the pipe; None when the child closed it before a whole one."""
    header = _read_exactly(fd, 8)
    if header is None:
        return None
    return _read_exactly(fd, int.from_bytes(header, "big"))


def _read_exactly(fd: int, size: int) -> bytes | None:
    """Read `size` bytes; None at the end of the pipe before that."""
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


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
