"""The core stays pure: no database, CLI, HTTP, TOML or file-system code is reachable from declarative_conns.core.

Two guards. Dynamically, every module of the package is imported in a fresh interpreter and the
modules that loaded are checked. Statically, each module's source is read with `ast`: no import
of the standard library's I/O modules and no call of `open(`, even inside a function (where a
lazy import would hide it from the dynamic check).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import declarative_conns.core as core

#: Libraries the core must never load: adapters' business (database, CLI, HTTP, schemas, TOML, network).
FORBIDDEN_MODULES = frozenset(
    {
        "sqlalchemy",
        "psycopg",
        "psycopg2",
        "pymysql",
        "MySQLdb",
        "sqlite3",
        "typer",
        "click",
        "rich",
        "httpx",
        "httpcore",
        "requests",
        "urllib3",
        "aiohttp",
        "jsonschema",
        "jsonschema_rs",
        "tomllib",
        "tomli",
        "tomli_w",
        "markdown_it",
        "yaml",
        "socket",
        "ssl",
        "http",
        "asyncio",
    }
)
#: What the core may import, lazily or not, with whatever those libraries load themselves.
ALLOWED_LIBRARIES = ("deepdiff", "cryptography.fernet")
#: Standard-library modules that touch the file system, processes or the network.
FORBIDDEN_IMPORTS = frozenset(
    {"os", "pathlib", "subprocess", "socket", "io", "shutil", "tempfile", "sqlite3"}
)
#: The modules the redesign put in the core; the walk must find at least these.
EXPECTED = {
    "model",
    "kinds",
    "operations",
    "diff",
    "drift",
    "recorded",
    "planner",
    "state",
    "digests",
    "sensitive",
    "crypto",
}

_LOADED = """
import importlib, json, pkgutil, sys
for name in {preload!r}:
    importlib.import_module(name)
if {walk!r}:
    import declarative_conns.core as core
    for info in pkgutil.walk_packages(core.__path__, core.__name__ + "."):
        importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


def core_modules() -> list[str]:
    """Return the name of every module of declarative_conns.core, subpackages included."""
    return [info.name for info in pkgutil.walk_packages(core.__path__, core.__name__ + ".")]


def loaded_modules(preload: tuple[str, ...], walk: bool) -> set[str]:
    """Return the top-level names of the modules a fresh interpreter holds after importing `preload` (and the core)."""
    script = _LOADED.format(preload=list(preload), walk=walk)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return {name.split(".")[0] for name in json.loads(result.stdout)}


def test_the_walk_finds_every_core_module() -> None:
    """pkgutil finds each module of the core, so the guards below check them all."""
    found = {name.rsplit(".", 1)[1] for name in core_modules()}
    assert found >= EXPECTED


def test_importing_the_core_loads_no_adapter_library() -> None:
    """A fresh interpreter importing every core module loads no database, CLI, HTTP, schema, TOML or socket library.

    deepdiff and cryptography are allowed in the core; what they load themselves (deepdiff
    brings asyncio and sockets) does not count against it.
    """
    allowed = loaded_modules(ALLOWED_LIBRARIES, walk=False)
    baseline = loaded_modules((), walk=False)
    with_core = loaded_modules((), walk=True)
    assert "declarative_conns" in with_core
    brought_by_core = with_core - baseline
    assert sorted((brought_by_core - allowed) & FORBIDDEN_MODULES) == []


def source_tree(module: str) -> ast.Module:
    """Return the parsed source of a core module."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    return ast.parse(Path(spec.origin).read_text(encoding="utf-8"), filename=spec.origin)


def imported_names(tree: ast.Module) -> set[str]:
    """Return every absolute module name a source imports, anywhere in it (functions and TYPE_CHECKING too)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def io_imports(tree: ast.Module) -> list[str]:
    """Return the forbidden modules a source imports, anywhere in it."""
    tops = {name.split(".")[0] for name in imported_names(tree)}
    return sorted(tops & (FORBIDDEN_IMPORTS | FORBIDDEN_MODULES))


def open_calls(tree: ast.Module) -> list[int]:
    """Return the lines where a source calls open() (the builtin, or io/os/builtins.open)."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == "open")
            or (
                isinstance(node.func, ast.Attribute)
                and node.func.attr == "open"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("builtins", "io", "os")
            )
        )
    ]


def adapter_imports(tree: ast.Module) -> list[str]:
    """Return the package modules outside the core (and its errors) a source imports."""
    return sorted(
        name
        for name in imported_names(tree)
        if name.split(".")[0] == "declarative_conns"
        and not name.startswith("declarative_conns.core")
        and name != "declarative_conns.errors"
    )


@pytest.mark.parametrize("module", core_modules())
def test_core_module_imports_no_io_module(module: str) -> None:
    """No core module imports os, pathlib, subprocess, socket, io, shutil, tempfile or sqlite3, even lazily."""
    assert io_imports(source_tree(module)) == []


@pytest.mark.parametrize("module", core_modules())
def test_core_module_opens_no_file(module: str) -> None:
    """No core module calls open() (the builtin, or io/os/builtins.open)."""
    assert open_calls(source_tree(module)) == []


@pytest.mark.parametrize("module", core_modules())
def test_core_module_depends_on_no_adapter(module: str) -> None:
    """A core module imports only the core and the error types of the package, never an adapter layer."""
    assert adapter_imports(source_tree(module)) == []


def test_the_guards_catch_what_they_forbid() -> None:
    """Each guard reports a violation planted in a sample: lazy imports, open() calls, adapters, loaded libraries."""
    sample = ast.parse(
        "import os.path\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import sqlalchemy\n"
        "def f():\n"
        "    from pathlib import Path\n"
        "    import declarative_conns.targets.database.rows\n"
        "    from declarative_conns.core.model import Values\n"
        "    return open('x'), io.open('y'), target.open()\n"
    )
    assert io_imports(sample) == ["os", "pathlib", "sqlalchemy"]
    assert open_calls(sample) == [9, 9]
    assert adapter_imports(sample) == ["declarative_conns.targets.database.rows"]
    assert "sqlalchemy" in loaded_modules(("sqlalchemy",), walk=False) & FORBIDDEN_MODULES
