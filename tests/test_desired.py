"""Loading the desired state: TOML syntax, the JSON Schema, merging files, secret references."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from declarative_conns.config.loader import desired_from_dicts, load_desired
from declarative_conns.config.secrets import resolve_desired, resolve_secret
from declarative_conns.core.model import Address, SecretRef
from declarative_conns.errors import InputError, SecretError, ValidationFailed

CANARY = "canary-hunter2"
CONN_ID_RULE = "invalid conn_id: use 1 to 250 letters, digits and _ # ! ( ) - . : / \\ (Airflow's rule)"


def write(folder: Path, name: str, text: str) -> Path:
    """Write a TOML file and return its path."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    """Return the validation problems of a file (asserting it is invalid)."""
    with pytest.raises(ValidationFailed) as info:
        load_desired(path)
    return info.value.problems


def test_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    """A TOML syntax error reports the file, line and column."""
    path = write(tmp_path, "c.toml", 'version = 1\n[connections.a]\nconn_type = "x\n')
    with pytest.raises(InputError, match=r"c\.toml: invalid TOML: .*line 3, column 15"):
        load_desired(path)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('port = "abc"', "connections.a.port: 'abc' is not of type 'integer'"),
        ("port = 70000", "connections.a.port: 70000 is above the maximum 65535"),
        ("bogus = 1", "connections.a: unknown field 'bogus'"),
        ("host = 1", "connections.a.host: 1: expected a string or a secret reference"),
        ('extra = { x = { from_env = "1BAD" } }', "connections.a.extra.x.from_env: '1BAD' does not match"),
    ],
)
def test_schema_errors_name_the_path(tmp_path: Path, body: str, expected: str) -> None:
    """Each schema error is reported with the file and the dotted path."""
    path = write(tmp_path, "c.toml", f'[connections.a]\nconn_type = "http"\n{body}\n')
    found = problems(path)
    assert any(p.startswith(f"{path}: {expected}") for p in found), found


def test_every_error_is_reported(tmp_path: Path) -> None:
    """All problems of all files are reported together, not only the first."""
    write(tmp_path, "a.toml", '[connections.a]\nport = "x"\n')
    write(tmp_path, "b.toml", '[connections.b]\nconn_type = "x"\nwhat = 1\n')
    found = problems(tmp_path)
    assert len(found) == 3, found
    assert any("a.toml: connections.a: 'conn_type' is a required property" in p for p in found)
    assert any("b.toml: connections.b: unknown field 'what'" in p for p in found)


def test_invalid_conn_id(tmp_path: Path) -> None:
    """A conn_id outside Airflow's character rule is refused."""
    path = write(tmp_path, "c.toml", '[connections."bad id"]\nconn_type = "x"\n')
    assert problems(path) == [
        f'{path}: connections."bad id": invalid conn_id: use 1 to 250 letters, digits and _ # ! ( ) - . : / \\ (Airflow\'s rule)'
    ]


def test_conn_id_in_two_files_names_both(tmp_path: Path) -> None:
    """A conn_id declared in two files is an error naming both files."""
    first = write(tmp_path, "1.toml", '[connections.a]\nconn_type = "x"\n')
    second = write(tmp_path, "2.toml", '[connections.a]\nconn_type = "y"\n')
    found = problems(tmp_path)
    assert found == [f'{second}: connections.a: conn_id "a" is also declared in {first}']


def test_folder_reads_sorted_toml_files_only(tmp_path: Path) -> None:
    """A folder means its *.toml files, sorted; other files and subfolders are ignored."""
    write(tmp_path, "b.toml", '[connections.b]\nconn_type = "x"\n')
    write(tmp_path, "a.toml", '[connections.a]\nconn_type = "x"\n')
    write(tmp_path, "notes.txt", "not toml")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "c.toml", '[connections.c]\nconn_type = "x"\n')
    desired = load_desired(tmp_path)
    assert [p.name for p in desired.files] == ["a.toml", "b.toml"]
    assert sorted(desired.connections) == ["a", "b"]


def test_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    """A missing file or an empty folder says what to pass."""
    with pytest.raises(InputError, match="no such file"):
        load_desired(tmp_path / "nope.toml")
    with pytest.raises(InputError, match=r"holds no \*\.toml files"):
        load_desired(tmp_path)


def test_extra_json_allows_null_and_excludes_extra(tmp_path: Path) -> None:
    """extra_json carries nulls; declaring it beside extra is an error."""
    path = write(
        tmp_path, "c.toml", '[connections.a]\nconn_type = "x"\nextra_json = \'{"a": null, "b": [1, 2]}\'\n'
    )
    assert load_desired(path).connections["a"].fields["extra"] == {"a": None, "b": [1, 2]}
    both = write(
        tmp_path, "d.toml", "[connections.a]\nconn_type = \"x\"\nextra = { a = 1 }\nextra_json = '{}'\n"
    )
    assert any("extra_json" in p for p in problems(both))


@pytest.mark.parametrize(("text", "message"), [("{nope", "not valid JSON"), ("[1]", "must be a JSON object")])
def test_bad_extra_json(tmp_path: Path, text: str, message: str) -> None:
    """extra_json must be a JSON object; the error never echoes its text."""
    path = write(tmp_path, "c.toml", f"[connections.a]\nconn_type = \"x\"\nextra_json = '{text}'\n")
    found = problems(path)
    assert any(message in p for p in found) and not any(text in p for p in found)


def test_secret_values_never_echoed_in_errors(tmp_path: Path) -> None:
    """A wrongly typed password or secret extra is reported without its value."""
    path = write(
        tmp_path,
        "c.toml",
        f'[connections.a]\nconn_type = "x"\npassword = {{ value = "{CANARY}" }}\n'
        f'extra = {{ api_token = {{ nope = "{CANARY}" }} }}\nextra_json_typo = "{CANARY}"\n',
    )
    found = problems(path)
    assert len(found) >= 2
    assert not any(CANARY in p for p in found), found


def test_references_parsed_anywhere(tmp_path: Path) -> None:
    """from_env/from_file/from_command stand for strings at top level and deep inside extra."""
    path = write(
        tmp_path,
        "c.toml",
        '[connections.a]\nconn_type = "x"\npassword = { from_env = "PW" }\n'
        'extra = { deep = { list = [{ from_file = "k.txt" }] }, cmd = { from_command = ["echo", "hi"] } }\n',
    )
    fields = load_desired(path).connections["a"].fields
    assert fields["password"] == SecretRef("env", "PW", str(tmp_path))
    assert fields["extra"]["deep"]["list"][0] == SecretRef("file", "k.txt", str(tmp_path))
    assert fields["extra"]["cmd"] == SecretRef("command", ("echo", "hi"), str(tmp_path))


def test_resolution_reads_every_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolved values come from the variable, the file (newline stripped, relative to the TOML) and the command."""
    monkeypatch.setenv("PW", CANARY)
    (tmp_path / "k.txt").write_text("from-file\n", encoding="utf-8")
    path = write(
        tmp_path,
        "c.toml",
        '[connections.a]\nconn_type = "x"\npassword = { from_env = "PW" }\n'
        'extra = { f = { from_file = "k.txt" }, c = { from_command = ["echo", "from-cmd"] } }\n',
    )
    values = resolve_desired(load_desired(path), resolve_secret)[Address("connection", "a")]
    assert values.get("password") == CANARY
    assert values.get("extra") == {"f": "from-file", "c": "from-cmd"}
    assert values.secret_paths == frozenset({("password",), ("extra", "f"), ("extra", "c")})


def test_missing_variable_names_variable_and_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset variable is an error naming it and the connection and field."""
    monkeypatch.delenv("DCONN_TEST_UNSET", raising=False)
    path = write(
        tmp_path, "c.toml", '[connections.a]\nconn_type = "x"\npassword = { from_env = "DCONN_TEST_UNSET" }\n'
    )
    with pytest.raises(
        SecretError, match='connection "a" field password: environment variable DCONN_TEST_UNSET is not set'
    ):
        resolve_desired(load_desired(path), resolve_secret)


def test_failing_command_shows_stderr_not_stdout(tmp_path: Path) -> None:
    """A failing from_command reports its exit code and stderr, never its stdout."""
    path = write(
        tmp_path,
        "c.toml",
        '[connections.a]\nconn_type = "x"\n'
        f'password = {{ from_command = ["sh", "-c", "echo {CANARY}; echo vault sealed >&2; exit 3"] }}\n',
    )
    with pytest.raises(SecretError) as info:
        resolve_desired(load_desired(path), resolve_secret)
    assert "exited with code 3: vault sealed" in str(info.value)
    assert CANARY not in str(info.value).replace(f"echo {CANARY}", "")


def test_settings_merge_across_files(tmp_path: Path) -> None:
    """ignore lists add up across files; a conflicting prune is an error."""
    write(tmp_path, "a.toml", '[settings]\nignore = ["x*"]\nprune = true\n')
    write(tmp_path, "b.toml", '[settings]\nignore = ["y*"]\nprune = true\n')
    settings = load_desired(tmp_path).settings
    assert settings.ignore == ("x*", "y*") and settings.prune is True
    write(tmp_path, "c.toml", "[settings]\nprune = false\n")
    assert any("settings.prune: conflicts" in p for p in problems(tmp_path))


def test_declared_ignored_connection_warns(tmp_path: Path) -> None:
    """A declared conn_id matching an ignore pattern is managed, with a warning."""
    path = write(
        tmp_path,
        "c.toml",
        '[settings]\nignore = ["*_default"]\n[connections.aws_default]\nconn_type = "aws"\n',
    )
    desired = load_desired(path)
    assert desired.warnings == (
        'connection "aws_default" matches an ignore pattern but is declared, so dconn manages it',
    )


@pytest.mark.parametrize("conn_id", ["abc\n", "abc\r", "a\tb", "\n", "abc\u2028"])
def test_conn_id_with_a_control_character_is_refused(tmp_path: Path, conn_id: str) -> None:
    """A conn_id with a control character (a trailing newline too) breaks the conn_id rule, on one line."""
    path = write(tmp_path, "c.toml", f'[connections.{json.dumps(conn_id)}]\nconn_type = "http"\n')
    assert problems(path) == [f"{path}: connections.{json.dumps(conn_id)}: {CONN_ID_RULE}"]


def test_variable_name_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    """from_env = "NAME\\n" is not a variable name; the message shows the rule, not the regex idiom."""
    path = write(
        tmp_path, "c.toml", '[connections.a]\nconn_type = "http"\nlogin = { from_env = "NAME\\n" }\n'
    )
    assert problems(path) == [
        f"{path}: connections.a.login.from_env: 'NAME\\n' does not match '^[A-Za-z_][A-Za-z0-9_]*$'"
    ]


def test_an_empty_conn_id_is_reported_once(tmp_path: Path) -> None:
    """[connections.""] breaks the rule once, not once per schema keyword it fails."""
    path = write(tmp_path, "c.toml", '[connections.""]\nconn_type = "http"\n')
    assert problems(path) == [f'{path}: connections."": {CONN_ID_RULE}']


def deep(levels: int) -> str:
    """Return JSON text of an object nested `levels` levels deep."""
    return '{"a": ' * levels + "1" + "}" * levels


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ("[connections.x.extra" + ".a" * 500 + "]\nb = 1\n", "connections.x.extra"),
        ("[connections.x]\nextra_json = '" + deep(500) + "'\n", "connections.x.extra_json"),
        ("[connections.x]\nextra_json = '" + "[" * 5000 + "]" * 5000 + "'\n", "connections.x.extra_json"),
        ("[connections.x]\nextra_json = '" + deep(101) + "'\n", "connections.x.extra_json"),
        ("[connections.x.extra" + ".a" * 100 + "]\nb = 1\n", "connections.x.extra"),
    ],
    ids=["extra-500", "extra_json-500", "extra_json-5000-arrays", "extra_json-101", "extra-101"],
)
def test_nesting_beyond_the_limit_is_a_validation_error(tmp_path: Path, body: str, path: str) -> None:
    """extra or extra_json deeper than 100 levels: an error naming file and path, not a RecursionError."""
    file = write(
        tmp_path, "c.toml", '[connections.x]\nconn_type = "http"\n' + body.replace("[connections.x]\n", "")
    )
    other = '\n[connections.y]\nconn_type = "http"\nport = "abc"\n'
    file.write_text(file.read_text() + other)
    assert problems(file) == [
        f"{file}: {path}: nests deeper than 100 levels, dconn's limit",
        f"{file}: connections.y.port: 'abc' is not of type 'integer'",
    ]


def test_nesting_at_the_limit_is_accepted(tmp_path: Path) -> None:
    """extra and extra_json nested exactly 100 levels load."""
    file = write(
        tmp_path,
        "c.toml",
        '[connections.x]\nconn_type = "http"\n'
        f"extra_json = '{deep(100)}'\n"
        '[connections.y]\nconn_type = "http"\n[connections.y.extra' + ".a" * 99 + "]\nb = 1\n",
    )
    assert sorted(load_desired(file).connections) == ["x", "y"]


def test_a_toml_too_deep_to_parse_is_one_problem(tmp_path: Path) -> None:
    """An inline value nested deeper than the TOML parser goes: the file's one problem, no traceback."""
    file = write(
        tmp_path,
        "c.toml",
        '[connections.x]\nconn_type = "http"\nextra = { a = ' + "[" * 2000 + "]" * 2000 + " }\n",
    )
    with pytest.raises(ValidationFailed) as info:
        load_desired(file)
    assert str(info.value) == f"{file}: invalid TOML: a value nests deeper than 100 levels, dconn's limit"


def test_python_values_nested_too_deep_are_refused(tmp_path: Path) -> None:
    """desired_from_dicts with an extra nested 5,000 levels: ValidationFailed naming the path."""
    extra: dict[str, object] = {}
    for _ in range(5000):
        extra = {"a": extra}
    with pytest.raises(ValidationFailed) as info:
        desired_from_dicts({"x": {"conn_type": "http", "extra": extra}})
    assert info.value.problems == [
        "<python>: connections.x.extra: nests deeper than 100 levels, dconn's limit"
    ]
