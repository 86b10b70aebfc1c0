"""Resolve secret references: environment variables, files, and commands of secret managers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from declarative_conns.core.model import SecretRef
from declarative_conns.errors import SecretError

#: How long a `from_command` may run before it is killed.
COMMAND_TIMEOUT_SECONDS = 60.0


def resolve_secret(ref: SecretRef) -> str:
    """Return the value a reference points at; raise SecretError naming the reference."""
    if ref.kind == "env":
        return _from_env(str(ref.target))
    if ref.kind == "file":
        return _from_file(Path(ref.base_dir) / str(ref.target))
    assert isinstance(ref.target, tuple)
    return _from_command(ref.target, Path(ref.base_dir))


def _from_env(name: str) -> str:
    """Read an environment variable."""
    value = os.environ.get(name)
    if value is None:
        raise SecretError(f"environment variable {name} is not set")
    return value


def _from_file(path: Path) -> str:
    """Read a file, dropping one trailing newline as editors add it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretError(f"secret file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SecretError(f"secret file {path} cannot be read: {reason}") from None
    return _strip_newline(text)


def _from_command(argv: tuple[str, ...], cwd: Path) -> str:
    """Run a command without a shell and return its stdout."""
    shown = " ".join(argv)
    try:
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        raise SecretError(f"command {argv[0]!r} not found (from_command {shown})") from None
    except subprocess.TimeoutExpired:
        raise SecretError(
            f"command `{shown}` did not finish within {COMMAND_TIMEOUT_SECONDS:.0f} s"
        ) from None
    except OSError as exc:
        raise SecretError(f"command `{shown}` could not run: {exc.strerror}") from None
    if done.returncode != 0:
        # stderr, unlike stdout, is the command's own diagnostics, never the secret it failed to give.
        tail = " ".join(done.stderr.strip().splitlines()[-3:])[:300]
        detail = f": {tail}" if tail else ""
        raise SecretError(f"command `{shown}` exited with code {done.returncode}{detail}")
    return _strip_newline(done.stdout)


def _strip_newline(text: str) -> str:
    """Drop one trailing newline (\\n or \\r\\n)."""
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text
