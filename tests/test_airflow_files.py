"""Tests for reading Airflow's own connection files, URIs and AIRFLOW_CONN_* variables."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from declarative_conns.errors import InputError
from declarative_conns.onboarding.airflow_files import (
    SPEC_FIELDS,
    parse_airflow_file,
    parse_connection_uri,
    parse_env_vars,
)

CANARY = "canary-Pa55w0rd-7f3a"


def spec(conn_id: str = "c", **fields: Any) -> dict[str, Any]:
    """Return a full spec with the given fields, the others None."""
    result: dict[str, Any] = dict.fromkeys(SPEC_FIELDS)
    result.update(conn_id=conn_id, **fields)
    return result


# Cases from Airflow's own tests: airflow-core/tests/unit/models/test_connection.py and
# airflow-core/tests/unit/always/test_connection.py (expected host/schema "" where Airflow has "").
URI_CASES = [
    (
        "type://user:pass@host:100/schema",
        {
            "conn_type": "type",
            "host": "host",
            "login": "user",
            "password": "pass",
            "port": 100,
            "schema": "schema",
        },
    ),
    (
        "type://user:pass@host/schema?param1=val1&param2=val2",
        {
            "conn_type": "type",
            "host": "host",
            "login": "user",
            "password": "pass",
            "schema": "schema",
            "extra": {"param1": "val1", "param2": "val2"},
        },
    ),
    ("type://host", {"conn_type": "type", "host": "host", "schema": ""}),
    (
        "spark://mysparkcluster.com:80?deploy-mode=cluster&spark_binary=command&namespace=kube+namespace",
        {
            "conn_type": "spark",
            "host": "mysparkcluster.com",
            "port": 80,
            "schema": "",
            "extra": {
                "deploy-mode": "cluster",
                "spark_binary": "command",
                "namespace": "kube namespace",
            },
        },
    ),
    (
        "spark://k8s://100.68.0.1:443?deploy-mode=cluster",
        {
            "conn_type": "spark",
            "host": "k8s://100.68.0.1",
            "port": 443,
            "schema": "",
            "extra": {"deploy-mode": "cluster"},
        },
    ),
    (
        "type://protocol://user:pass@host:123?param=value",
        {
            "conn_type": "type",
            "host": "protocol://host",
            "login": "user",
            "password": "pass",
            "port": 123,
            "schema": "",
            "extra": {"param": "value"},
        },
    ),
    (
        "scheme://user:password@host%2Flocation:1234/schema?extra1=a%20value&extra2=%2Fpath%2F",
        {
            "conn_type": "scheme",
            "host": "host/location",
            "login": "user",
            "password": "password",
            "port": 1234,
            "schema": "schema",
            "extra": {"extra1": "a value", "extra2": "/path/"},
        },
    ),
    (
        (
            "scheme://user:password@host%2Flocation:1234/schema?__extra__=%7B%22my_val%22%3A+%5B%22list"
            "%22%2C+%22of%22%2C+%22values%22%5D%2C+%22extra%22%3A+%7B%22nested%22%3A+%7B%22json%22%3A"
            "+%22val%22%7D%7D%7D"
        ),
        {
            "conn_type": "scheme",
            "host": "host/location",
            "login": "user",
            "password": "password",
            "port": 1234,
            "schema": "schema",
            "extra": {
                "my_val": ["list", "of", "values"],
                "extra": {"nested": {"json": "val"}},
            },
        },
    ),
    (
        "scheme://user:password@host%2Flocation%3Ax%3Ay:1234/schema?extra1=a%20value&extra2=",
        {
            "conn_type": "scheme",
            "host": "host/location:x:y",
            "login": "user",
            "password": "password",
            "port": 1234,
            "schema": "schema",
            "extra": {"extra1": "a value", "extra2": ""},
        },
    ),
    (
        "scheme://domain%2Fuser:password%20with%20space@host:1234/schema%2Ftest",
        {
            "conn_type": "scheme",
            "host": "host",
            "login": "domain/user",
            "password": "password with space",
            "port": 1234,
            "schema": "schema/test",
        },
    ),
    (
        (
            "google-cloud-platform://?key_path=%2Fkeys%2Fkey.json&scope=https%3A%2F%2Fwww.googleapis.com"
            "%2Fauth%2Fcloud-platform&project=airflow"
        ),
        {
            "conn_type": "google_cloud_platform",
            "host": "",
            "schema": "",
            "extra": {
                "key_path": "/keys/key.json",
                "scope": "https://www.googleapis.com/auth/cloud-platform",
                "project": "airflow",
            },
        },
    ),
    (
        "scheme://%2FTmP%2F:1234",
        {"conn_type": "scheme", "host": "/TmP/", "port": 1234, "schema": ""},
    ),
    ("scheme:///airflow", {"conn_type": "scheme", "host": "", "schema": "airflow"}),
    (
        "scheme://@:1234",
        {"conn_type": "scheme", "host": "", "login": "", "port": 1234, "schema": ""},
    ),
    (
        "scheme://:password%2F%21%40%23%24%25%5E%26%2A%28%29%7B%7D@",
        {
            "conn_type": "scheme",
            "host": "",
            "login": "",
            "password": "password/!@#$%^&*(){}",
            "schema": "",
        },
    ),
    (
        "http://user:@host:80/database",
        {
            "conn_type": "http",
            "host": "host",
            "login": "user",
            "port": 80,
            "schema": "database",
        },
    ),
    (
        "postgresql://user:password@%2Ftmp%2Fz6rqdzqh%2Fexample%3Awest1%3Atestdb/testdb",
        {
            "conn_type": "postgres",
            "host": "/tmp/z6rqdzqh/example:west1:testdb",
            "login": "user",
            "password": "password",
            "schema": "testdb",
        },
    ),
    (
        "spark://user@k8s%3a%2F%2F100.68.0.1:443?deploy-mode=cluster",
        {
            "conn_type": "spark",
            "host": "k8s://100.68.0.1",
            "login": "user",
            "port": 443,
            "schema": "",
            "extra": {"deploy-mode": "cluster"},
        },
    ),
    (
        "scheme://host/schema?valid_json=%7B%22key%22%3A%22val%22%7D&empty_val=",
        # Airflow stores query values as strings; only extra_dejson parses them at read time.
        {
            "conn_type": "scheme",
            "host": "host",
            "schema": "schema",
            "extra": {"valid_json": '{"key":"val"}', "empty_val": ""},
        },
    ),
    (
        "MySQL://Host.Example/DB",
        {"conn_type": "mysql", "host": "host.example", "schema": "DB"},
    ),
    ("scheme://host?__extra__=", {"conn_type": "scheme", "host": "host", "schema": ""}),
    (
        "scheme://host?a=1&a=2",
        {"conn_type": "scheme", "host": "host", "schema": "", "extra": {"a": "2"}},
    ),
]


@pytest.mark.parametrize(("uri", "fields"), URI_CASES, ids=[case[0][:60] for case in URI_CASES])
def test_parse_connection_uri_matches_airflow(uri: str, fields: dict[str, Any]) -> None:
    """A URI yields the fields Airflow's Connection._parse_from_uri stores."""
    assert parse_connection_uri("c", uri) == spec("c", **fields)


@pytest.mark.parametrize(
    "uri",
    [
        "type://user:pass@protocol://host:port?param=value",
        "a://b://c://d",
        f"scheme://user:{CANARY}/x@host",  # an unencoded '/' turns the password's tail into a port
        "scheme://host:0",
        "scheme://host:99999",
        "no-scheme-here",
        "scheme://[::1/x",
        f"scheme://user:{CANARY}@host?__extra__=%5B1%5D",
        f"scheme://user:{CANARY}@host?__extra__=not-json",
    ],
)
def test_parse_connection_uri_rejects_invalid_without_quoting_it(uri: str) -> None:
    """An invalid URI raises InputError naming the conn_id and quoting nothing of the URI."""
    with pytest.raises(InputError) as caught:
        parse_connection_uri("my_conn", uri)
    message = str(caught.value)
    assert message.startswith("connection 'my_conn': ")
    assert CANARY not in message
    assert uri not in message


@pytest.mark.parametrize("conn_id", ["has space", "", "x" * 251, "<script>"])
def test_parse_connection_uri_rejects_bad_conn_id(conn_id: str) -> None:
    """A conn_id outside Airflow 3's rule is refused."""
    with pytest.raises(InputError, match="conn_id must be"):
        parse_connection_uri(conn_id, "http://host")


def write(tmp_path: Path, name: str, text: str) -> Path:
    """Write text to tmp_path/name and return the path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_json_export_file_is_read(tmp_path: Path) -> None:
    """A file of `airflow connections export` in JSON, extra as JSON text, yields its specs."""
    exported = {
        "my_postgres": {
            "conn_type": "postgres",
            "description": "Warehouse",
            "login": "etl",
            "password": CANARY,
            "host": "db.internal",
            "port": 5432,
            "schema": "analytics",
            "extra": '{"sslmode": "require"}',
        },
        "http_default": {
            "conn_type": "http",
            "description": None,
            "login": None,
            "password": None,
            "host": "example.com",
            "port": None,
            "schema": None,
            "extra": None,
        },
    }
    path = write(tmp_path, "conns.json", json.dumps(exported, indent=2))
    assert parse_airflow_file(path) == [
        spec(
            "my_postgres",
            conn_type="postgres",
            description="Warehouse",
            login="etl",
            password=CANARY,
            host="db.internal",
            port=5432,
            schema="analytics",
            extra={"sslmode": "require"},
        ),
        spec("http_default", conn_type="http", host="example.com"),
    ]


def test_yaml_export_file_is_read(tmp_path: Path) -> None:
    """A YAML export and Airflow's documented YAML forms (URI, list of one, extra_dejson) are read."""
    text = """\
conn_a: 'mysql://host_a'
conn_b:
  - 'mysql://host_b'
conn_c:
  conn_type: scheme
  host: host
  schema: lschema
  login: Login
  port: "1234"
  extra_dejson:
    a: b
    nested: {x: y}
conn_d:
  conn_type: postgres
  extra: '{"k": 1}'
conn_e: []
"""
    specs = parse_airflow_file(write(tmp_path, "conns.yaml", text))
    assert specs == [
        spec("conn_a", conn_type="mysql", host="host_a", schema=""),
        spec("conn_b", conn_type="mysql", host="host_b", schema=""),
        spec(
            "conn_c",
            conn_type="scheme",
            host="host",
            schema="lschema",
            login="Login",
            port=1234,
            extra={"a": "b", "nested": {"x": "y"}},
        ),
        spec("conn_d", conn_type="postgres", extra={"k": 1}),
    ]


def test_yml_suffix_and_dict_with_uri_and_description(tmp_path: Path) -> None:
    """A .yml file is YAML; a dict may hold a uri with only a description beside it."""
    text = "c:\n  uri: 'postgresql://u@h/db'\n  description: Main\n"
    assert parse_airflow_file(write(tmp_path, "conns.yml", text)) == [
        spec(
            "c",
            conn_type="postgres",
            host="h",
            login="u",
            schema="db",
            description="Main",
        )
    ]


def test_dict_conn_type_is_not_normalized_but_json_text_is(tmp_path: Path) -> None:
    """Like Airflow, a dict keeps its conn_type; JSON text (from_json) normalizes it."""
    text = '{"a": {"conn_type": "google-cloud-platform"}, "b": "{\\"conn_type\\": \\"postgresql\\"}"}'
    specs = parse_airflow_file(write(tmp_path, "conns.json", text))
    assert [s["conn_type"] for s in specs] == ["google-cloud-platform", "postgres"]


def test_env_file_of_uris_and_json_is_read(tmp_path: Path) -> None:
    """A .env file skips comments and blank lines, reads URIs and JSON values (export formats)."""
    json_value = json.dumps(
        {
            "conn_type": "postgres",
            "description": None,
            "login": "etl",
            "password": CANARY,
            "host": "db",
            "port": 5432,
            "schema": "dw",
            "extra": '{"sslmode": "require"}',
        }
    )
    text = (
        "# exported connections\n"
        "\n"
        "  # indented comment\n"
        "MY_CONN_ID=my-conn-type://my-login:my-pa%2Fssword@my-host:5432/my-schema?param1=val1\n"
        f"warehouse={json_value}\n"
    )
    assert parse_airflow_file(write(tmp_path, "conns.env", text)) == [
        spec(
            "MY_CONN_ID",
            conn_type="my_conn_type",
            login="my-login",
            password="my-pa/ssword",
            host="my-host",
            port=5432,
            schema="my-schema",
            extra={"param1": "val1"},
        ),
        spec(
            "warehouse",
            conn_type="postgres",
            login="etl",
            password=CANARY,
            host="db",
            port=5432,
            schema="dw",
            extra={"sslmode": "require"},
        ),
    ]


def test_env_file_reports_every_bad_line(tmp_path: Path) -> None:
    """Lines without '=', with an empty key or value, and duplicates are all reported by line."""
    text = f"a=http://h\nno equals\n=http://x\nb=\na=http://u:{CANARY}@h2\n"
    path = write(tmp_path, "conns.env", text)
    with pytest.raises(InputError) as caught:
        parse_airflow_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: 4 problems:")
    for expected in (
        "line 2:",
        "line 3:",
        "line 4 ('b')",
        "'a' is defined on lines 1, 5",
    ):
        assert expected in message
    assert CANARY not in message


BAD_FILES = [
    (
        "conns.json",
        '{"c": {"conn_type": "http", "password": "%s",',
        "invalid JSON at line 1",
    ),
    ("conns.json", '["http://u:%s@h"]', "must hold a mapping"),
    ("conns.json", '{"c": 42, "pw": "%s"}', "connection 'c': must be a connection URI"),
    (
        "conns.json",
        '{"c": {"conn_type": "http", "password": "%s", "port": "80a"}}',
        "port must be",
    ),
    (
        "conns.json",
        '{"c": {"conn_type": "http", "password": "%s", "port": 1.5}}',
        "port must be",
    ),
    (
        "conns.json",
        '{"c": {"conn_type": "http", "password": "%s", "port": true}}',
        "port must be",
    ),
    ("conns.json", '{"c": {"password": "%s"}}', "connection 'c': conn_type is missing"),
    (
        "conns.json",
        '{"c": {"conn_type": "x", "conn_uri": "x://%s@h"}}',
        "key for a URI is 'uri'",
    ),
    ("conns.json", '{"c": {"uri": "x://h", "host": "%s"}}', "cannot be mixed"),
    (
        "conns.json",
        '{"c": {"conn_type": "x", "conn_id": "d", "password": "%s"}}',
        "differs",
    ),
    (
        "conns.json",
        '{"c": {"conn_type": "x", "extra": "{%s"}}',
        "extra is not valid JSON",
    ),
    (
        "conns.json",
        '{"c": {"conn_type": "x", "extra": "[\\"%s\\"]"}}',
        "extra must be a JSON object",
    ),
    ("conns.json", '{"c": ["x://h", "x://u:%s@h2"]}', "has 2 values"),
    ("conns.json", '{"c": "x://u:%s@h", "c": "x://h"}', "'c' appears twice"),
    (
        "conns.json",
        '{"bad id": "x://u:%s@h"}',
        "connection 'bad id': the conn_id must be",
    ),
    (
        "conns.json",
        '{"c": "{\\"conn_type\\": \\"x\\", \\"password\\": \\"%s\\""}',
        "not valid JSON",
    ),
    ("conns.json", "  \n", "the file is empty"),
    (
        "conns.yaml",
        "c:\n  conn_type: http\n  password: %s\n  port: [1\n",
        "invalid YAML at line",
    ),
    (
        "conns.yaml",
        "c:\n  conn_type: http\n  password: 12345\nx: %s\n",
        "password must be a string",
    ),
    ("conns.yaml", "c: x://u:%s@h\nc: x://h\n", "'c' appears twice"),
    (
        "conns.yaml",
        "c:\n  conn_type: x\n  extra: {d: 2024-01-01, p: %s}\n",
        "JSON cannot represent",
    ),
    ("conns.yaml", "- x://u:%s@h\n", "must hold a mapping"),
    ("conns.env", "c=x://u:%s@h:port\n", "line 1 ('c'): invalid connection URI"),
    ("conns.txt", "c=x://u:%s@h\n", "unsupported file type '.txt'"),
    ("conns", "c=x://u:%s@h\n", "unsupported file type '(none)'"),
]


@pytest.mark.parametrize(("name", "template", "expected"), BAD_FILES)
def test_bad_file_names_file_and_entry_without_secret(
    tmp_path: Path, name: str, template: str, expected: str
) -> None:
    """A bad file raises InputError naming the file and the entry, never quoting the canary."""
    path = write(tmp_path, name, template.replace("%s", CANARY))
    with pytest.raises(InputError) as caught:
        parse_airflow_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert CANARY not in message


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    """A file that does not exist raises InputError naming it and saying so."""
    path = tmp_path / "nope.json"
    with pytest.raises(InputError) as caught:
        parse_airflow_file(path)
    assert str(caught.value) == f"{path}: no such file"


def test_non_utf8_file_is_an_input_error(tmp_path: Path) -> None:
    """A file that is not UTF-8 text raises InputError naming it."""
    path = tmp_path / "latin1.env"
    path.write_bytes(b"c=http://h/?q=caf\xe9\n")
    with pytest.raises(InputError) as caught:
        parse_airflow_file(path)
    assert str(caught.value) == f"{path}: not UTF-8 text"


def test_yaml_without_pyyaml_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PyYAML a YAML file raises InputError telling which extra to install."""
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes `import yaml` fail
    with pytest.raises(InputError, match=r"pip install 'declarative-conns\[yaml\]'"):
        parse_airflow_file(write(tmp_path, "conns.yaml", "c: http://h\n"))


def test_env_vars_uri_and_json_are_read() -> None:
    """AIRFLOW_CONN_<ID> holds a URI or JSON; the conn_id is lower-cased, others are ignored."""
    environ = {
        "AIRFLOW_CONN_MY_POSTGRES": " postgresql://etl:p%40ss@db:5432/dw ",
        "AIRFLOW_CONN_AWS_DEFAULT": '{"conn_type": "aws", "extra": {"region_name": "eu-west-1"}}',
        "AIRFLOW_CONN_EMPTY": "",
        "AIRFLOW_VAR_X": "not a connection",
        "PATH": "/usr/bin",
    }
    assert parse_env_vars(environ) == [
        spec("aws_default", conn_type="aws", extra={"region_name": "eu-west-1"}),
        spec(
            "my_postgres",
            conn_type="postgres",
            login="etl",
            password="p@ss",
            host="db",
            port=5432,
            schema="dw",
        ),
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("AIRFLOW_CONN_my_conn", "Airflow never reads it"),
        ("AIRFLOW_CONN__TEAMA___MY_CONN", "team-scoped"),
        ("AIRFLOW_CONN_", "conn_id must be"),
    ],
)
def test_env_vars_that_airflow_would_not_read_are_errors(name: str, expected: str) -> None:
    """A variable Airflow ignores or reads per team is an error naming it, not silently dropped."""
    with pytest.raises(InputError) as caught:
        parse_env_vars({name: f"http://u:{CANARY}@h"})
    message = str(caught.value)
    assert f"environment variable {name}: " in message
    assert expected in message
    assert CANARY not in message


def test_env_var_with_bad_json_names_the_variable() -> None:
    """A JSON value with a bad port names the variable, not the value."""
    value = json.dumps({"conn_type": "x", "password": CANARY, "port": "eighty"})
    with pytest.raises(InputError) as caught:
        parse_env_vars({"AIRFLOW_CONN_X": value})
    assert "environment variable AIRFLOW_CONN_X: port must be" in str(caught.value)
    assert CANARY not in str(caught.value)


def test_variables_file_reads_shell_and_compose_lines(tmp_path: Path) -> None:
    """An env file: comments skipped, `export` allowed, one pair of quotes removed, later lines win."""
    from declarative_conns.onboarding.airflow_files import read_variables_file

    path = tmp_path / "compose.env"
    path.write_text(
        "# comment\n\nexport A='x y'\nB=\"q\"\nC=it's\nD=a=b\nA=later\n  E = spaced  \n", encoding="utf-8"
    )
    assert read_variables_file(path) == {"A": "later", "B": "q", "C": "it's", "D": "a=b", "E": "spaced"}


def test_variables_file_refuses_lines_without_a_name(tmp_path: Path) -> None:
    """A line that is not NAME=VALUE is an error naming the file and line, never the value."""
    from declarative_conns.onboarding.airflow_files import read_variables_file

    path = tmp_path / "compose.env"
    path.write_text(f"OK=1\n{CANARY}\n1X=2\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_variables_file(path)
    assert (
        str(caught.value)
        == f"{path}: 2 problems:\n  line 2: expected NAME=VALUE\n  line 3: expected NAME=VALUE"
    )
