"""Resolve secret references: environment variables, files, and commands of secret managers."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from declarative_conns.core.model import JSON_SCALARS, SecretRef, Values, normalize_fields
from declarative_conns.errors import SecretError

if TYPE_CHECKING:
    from declarative_conns.config.loader import DesiredState

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


# -- resolving a desired state ------------------------------------------------------------------

Resolver = Callable[[SecretRef], str]


def references(desired: DesiredState) -> Iterable[tuple[str, tuple[str | int, ...], SecretRef]]:
    """Yield (conn_id, field path, reference) for every secret reference declared."""
    for conn_id, conn in sorted(desired.connections.items()):
        yield from ((conn_id, path, ref) for path, ref in _walk_refs(conn.fields, ()))


def _walk_refs(value: Any, path: tuple[str | int, ...]) -> Iterable[tuple[tuple[str | int, ...], SecretRef]]:
    """Yield (path, ref) pairs inside a value."""
    if isinstance(value, SecretRef):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk_refs(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk_refs(v, (*path, i))


def resolve_desired(desired: DesiredState, resolver: Resolver) -> dict[str, Values]:
    """Resolve every reference (once each) and normalize; report every failing reference."""
    cache: dict[SecretRef, str] = {}
    problems: list[str] = []
    resolved: dict[str, Values] = {}
    for conn_id, conn in sorted(desired.connections.items()):
        secret_paths: set[tuple[str | int, ...]] = set()
        fields = {
            # Most fields are plain strings and numbers: no call for those (this runs per field).
            name: value
            if value.__class__ in JSON_SCALARS
            else _resolve_value(value, (name,), conn_id, resolver, cache, secret_paths, problems)
            for name, value in conn.fields.items()
        }
        resolved[conn_id] = Values(normalize_fields(fields), frozenset(secret_paths))
    if problems:
        raise SecretError(
            "could not resolve "
            + (
                "; ".join(problems)
                if len(problems) < 4
                else "; ".join(problems[:3]) + f"; and {len(problems) - 3} more"
            )
        )
    return resolved


def _resolve_value(
    value: Any,
    path: tuple[str | int, ...],
    conn_id: str,
    resolver: Resolver,
    cache: dict[SecretRef, str],
    secret_paths: set[tuple[str | int, ...]],
    problems: list[str],
) -> Any:
    """Return a value with its references replaced by what they point at."""
    if isinstance(value, SecretRef):
        secret_paths.add(path)
        if value not in cache:
            try:
                cache[value] = resolver(value)
            except SecretError as exc:
                where = ".".join(map(str, path))
                problems.append(f'connection "{conn_id}" field {where}: {exc}')
                return None
        return cache[value]
    if isinstance(value, dict):
        return {
            k: _resolve_value(v, (*path, k), conn_id, resolver, cache, secret_paths, problems)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _resolve_value(v, (*path, i), conn_id, resolver, cache, secret_paths, problems)
            for i, v in enumerate(value)
        ]
    return value
