"""docs/api.md stays true: its python blocks run, in order, and its signatures match the code.

A block that only declares (`def name(...) -> T: ...`, a class of fields and method stubs) is
a signature: its parameters (names, kinds, defaults), dataclass fields (names, order, defaults),
properties and enum members are compared with the real object. Every other block is an example:
the blocks run one after the other in one namespace, as a reader follows the page, against a
SQLite database shaped as Airflow's.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

import declarative_conns as dc
from declarative_conns.config.secrets import resolve_secret
from declarative_conns.core import model, operations

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
CANARY = "canary-docs-5c2a"

#: Dataclasses the page documents only in part (it says the other attributes are the engine's).
PARTIAL = {"PlannedRun"}


def python_blocks() -> list[tuple[int, str]]:
    """Return (line number, code) of every ```python block of docs/api.md."""
    text = DOC.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 2, m.group(1))
        for m in re.finditer(r"^```python\n(.*?)^```$", text, re.S | re.M)
    ]


def _is_stub_function(node: ast.stmt) -> bool:
    """Tell whether a statement is `def ...: ...` (a docstring or `...` as its only body)."""
    return isinstance(node, ast.FunctionDef) and all(
        isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) for s in node.body
    )


def _is_declaration(node: ast.stmt) -> bool:
    """Tell whether a top-level statement only declares: a stub function or a class of them and fields."""
    if isinstance(node, ast.ClassDef):
        return all(
            isinstance(s, (ast.AnnAssign, ast.Assign))
            or _is_stub_function(s)
            or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
            for s in node.body
        )
    return _is_stub_function(node)


def split_blocks() -> tuple[list[tuple[int, ast.Module]], list[tuple[int, str]]]:
    """Return the signature blocks (parsed) and the example blocks of the page."""
    signatures, examples = [], []
    for line, code in python_blocks():
        tree = ast.parse(code, filename=f"docs/api.md:{line}")
        if all(_is_declaration(node) for node in tree.body):
            signatures.append((line, tree))
        else:
            examples.append((line, code))
    return signatures, examples


# -- the examples --------------------------------------------------------------------------------


def test_the_examples_run_in_order(
    make_db: Any, clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every example block runs as written; together they create, update and delete the documented rows."""
    db = make_db("sqlite", "2.x")
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", db.url)
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", db.fernet_key)
    monkeypatch.setenv("WAREHOUSE_PASSWORD", CANARY)
    monkeypatch.setenv("SLACK_TOKEN", f"{CANARY}-slack")
    _, examples = split_blocks()
    assert len(examples) >= 5
    namespace: dict[str, Any] = {"__name__": "docs_api"}
    for line, code in examples:
        exec(compile(code, f"docs/api.md:{line}", "exec"), namespace)
    out = capsys.readouterr()
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in out.out
    assert "Applied: 2 rows written or deleted." in out.out
    assert 'connection "slack_alerts": delete row 1 (removed)' in out.out
    assert (
        "connection \"warehouse\": Update ['host', 'login', 'password', 'port', 'extra.sslmode']" in out.out
    )
    assert "Applying: Summary(add=0, change=1, destroy=1, duplicates=0)" in out.out
    assert CANARY not in out.out + out.err
    assert [r["conn_id"] for r in db.rows()] == ["warehouse"]


def test_a_workspace_reused_for_a_second_run_writes_its_values(make_db: Any, clean_env: Path) -> None:
    """Planning and applying twice on one Workspace, as the page's examples do, writes the second values."""
    db = make_db("sqlite", "2.x")
    workspace = dc.Workspace.from_url(db.url, db.fernet_key)
    for host in ("wh.internal", "wh2.internal"):
        with dc.plan(
            dc.desired_from_dicts({"warehouse": {"conn_type": "postgres", "host": host}}), workspace
        ) as run:
            assert dc.apply(run) == 1
    assert [(r["conn_id"], r["host"]) for r in db.rows()] == [("warehouse", "wh2.internal")]


# -- the signatures ------------------------------------------------------------------------------


def _real(name: str) -> Any:
    """Return the object a documented name stands for: public, or a type of the plan."""
    for module in (dc, operations, model):
        if name in getattr(module, "__all__", ()) or name in vars(module):
            return getattr(module, name)
    pytest.fail(f"docs/api.md documents {name}, which is neither public nor a type of the plan")


_DEFAULTS = {"Path": Path, "resolve_secret": resolve_secret}


def _value(node: ast.expr) -> Any:
    """Evaluate a documented default (a literal, a Path, the default resolver)."""
    return eval(compile(ast.Expression(node), "docs/api.md", "eval"), dict(_DEFAULTS))


def _same_default(documented: ast.expr | None, real: Any, where: str) -> None:
    """Check one default: none on both sides, or equal values (the same object for a function)."""
    if documented is None:
        assert real is inspect.Parameter.empty, f"{where}: the code has a default, the page none"
        return
    assert real is not inspect.Parameter.empty, f"{where}: the page has a default, the code none"
    value = _value(documented)
    assert value is real if callable(real) else value == real, f"{where}: default {value!r} != {real!r}"


def _documented_parameters(
    stub: ast.FunctionDef,
) -> list[tuple[str, inspect._ParameterKind, ast.expr | None]]:
    """Return a stub's parameters (self and cls left out) with their kinds and default expressions."""
    args = stub.args
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    kind = inspect.Parameter
    params: list[tuple[str, inspect._ParameterKind, ast.expr | None]] = [
        (a.arg, kind.POSITIONAL_ONLY if a in args.posonlyargs else kind.POSITIONAL_OR_KEYWORD, d)
        for a, d in zip(positional, defaults, strict=True)
    ]
    if args.vararg:
        params.append((args.vararg.arg, kind.VAR_POSITIONAL, None))
    params += [(a.arg, kind.KEYWORD_ONLY, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    if args.kwarg:
        params.append((args.kwarg.arg, kind.VAR_KEYWORD, None))
    return [p for p in params if p[0] not in ("self", "cls")]


def _check_function(stub: ast.FunctionDef, real: Any, where: str) -> None:
    """Compare a documented signature with the real one: names, kinds, defaults."""
    real_params = [p for p in inspect.signature(real).parameters.values() if p.name not in ("self", "cls")]
    documented = _documented_parameters(stub)
    assert [(n, k) for n, k, _ in documented] == [(p.name, p.kind) for p in real_params], where
    for (name, _, default), param in zip(documented, real_params, strict=True):
        _same_default(default, param.default, f"{where}({name})")


def _decorators(node: ast.ClassDef | ast.FunctionDef) -> dict[str, dict[str, Any]]:
    """Return each decorator's name and its literal keyword arguments."""
    found = {}
    for d in node.decorator_list:
        call = d if isinstance(d, ast.Call) else None
        name = ast.unparse(call.func if call else d)
        found[name] = {str(k.arg): ast.literal_eval(k.value) for k in call.keywords} if call else {}
    return found


def _check_dataclass(stub: ast.ClassDef, real: Any) -> None:
    """Compare documented fields (names, order, defaults) and dataclass options with the class."""
    options = _decorators(stub)["dataclass"]
    assert dataclasses.is_dataclass(real), f"{stub.name} is not a dataclass"
    params = real.__dataclass_params__  # type: ignore[union-attr]
    for option, default in (("frozen", False), ("order", False), ("repr", True), ("eq", True)):
        assert getattr(params, option) == options.get(option, default), f"{stub.name}: {option}"
    assert ("__slots__" in vars(real)) == options.get("slots", False), f"{stub.name}: slots"
    fields = {f.name: f for f in dataclasses.fields(real)}
    documented = [s for s in stub.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
    names = [s.target.id for s in documented]  # type: ignore[union-attr]
    if stub.name in PARTIAL:
        assert set(names) <= set(fields), f"{stub.name}: {sorted(set(names) - set(fields))} are no fields"
        assert names == [n for n in fields if n in names], f"{stub.name}: fields out of order"
    else:
        assert names == list(fields), f"{stub.name}: the page lists {names}, the class {list(fields)}"
    for node, name in zip(documented, names, strict=True):
        f, where = fields[name], f"{stub.name}.{name}"
        value = node.value
        if isinstance(value, ast.Call) and ast.unparse(value.func) == "field":
            factory = {k.arg: k.value for k in value.keywords}["default_factory"]
            assert f.default_factory is _value(factory), f"{where}: default_factory"
            continue
        assert f.default_factory is dataclasses.MISSING, f"{where}: the code has a default factory"
        real_default = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        _same_default(value, real_default, where)


def _check_class(stub: ast.ClassDef, real: Any) -> None:
    """Compare a documented class: dataclass fields, enum members, properties and methods."""
    assert inspect.isclass(real), f"{stub.name} is not a class"
    if "dataclass" in _decorators(stub):
        _check_dataclass(stub, real)
    if any(ast.unparse(base) == "NamedTuple" for base in stub.bases):
        assert issubclass(real, tuple) and hasattr(real, "_fields"), f"{stub.name} is not a NamedTuple"
        names = [s.target.id for s in stub.body if isinstance(s, ast.AnnAssign)]  # type: ignore[union-attr]
        assert names == list(real._fields), f"{stub.name}: the page lists {names}, the class {real._fields}"
    if issubclass(real, enum.Enum):
        members = {
            s.targets[0].id: ast.literal_eval(s.value)  # type: ignore[attr-defined]
            for s in stub.body
            if isinstance(s, ast.Assign)
        }
        assert members == {m.name: m.value for m in real}, f"{stub.name}: members"
    for node in stub.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        where = f"{stub.name}.{node.name}"
        attribute = inspect.getattr_static(real, node.name, None)
        assert attribute is not None, f"{where} does not exist"
        decorators = _decorators(node)
        if "property" in decorators:
            assert isinstance(attribute, property), f"{where} is not a property"
            continue
        assert isinstance(attribute, classmethod) == ("classmethod" in decorators), f"{where}: classmethod"
        _check_function(node, getattr(real, node.name), where)


def test_the_signatures_match_the_code() -> None:
    """Every documented function, class, field, default, property and enum member is the code's."""
    signatures, _ = split_blocks()
    checked = []
    for line, tree in signatures:
        for node in tree.body:
            assert isinstance(node, (ast.FunctionDef, ast.ClassDef))
            real = _real(node.name)
            if isinstance(node, ast.ClassDef):
                _check_class(node, real)
            else:
                _check_function(node, real, f"docs/api.md:{line}: {node.name}")
            checked.append(node.name)
    for name in ("plan", "apply", "load", "save_plan", "load_plan", "Workspace", "Plan", "FieldChange"):
        assert name in checked


def test_every_public_name_is_documented() -> None:
    """Each name of `declarative_conns.__all__` appears on the page, in backquotes."""
    text = DOC.read_text(encoding="utf-8")
    missing = [name for name in dc.__all__ if not re.search(rf"`[^`\n]*\b{re.escape(name)}\b[^`\n]*`", text)]
    assert not missing, f"docs/api.md does not mention {missing}"
