"""The plan as JSON and markdown: valid, stable, and telling the same facts as the text."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from markdown_it import MarkdownIt

from declarative_conns.config.resources import load_schema
from declarative_conns.core.crypto import Digester
from declarative_conns.core.drift import detect_drift
from declarative_conns.core.kinds import BY_NAME, CONNECTION
from declarative_conns.core.model import Address, Settings, StoredObject, Values
from declarative_conns.core.operations import Plan
from declarative_conns.core.planner import compute_plan
from declarative_conns.core.recorded import recorded_form
from declarative_conns.output.report import action_name, plan_document, render_json, render_markdown
from declarative_conns.output.text import PlanContext, render_text, summary_line
from tests.strategies import CANARY, FIELDS, declared_objects, stored_objects

DIGESTER = Digester.from_secret(b"test-key", source="state")
CONTEXT = PlanContext(
    "postgresql://airflow:***@db.internal:5432/airflow", "Airflow 2.x table", "2.x", {"connection": (7, 9)}
)
ALL_KINDS = ("connection", "variable", "pool")


def v(**fields: Any) -> Values:
    """Build normalized connection values from keyword fields."""
    return Values(CONNECTION.normalize(fields))


def conn(conn_id: str) -> Address:
    """Return a connection's address."""
    return Address("connection", conn_id)


def row(row_id: int, conn_id: str, **fields: Any) -> StoredObject:
    """Build a stored connection row."""
    return StoredObject(conn(conn_id), row_id, v(**fields), f"fp{row_id}")


def recorded(address: Address, values: Values) -> dict[str, Any]:
    """Return an object's values as the state records them (secrets as digests)."""
    return recorded_form(values, DIGESTER, BY_NAME[address.kind], FIELDS[address.kind])


def drift_of(applied: dict[Address, Any], rows: list[StoredObject], managed: frozenset[Address]) -> Any:
    """Return the drift of stored objects from the applied records."""
    return detect_drift(applied, rows, recorded, managed, BY_NAME)


def plan_connections(
    desired: dict[str, Values],
    rows: list[StoredObject],
    settings: Settings,
    managed: frozenset[str] = frozenset(),
) -> Plan:
    """Plan connections declared by conn_id against rows of an Airflow 2.x table."""
    return compute_plan(
        {conn(c): val for c, val in desired.items()},
        rows,
        settings,
        ("connection",),
        FIELDS,
        managed=frozenset(conn(c) for c in managed),
    )


def full_plan() -> Plan:
    """Return a plan with every kind of operation and of drift, like the contract's example."""
    warehouse_applied = v(
        conn_type="postgres", host="wh.internal", password=CANARY, extra={"sslmode": "require"}
    )
    desired = {
        "slack_alerts": v(conn_type="http", host="hooks.slack.com", password=CANARY, extra={"timeout": 10}),
        "warehouse": warehouse_applied,
        "steady": v(conn_type="http", host="steady.example"),
    }
    rows = [
        row(
            1,
            "warehouse",
            conn_type="postgres",
            host="wh-old.internal",
            password="ui-pw",
            extra={"sslmode": "prefer"},
        ),
        row(2, "legacy_s3", conn_type="aws"),
        row(3, "legacy_s3", conn_type="aws"),
        row(4, "old_ftp", conn_type="ftp", host="ftp.example.com", password=CANARY),
        row(5, "steady", conn_type="http", host="steady.example"),
        row(6, "stranger", conn_type="http"),
        row(7, "aws_default", conn_type="aws"),
        StoredObject(conn("rotated"), 8, v(conn_type="http"), "fp8", key_index=1),
    ]
    managed = frozenset({"warehouse", "old_ftp", "slack_alerts", "steady"})
    applied = {conn(c): recorded(conn(c), desired[c]) for c in ("warehouse", "slack_alerts", "steady")}
    plan = plan_connections(desired, rows, Settings(ignore=("*_default",)), managed)
    return replace(plan, drift=drift_of(applied, rows, frozenset(conn(c) for c in managed)))


def test_json_is_valid_against_the_published_schema() -> None:
    """A plan with every operation and drift kind is one document valid against plan.schema.json."""
    schema = load_schema("plan.schema.json")
    Draft202012Validator.check_schema(schema)
    document = json.loads(render_json(full_plan(), CONTEXT))
    Draft202012Validator(schema).validate(document)
    assert CANARY not in render_json(full_plan(), CONTEXT)


def test_json_field_names_are_stable() -> None:
    """The JSON's field names are the documented ones; renaming one is a breaking change."""
    document = plan_document(full_plan(), CONTEXT)
    assert list(document) == [
        "format_version",
        "target",
        "notes",
        "kinds",
        "changes_outside",
        "actions",
        "summary",
        "unchanged",
        "unmanaged",
        "ignored",
        "objects",
        "old_key_rows",
        "targets",
    ]
    assert document["targets"] is None  # a whole plan; a partial one lists its --target objects
    assert document["format_version"] == 1
    assert set(document["target"]) == {"url", "description", "shape", "rows", "connections", "kinds"}
    assert set(document["summary"]) == {
        "add",
        "change",
        "destroy",
        "duplicates",
        "unchanged",
        "unmanaged",
        "ignored",
        "has_changes",
    }
    assert set(document["objects"]) == {"unchanged", "unmanaged", "ignored"}
    assert {frozenset(d) for d in document["changes_outside"]} == {
        frozenset({"kind", "key", "conn_id", "row_id", "deleted", "changes"})
    }
    keys = {a["action"]: set(a) for a in document["actions"]}
    assert (
        keys["create"]
        == keys["update"]
        == {"action", "kind", "key", "conn_id", "row_id", "reason", "changes"}
    )
    assert keys["delete"] <= {"action", "kind", "key", "conn_id", "row_id", "reason", "kept_row_id", "values"}
    change_keys = {frozenset(c) for a in document["actions"] for c in a.get("changes", [])}
    assert change_keys <= {
        frozenset({"path", "kind", "sensitive", "before", "after"}),
        frozenset({"path", "kind", "sensitive", "after"}),
        frozenset({"path", "kind", "sensitive", "before"}),
        frozenset({"path", "kind", "sensitive"}),
    }


def test_json_target_and_kinds_describe_what_was_planned() -> None:
    """The target says what it is and how many objects and rows of each kind it holds; kinds lists the managed ones."""
    document = plan_document(full_plan(), CONTEXT)
    assert document["target"] == {
        "url": "postgresql://airflow:***@db.internal:5432/airflow",
        "description": "Airflow 2.x table",
        "shape": "2.x",
        "rows": 9,
        "connections": 7,
        "kinds": {"connection": {"objects": 7, "rows": 9}},
    }
    assert document["kinds"] == ["connection"] and document["notes"] == []
    assert document["objects"]["ignored"] == [
        {"kind": "connection", "key": "aws_default", "conn_id": "aws_default"}
    ]
    assert document["old_key_rows"] == ["rotated"]


def test_json_drift_tells_fields_and_hides_secrets() -> None:
    """changes_outside lists each changed field with before/after, a secret only as sensitive, deletions."""
    document = plan_document(full_plan(), CONTEXT)
    assert document["changes_outside"] == [
        {
            "kind": "connection",
            "key": "slack_alerts",
            "conn_id": "slack_alerts",
            "row_id": None,
            "deleted": True,
            "changes": [],
        },
        {
            "kind": "connection",
            "key": "warehouse",
            "conn_id": "warehouse",
            "row_id": 1,
            "deleted": False,
            "changes": [
                {
                    "path": "host",
                    "kind": "change",
                    "sensitive": False,
                    "before": "wh.internal",
                    "after": "wh-old.internal",
                },
                {"path": "password", "kind": "change", "sensitive": True},
                {
                    "path": "extra.sslmode",
                    "kind": "change",
                    "sensitive": False,
                    "before": "require",
                    "after": "prefer",
                },
            ],
        },
    ]


def test_json_actions_carry_reasons_rows_and_values() -> None:
    """Each action says what, to which object and row, why; a destroyed connection lists its values, secrets hidden."""
    document = json.loads(render_json(full_plan(), CONTEXT))
    actions = {(a["action"], a["conn_id"], a["row_id"]): a for a in document["actions"]}
    assert all(a["kind"] == "connection" and a["key"] == a["conn_id"] for a in document["actions"])
    assert actions["delete", "legacy_s3", 3]["reason"] == "duplicate"
    assert actions["delete", "legacy_s3", 3]["kept_row_id"] == 2
    assert actions["delete", "old_ftp", 4]["reason"] == "removed"
    assert actions["delete", "old_ftp", 4]["values"] == {
        "conn_type": "ftp",
        "host": "ftp.example.com",
        "password": "(sensitive value)",
    }
    assert actions["create", "slack_alerts", None]["changes"][2] == {
        "path": "password",
        "kind": "add",
        "sensitive": True,
    }
    assert actions["update", "warehouse", 1]["reason"] == "declared"


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Parse markdown as GitHub does and return each table as rows of cell texts."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    tables: list[list[list[str]]] = []
    in_table = False
    for token in tokens:
        if token.type in ("table_open", "table_close"):
            in_table = token.type == "table_open"
            tables += [[]] if in_table else []
        elif in_table and token.type == "tr_open":
            tables[-1].append([])
        elif in_table and token.type == "inline":
            tables[-1][-1].append("".join(c.content for c in token.children or []))
    return tables


def test_markdown_has_summary_drift_actions_and_folded_plan_in_order() -> None:
    """The report reads: summary, target, changed outside dconn, actions, counts, the full plan folded."""
    text = render_markdown(full_plan(), CONTEXT)
    headings = [
        "### dconn plan\n\n**Plan: 1 to add, 1 to change, 2 to destroy (1 duplicate row).**\n",
        "Target: `postgresql://airflow:***@db.internal:5432/airflow` (Airflow 2.x table, 7 connections in 9 rows)",
        "#### Changed outside dconn",
        "#### Actions",
        "1 unchanged, 3 unmanaged, 1 ignored.",
        " encrypted with an older Fernet key (not the first of the ring): `rotated`",
        "<details><summary>Full plan</summary>",
    ]
    positions = [text.index(h) for h in headings]
    assert positions[:5] == sorted(positions[:5])
    assert positions[2] < positions[5] < positions[3] and positions[6] > positions[4]
    assert text.startswith(headings[0])
    assert text.endswith("```\n\n</details>\n")
    assert CANARY not in text


def test_markdown_names_old_key_objects_as_the_text_does() -> None:
    """The markdown note on old-key rows names their kind, as the text plan does ("1 connection")."""
    text, markdown = render_text(full_plan(), CONTEXT), render_markdown(full_plan(), CONTEXT)
    assert (
        "Note: 1 connection encrypted with an older Fernet key (not the first of the ring): rotated" in text
    )
    assert (
        "**Note:** 1 connection encrypted with an older Fernet key (not the first of the ring): `rotated`\n"
        in markdown
    )


def test_markdown_drift_table_shows_each_field() -> None:
    """Changed outside dconn: one table row per field, values as code, secrets as changed, deletions."""
    drift, actions = markdown_tables(render_markdown(full_plan(), CONTEXT))
    assert drift == [
        ["Object", "Field", "Change"],
        ["connection slack_alerts", "", "deleted"],
        ["connection warehouse", "host", '"wh.internal" -> "wh-old.internal"'],
        ["connection warehouse", "password", "(sensitive value changed)"],
        ["connection warehouse", "extra.sslmode", '"require" -> "prefer"'],
    ]
    assert actions[0] == ["", "Object", "Action", "Row", "Details"]
    assert [
        "~",
        "connection warehouse",
        "update in place",
        "1",
        "host, password (sensitive), extra.sslmode",
    ] in actions
    assert ["-", "connection legacy_s3", "destroy", "3", "duplicate of row 2"] in actions
    assert ["-", "connection old_ftp", "destroy", "4", "no longer in the configuration"] in actions


def test_markdown_cells_survive_pipes_and_backticks() -> None:
    """A value holding | or backticks stays inside its table cell and its code span."""
    host = "a|b`c``d"
    applied = {conn("x"): recorded(conn("x"), v(conn_type="http", host="plain"))}
    rows = [row(1, "x", conn_type="http", host=host)]
    plan = Plan((), drift=drift_of(applied, rows, frozenset({conn("x")})))
    (drift,) = markdown_tables(render_markdown(plan, CONTEXT))
    assert drift[1] == ["connection x", "host", f'"plain" -> "{host}"']


def test_markdown_drift_says_whether_a_field_was_added_or_removed() -> None:
    """A field added or removed outside dconn says so, a secret's value hidden either way."""
    applied = {conn("x"): recorded(conn("x"), v(conn_type="http", password=CANARY, extra={"a": 1}))}
    rows = [row(1, "x", conn_type="http", login="root", extra={"a": 1, "api_key": CANARY})]
    plan = Plan((), drift=drift_of(applied, rows, frozenset({conn("x")})))
    (drift,) = markdown_tables(render_markdown(plan, CONTEXT))
    assert drift[1:] == [
        ["connection x", "login", 'added: "root"'],
        ["connection x", "password", "removed: (sensitive value)"],
        ["connection x", "extra.api_key", "added: (sensitive value)"],
    ]


def test_markdown_full_plan_is_the_text_plan_even_with_backtick_fences_in_values() -> None:
    """The folded full plan is exactly the text plan; a value holding ``` cannot close its fence."""
    rows = [row(1, "x", conn_type="http", host="```\n# injected")]
    plan = plan_connections({"x": v(conn_type="http", host="h")}, rows, Settings())
    text = render_markdown(plan, CONTEXT)
    fences = [t for t in MarkdownIt("commonmark").parse(text) if t.type == "fence"]
    assert len(fences) == 1
    assert fences[0].info == "diff"
    assert fences[0].content == render_text(plan, CONTEXT)


def test_verbose_markdown_lists_unmanaged_and_ignored() -> None:
    """With -v the markdown names the unmanaged and ignored objects with their kind, as the text does."""
    text = render_markdown(full_plan(), replace(CONTEXT, verbose=True))
    assert "\nUnmanaged: connection `legacy_s3`, connection `rotated`, connection `stranger`\n" in text
    assert "\nIgnored: connection `aws_default`\n" in text
    assert "Unmanaged:" not in render_markdown(full_plan(), CONTEXT).split("<details>")[0]


def test_no_changes_in_every_format() -> None:
    """Without changes the three formats say so: the sentence, has_changes false, no tables."""
    plan = plan_connections({"a": v(conn_type="http")}, [row(1, "a", conn_type="http")], Settings())
    markdown = render_markdown(plan, CONTEXT)
    assert markdown.startswith("### dconn plan\n\n**No changes. The connections match the configuration.**\n")
    assert markdown_tables(markdown) == []
    assert json.loads(render_json(plan, CONTEXT))["summary"]["has_changes"] is False
    assert render_text(plan, CONTEXT).endswith("No changes. The connections match the configuration.\n")


@st.composite
def plans(draw: Any) -> Plan:
    """Draw a plan over random objects of every kind, with some managed objects and drift from a record."""
    kinds = tuple(k for k in ALL_KINDS if draw(st.booleans())) or ("connection",)
    desired = draw(declared_objects(kinds))
    stored = draw(stored_objects(kinds))
    applied_values = draw(declared_objects(kinds))
    candidates = sorted(set(applied_values) | {Address(kinds[0], "a")})
    managed = frozenset(draw(st.sets(st.sampled_from(candidates))))
    applied = {a: recorded(a, val) for a, val in applied_values.items()}
    settings = Settings(prune=draw(st.booleans()))
    plan = compute_plan(desired, stored, settings, kinds, FIELDS, managed=managed, rotate=draw(st.booleans()))
    return replace(plan, drift=drift_of(applied, stored, managed))


def context_of(plan: Plan, verbose: bool) -> PlanContext:
    """Return a heading context holding some objects of each kind the plan manages."""
    counts = {kind: (5, 8) for kind in plan.kinds}
    return PlanContext("sqlite:////srv/airflow.db", "Airflow 2.x table", "2.x", counts, verbose)


@settings(max_examples=150, deadline=None)
@given(plans(), st.booleans())
def test_every_format_tells_the_same_facts(plan: Plan, verbose: bool) -> None:
    """Text, JSON and markdown agree: summary, every operation, every drifted field; no secret in any."""
    context = context_of(plan, verbose)
    text, markdown = render_text(plan, context), render_markdown(plan, context)
    document = json.loads(render_json(plan, context))
    Draft202012Validator(load_schema("plan.schema.json")).validate(document)
    s = plan.summary
    assert text.rstrip("\n").endswith(summary_line(plan))
    assert f"**{summary_line(plan)}**" in markdown
    assert [document["summary"][k] for k in ("add", "change", "destroy", "duplicates", "has_changes")] == [
        s.add,
        s.change,
        s.destroy,
        s.duplicates,
        s.has_changes,
    ]
    assert [(a["action"], a["kind"], a["key"], a["row_id"]) for a in document["actions"]] == [
        (action_name(op), op.address.kind, op.address.key, op.row_id) for op in plan.operations
    ]
    assert all(
        a.get("conn_id") == (a["key"] if a["kind"] == "connection" else None) for a in document["actions"]
    )
    tables = markdown_tables(markdown)
    if plan.operations:
        assert [(r[1], r[3]) for r in tables[-1][1:]] == [
            (f"{op.address.kind} {op.address.key}", "" if op.row_id is None else str(op.row_id))
            for op in plan.operations
        ]
    drifted = [(d.address, c.path) for d in plan.drift for c in d.changes]
    assert len(drifted) == sum(len(d["changes"]) for d in document["changes_outside"])
    assert [d["deleted"] for d in document["changes_outside"]] == [d.deleted for d in plan.drift]
    if plan.drift:
        assert len(tables[0]) - 1 == len(drifted) + sum(1 for d in plan.drift if d.deleted)
        assert all(f"# {d.address}" in text for d in plan.drift)
    assert document["unmanaged"] == [a.key for a in plan.unmanaged]
    assert document["objects"]["unmanaged"] == [
        {"kind": a.kind, "key": a.key, **({"conn_id": a.key} if a.kind == "connection" else {})}
        for a in plan.unmanaged
    ]
    body = markdown.split("<details>")[0]
    assert ("\nUnmanaged: " in body) == ("\nUnmanaged: " in text) == (verbose and bool(plan.unmanaged))
    fence = [t for t in MarkdownIt("commonmark").parse(markdown) if t.type == "fence"]
    assert fence[-1].content == text
    for output in (text, markdown, json.dumps(document)):
        assert CANARY not in output
        assert not re.search(r"[0-9a-f]{64}", output), "a digest leaked into a report"


@pytest.mark.parametrize("fmt", ["json", "markdown"])
def test_cli_reports_are_alone_on_stdout(make_db: Any, tmp_path: Any, monkeypatch: Any, fmt: str) -> None:
    """`dconn plan --format json|markdown` prints only the report on stdout; warnings go to stderr."""
    from typer.testing import CliRunner

    from declarative_conns.cli import app

    db = make_db("sqlite", "2.x")
    (tmp_path / "connections.toml").write_text('[connections.a]\nconn_type = "http"\n')
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["plan", "--format", fmt, "--db-url", db.url, "--detailed-exitcode"])
    assert result.exit_code == 2, result.output
    assert result.stdout.startswith("{" if fmt == "json" else "### dconn plan\n")
    if fmt == "json":
        assert json.loads(result.stdout)["summary"]["add"] == 1


def schema_fields(schema: dict[str, Any], node: dict[str, Any], prefix: str = "") -> list[str]:
    """Return every property path of a JSON Schema (`target.url`, `actions[].reason`)."""
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        return schema_fields(schema, node["items"], prefix + "[]")
    fields = []
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        fields += [path, *schema_fields(schema, child, path)]
    return fields


def documented_fields(docs: str, heading: str) -> set[str]:
    """Return the field names of the first column of the table under a heading of docs/ci.md.

    A cell "`summary.add`, `.change`" documents summary.add and summary.change.
    """
    section = docs.split(heading, 1)[1].split("\n\n|", 1)[1].split("\n\n", 1)[0]
    fields: set[str] = set()
    for line in section.splitlines()[2:]:
        names = re.findall(r"`([^`]+)`", line.split(" | ")[0])
        fields.update(names[0].rsplit(".", 1)[0] + n if n.startswith(".") else n for n in names)
    return fields


def test_every_json_field_is_documented() -> None:
    """docs/ci.md's JSON reference names every field of plan.schema.json, and nothing else."""
    from pathlib import Path

    docs = (Path(__file__).resolve().parent.parent / "docs/ci.md").read_text(encoding="utf-8")
    schema = load_schema("plan.schema.json")
    fields = documented_fields(docs, "### JSON fields")
    change = documented_fields(docs, "#### A change")
    in_schema = schema_fields(schema, schema)
    for name in in_schema:
        if ".changes[]." in name:
            assert name.rsplit(".", 1)[1] in change, name
        else:  # an object is documented through its fields
            assert name in fields or any(f.startswith((f"{name}.", f"{name}[]")) for f in fields), name
    assert {f.removesuffix("[]") for f in fields} <= set(in_schema)
    assert change == {"path", "kind", "sensitive", "before", "after"}
