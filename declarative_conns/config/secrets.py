"""Resolve secret references: environment variables, files, and commands of secret managers.

Every source is bounded (CONTRACT §13): `from_file` reads regular files only, at most 1 MiB,
and never waits on a FIFO or a device; `from_command` may print at most 1 MiB and run at most
COMMAND_TIMEOUT_SECONDS (declarative_conns.commands). `--no-commands` (or DCONN_NO_COMMANDS) refuses every `from_command`
before any runs, so a pull request cannot run commands in a job that holds the credentials.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from declarative_conns.commands import (
    MAX_OUTPUT_BYTES,
    OUTPUT_LIMIT_TEXT,
    CommandFailed,
    CommandNotFound,
    run_command,
)
from declarative_conns.config.findings import dotted_path
from declarative_conns.core.kinds import BY_NAME
from declarative_conns.core.model import JSON_SCALARS, Address, SecretRef, Values, by_address, frozen_paths
from declarative_conns.core.sensitive import MaskedFields
from declarative_conns.errors import SecretError

if TYPE_CHECKING:
    from declarative_conns.config.loader import DesiredState

#: The most dconn reads from a `from_file` (a `from_command`'s output has the same bound).
MAX_SECRET_BYTES = MAX_OUTPUT_BYTES
_LIMIT_TEXT = OUTPUT_LIMIT_TEXT
#: The environment variable that refuses every `from_command`, like `--no-commands`.
NO_COMMANDS_VARIABLE = "DCONN_NO_COMMANDS"
_TRUE = frozenset({"1", "true", "yes", "on"})
_REFUSE_COMMANDS: ContextVar[bool] = ContextVar("dconn_refuse_commands", default=False)


def resolve_secret(ref: SecretRef) -> str:
    """Return the value a reference points at; raise SecretError naming the reference."""
    if ref.kind == "env":
        return _from_env(str(ref.target))
    if ref.kind == "file":
        return _from_file(Path(ref.base_dir) / str(ref.target))
    assert isinstance(ref.target, tuple)
    if commands_refused():
        raise SecretError(f"{ref.describe()} is refused: {_REFUSAL_REASON}")
    return _from_command(ref.target, Path(ref.base_dir))


# -- refusing commands ------------------------------------------------------------------------

_REFUSAL_REASON = f"--no-commands (or {NO_COMMANDS_VARIABLE}) refuses every from_command"


def commands_refused(environ: Mapping[str, str] | None = None) -> bool:
    """Tell whether `from_command` references are refused: by `refusing_commands` or the variable."""
    env = os.environ if environ is None else environ
    return _REFUSE_COMMANDS.get() or env.get(NO_COMMANDS_VARIABLE, "").strip().lower() in _TRUE


@contextmanager
def refusing_commands(refuse: bool = True) -> Iterator[None]:
    """Refuse every `from_command` inside the block when `refuse` is true (`--no-commands`)."""
    token = _REFUSE_COMMANDS.set(refuse or _REFUSE_COMMANDS.get())
    try:
        yield
    finally:
        _REFUSE_COMMANDS.reset(token)


def refuse_commands(desired: DesiredState) -> None:
    """Raise one SecretError naming every `from_command` reference (file, path, argv[0]), if any."""
    found = [
        f"{desired.objects[address].source}: {dotted_path([BY_NAME[address.kind].plural, address.key, *path])} "
        f"runs {ref.target[0]!r}"
        for address, path, ref in references(desired)
        if ref.kind == "command" and ref.target
    ]
    if found:
        raise SecretError(f"{_REFUSAL_REASON}, and no command was run: " + "; ".join(found))


# -- the sources --------------------------------------------------------------------------------


def _from_env(name: str) -> str:
    """Read an environment variable."""
    value = os.environ.get(name)
    if value is None:
        raise SecretError(f"environment variable {name} is not set")
    return value


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _from_file(path: Path) -> str:
    """Read a regular file of at most MAX_SECRET_BYTES, dropping one trailing newline.

    The file is checked before it is opened, opened without blocking (opening a FIFO for
    reading waits for a writer), and checked again once open (it may have been swapped).
    """
    try:
        _require_regular(path, os.stat(path).st_mode)
        descriptor = os.open(path, _OPEN_FLAGS)
        with open(descriptor, "rb") as handle:
            _require_regular(path, os.fstat(handle.fileno()).st_mode)
            data = handle.read(MAX_SECRET_BYTES + 1)
    except FileNotFoundError:
        raise SecretError(f"secret file {path} does not exist") from None
    except OSError as exc:
        raise SecretError(f"secret file {path} cannot be read: {exc.strerror}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise SecretError(f"secret file {path} is larger than {_LIMIT_TEXT}, the most from_file reads")
    return _strip_newline(_text(data, f"secret file {path}"))


def _require_regular(path: Path, mode: int) -> None:
    """Raise SecretError unless a file mode is a regular file's."""
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise SecretError(f"secret file {path} is {kind}: from_file reads regular files only")


def _from_command(argv: tuple[str, ...], cwd: Path) -> str:
    """Run a command without a shell and return its stdout (bounded in time and size)."""
    shown = " ".join(argv)
    try:
        output = run_command(argv, cwd=cwd)
    except CommandNotFound:
        raise SecretError(f"command {argv[0]!r} not found (from_command {shown})") from None
    except CommandFailed as exc:
        raise SecretError(f"command `{shown}` {exc}") from None
    return _strip_newline(_text(output, f"the output of command `{shown}`"))


def _text(data: bytes, what: str) -> str:
    """Decode UTF-8, newlines translated as Python's text mode does (as dconn always read them)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"{what} is not UTF-8 text") from None
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _strip_newline(text: str) -> str:
    """Drop one trailing newline (\\n or \\r\\n)."""
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


# -- resolving a desired state ------------------------------------------------------------------

Resolver = Callable[[SecretRef], str]


def references(desired: DesiredState) -> Iterable[tuple[Address, tuple[str | int, ...], SecretRef]]:
    """Yield (address, field path, reference) for every secret reference declared."""
    for address, obj in sorted(desired.objects.items(), key=by_address):
        yield from ((address, path, ref) for path, ref in _walk_refs(obj.fields, ()))


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


def resolve_desired(desired: DesiredState, resolver: Resolver) -> dict[Address, Values]:
    """Resolve every reference (once each) and normalize; report every failing reference.

    Under `--no-commands` every `from_command` is refused first, all named, before any runs.
    """
    if commands_refused():
        refuse_commands(desired)
    cache: dict[SecretRef, str] = {}
    problems: list[str] = []
    resolved: dict[Address, Values] = {}
    for address, obj in sorted(desired.objects.items()):
        kind = BY_NAME[address.kind]
        key_paths = kind.key_secret_paths(address.key)
        secret_paths: set[tuple[str | int, ...]] = set(key_paths)
        fields = {
            # Most fields are plain strings and numbers: no call for those (this runs per field).
            name: value
            if value.__class__ in JSON_SCALARS
            else _resolve_value(value, (name,), address, resolver, cache, secret_paths, problems)
            for name, value in obj.fields.items()
        }
        paths = key_paths if len(secret_paths) == len(key_paths) else frozen_paths(secret_paths)
        normalized = kind.normalize(fields)
        if paths or kind.names_secrets:
            # The fields hold secrets: a MaskedFields, so printing them shows none.
            resolved[address] = Values(MaskedFields(normalized, (), paths, kind.name), paths)
        else:
            resolved[address] = Values(normalized, paths)  # nothing secret to hide (a pool, a plain variable)
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
    address: Address,
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
                problems.append(f"{address} field {where}: {exc}")
                return None
        return cache[value]
    if isinstance(value, dict):
        resolved = {
            k: _resolve_value(v, (*path, k), address, resolver, cache, secret_paths, problems)
            for k, v in value.items()
        }
        # A plain table with no reference inside is kept as it is: one copy fewer to hold.
        unchanged = type(value) is dict and all(resolved[k] is v for k, v in value.items())
        return value if unchanged else resolved
    if isinstance(value, list):
        items = [
            _resolve_value(v, (*path, i), address, resolver, cache, secret_paths, problems)
            for i, v in enumerate(value)
        ]
        return (
            value if type(value) is list and all(a is b for a, b in zip(items, value, strict=True)) else items
        )
    return value
