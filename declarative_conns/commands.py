"""Run an outside command, bounded: the one runner for `from_command`, `_CMD` settings and token commands.

No shell, no stdin, at most COMMAND_TIMEOUT_SECONDS of run time and MAX_OUTPUT_BYTES of standard
output (a command that prints forever is stopped, not buffered). When the command fails, the
error carries the last lines of its standard error, which is its own diagnostics; standard
output, which may be the secret it failed to give in full, is never shown.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

#: How long a command may run before it is killed (CONTRACT §13).
COMMAND_TIMEOUT_SECONDS = 60.0
#: The most dconn takes from a command's standard output.
MAX_OUTPUT_BYTES = 1024 * 1024
OUTPUT_LIMIT_TEXT = "1 MiB"
_STDERR_TAIL_BYTES = 4096


class CommandFailed(Exception):
    """A command could not run, failed, ran too long or printed too much.

    The message completes a sentence about the command ("exited with code 3: vault sealed"),
    so each caller names the command its own way.
    """


class CommandNotFound(CommandFailed):
    """The program does not exist."""


def run_command(argv: Sequence[str], *, cwd: Path | None = None) -> bytes:
    """Run argv without a shell and return its standard output; raise CommandFailed otherwise."""
    try:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError:
        raise CommandNotFound("was not found") from None
    except (OSError, ValueError) as exc:
        raise CommandFailed(
            f"could not run: {getattr(exc, 'strerror', None) or type(exc).__name__}"
        ) from None
    assert process.stdout is not None and process.stderr is not None
    wake = threading.Event()
    out = _Drain(process.stdout, MAX_OUTPUT_BYTES, wake)
    err = _Drain(process.stderr, _STDERR_TAIL_BYTES, wake, tail=True)
    try:
        code = _wait(process, out, err, wake)
    finally:
        _stop(process, out, err)
    if code != 0:
        lines = bytes(err.data).decode("utf-8", errors="replace").strip().splitlines()
        tail = " ".join(lines[-3:])[:300]
        raise CommandFailed(f"exited with code {code}" + (f": {tail}" if tail else ""))
    return bytes(out.data)


def _wait(process: subprocess.Popen[bytes], out: _Drain, err: _Drain, wake: threading.Event) -> int:
    """Wait until the command ends; raise CommandFailed at the output limit or the timeout."""
    timeout = COMMAND_TIMEOUT_SECONDS
    deadline = time.monotonic() + timeout
    out.start()
    err.start()
    while True:
        if out.overflowed:
            raise CommandFailed(
                f"printed more than {OUTPUT_LIMIT_TEXT}, the most dconn takes; it was stopped"
            )
        if out.finished and err.finished:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timed_out(timeout)
        wake.wait(remaining)
        wake.clear()  # the flags are set before the event, and read again after this
    try:
        return process.wait(max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        raise _timed_out(timeout) from None


def _timed_out(timeout: float) -> CommandFailed:
    """Return the error of a command that ran too long."""
    return CommandFailed(f"did not finish within {timeout:g} s")


def _stop(process: subprocess.Popen[bytes], *drains: _Drain) -> None:
    """Kill the command if it still runs, reap it, and close the pipes whose reading ended."""
    if process.poll() is None:
        process.kill()
        process.wait()
    for drain in drains:
        # A process the command started may hold the pipe open: its reader is left to the exit.
        drain.join(timeout=1.0)
        if not drain.is_alive():
            drain.pipe.close()


class _Drain(threading.Thread):
    """Read a pipe in the background: its first `keep` bytes, or with `tail` its last ones.

    A thread per pipe, rather than select(), works on every platform; reading stdout stops
    as soon as it passes `keep`, so a command that never stops printing costs no memory.
    """

    def __init__(self, pipe: IO[bytes], keep: int, wake: threading.Event, *, tail: bool = False) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.keep = keep
        self.tail = tail
        self.wake = wake
        self.data = bytearray()
        self.overflowed = False
        self.finished = False

    def run(self) -> None:
        """Read until the end of the pipe, or until the head is full."""
        try:
            while chunk := self.pipe.read1(65536):  # type: ignore[attr-defined]
                self.data += chunk
                if self.tail:
                    del self.data[: -self.keep]
                elif len(self.data) > self.keep:
                    self.overflowed = True
                    return
        except (OSError, ValueError):
            pass  # the pipe was closed under the reader: the command was stopped
        finally:
            self.finished = True
            self.wake.set()
