"""Secret sources are bounded: regular files only, 1 MiB of file or command output, a timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from declarative_conns import commands
from declarative_conns.config import secrets
from declarative_conns.config.secrets import MAX_SECRET_BYTES, resolve_secret
from declarative_conns.core.model import SecretRef
from declarative_conns.errors import SecretError
from tests.helpers import run_dconn

CANARY = "canary-source-61d0"

# Resolves one reference in a child process held to 1 GiB of memory: a source that is not
# bounded fails there (MemoryError, or the test's timeout) instead of exhausting the machine.
_CHILD = textwrap.dedent(
    """
    import json, os, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    from declarative_conns.config.secrets import resolve_secret
    from declarative_conns.core.model import SecretRef
    from declarative_conns.errors import SecretError
    kind, target, base = json.loads(sys.argv[1])
    try:
        value = resolve_secret(SecretRef(kind, tuple(target) if kind == "command" else target, base))
    except SecretError as exc:
        print("error:", exc)
    else:
        print("ok:", len(value))
    pid_file = os.path.join(base, "pid")
    if os.path.exists(pid_file):
        try:
            os.kill(int(open(pid_file).read()), 0)
            print("the command still runs")
        except ProcessLookupError:
            print("the command was stopped")
    """
)


def resolve_in_child(kind: str, target: Any, base: Path, timeout: float = 30) -> list[str]:
    """Resolve a reference in a memory-limited child process; return the lines it printed."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps([kind, target, str(base)])],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.stderr == "", done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (os.mkfifo, "a FIFO (named pipe)"),
        (lambda p: p.symlink_to("/dev/zero"), "a character device"),
        (lambda p: p.mkdir(), "a folder"),
    ],
    ids=["fifo", "dev-zero", "folder"],
)
def test_from_file_reads_regular_files_only(tmp_path: Path, make: Any, kind: str) -> None:
    """A FIFO, /dev/zero or a folder is one clear error, at once: no hang, no memory exhausted."""
    make(tmp_path / "secret")
    lines = resolve_in_child("file", "secret", tmp_path, timeout=20)
    assert lines == [
        f"error: secret file {tmp_path / 'secret'} is {kind}: from_file reads regular files only"
    ]


def test_a_file_swapped_for_a_fifo_after_the_check_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The opened file is checked again, and opening never waits: a FIFO swapped in is refused."""
    regular = os.stat(tmp_path)  # what a stat before the swap could have seen: replaced below
    fifo = tmp_path / "secret"
    os.mkfifo(fifo)
    real_stat = os.stat
    monkeypatch.setattr(
        secrets.os, "stat", lambda p, *a, **k: _as_regular(regular) if p == fifo else real_stat(p, *a, **k)
    )
    outcome: list[BaseException] = []
    reader = threading.Thread(
        target=_resolve_into, args=(SecretRef("file", "secret", str(tmp_path)), outcome)
    )
    reader.daemon = True
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "resolving blocked on the FIFO"
    assert [str(e) for e in outcome] == [
        f"secret file {fifo} is a FIFO (named pipe): from_file reads regular files only"
    ]


def _as_regular(result: os.stat_result) -> os.stat_result:
    """Return a stat result that says 'regular file'."""
    import stat

    fields = list(result)
    fields[0] = stat.S_IFREG | 0o600
    return os.stat_result(fields)


def _resolve_into(ref: SecretRef, outcome: list[BaseException]) -> None:
    """Resolve a reference, keeping the SecretError it raises."""
    try:
        resolve_secret(ref)
    except SecretError as exc:
        outcome.append(exc)


def test_from_file_reads_at_most_one_mib(tmp_path: Path) -> None:
    """A file of exactly 1 MiB is read; one byte more is an error naming the file and the limit."""
    (tmp_path / "fits").write_bytes(b"x" * MAX_SECRET_BYTES)
    (tmp_path / "big").write_bytes(CANARY.encode() + b"x" * MAX_SECRET_BYTES)
    assert len(resolve_secret(SecretRef("file", "fits", str(tmp_path)))) == MAX_SECRET_BYTES
    with pytest.raises(SecretError) as info:
        resolve_secret(SecretRef("file", "big", str(tmp_path)))
    assert str(info.value) == f"secret file {tmp_path / 'big'} is larger than 1 MiB, the most from_file reads"


def test_from_command_output_is_at_most_one_mib(tmp_path: Path) -> None:
    """A command printing exactly 1 MiB is read; one byte more is an error, the output never shown."""
    fits = f"import sys; sys.stdout.write('x' * {MAX_SECRET_BYTES})"
    assert len(resolve_secret(SecretRef("command", (sys.executable, "-c", fits), str(tmp_path)))) == (
        MAX_SECRET_BYTES
    )
    big = f"import sys; sys.stdout.write({CANARY!r} + 'x' * {MAX_SECRET_BYTES})"
    with pytest.raises(SecretError) as info:
        resolve_secret(SecretRef("command", (sys.executable, "-c", big), str(tmp_path)))
    assert str(info.value).endswith("printed more than 1 MiB, the most dconn takes; it was stopped")
    assert CANARY not in str(info.value).replace(big, "")


def test_endless_command_is_stopped_at_the_limit(tmp_path: Path) -> None:
    """`yes` (output without end) is stopped at 1 MiB and killed: an error, not a MemoryError."""
    argv = ["sh", "-c", 'echo $$ > pid; exec yes "$0"', CANARY]
    lines = resolve_in_child("command", argv, tmp_path)
    assert lines == [
        f"error: command `{' '.join(argv)}` printed more than 1 MiB, the most dconn takes; it was stopped",
        "the command was stopped",
    ]


def test_command_timeout_still_holds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A command that prints a little and then hangs is stopped at the timeout, with its message."""
    monkeypatch.setattr(commands, "COMMAND_TIMEOUT_SECONDS", 0.5)
    with pytest.raises(
        SecretError, match=r"^command `sh -c echo partial; sleep 30` did not finish within 0.5 s$"
    ):
        resolve_secret(SecretRef("command", ("sh", "-c", "echo partial; sleep 30"), str(tmp_path)))


def test_command_output_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 on stdout are a SecretError naming the command, not a traceback."""
    with pytest.raises(SecretError, match=r"^the output of command `printf \\377` is not UTF-8 text$"):
        resolve_secret(SecretRef("command", ("printf", "\\377"), str(tmp_path)))


def test_values_read_as_before(tmp_path: Path) -> None:
    """Files and outputs keep their text: one trailing newline dropped, CRLF read as LF, as before."""
    (tmp_path / "pem").write_bytes(b"line1\r\nline2\r\n")
    assert resolve_secret(SecretRef("file", "pem", str(tmp_path))) == "line1\nline2"
    command = ("printf", "a\\r\\nb\\n\\n")
    assert resolve_secret(SecretRef("command", command, str(tmp_path))) == "a\nb\n"


def test_limit_hits_are_one_error_line(make_db: Any, tmp_path: Path) -> None:
    """plan with an oversized file and an oversized output: one Error line naming both, exit 1."""
    db = make_db("sqlite", "2.x")
    (tmp_path / "big").write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    printer = f"import sys; sys.stdout.write('{CANARY}' * {MAX_SECRET_BYTES})"
    (tmp_path / "connections.toml").write_text(
        '[connections.a]\nconn_type = "http"\npassword = { from_file = "big" }\n'
        f"login = {{ from_command = [{json.dumps(sys.executable)}, '-c', {json.dumps(printer)}] }}\n"
    )
    result = run_dconn("plan", cwd=tmp_path, env={"DCONN_DB_URL": db.url, "DCONN_FERNET_KEY": db.fernet_key})
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        'Error: could not resolve connection "a" field password: secret file big is larger than 1 MiB, '
        'the most from_file reads; connection "a" field login: command `'
    )
    assert line.endswith("printed more than 1 MiB, the most dconn takes; it was stopped")
    assert CANARY not in line.replace(printer, "")
    assert result.stdout == ""
