"""Layered desired state: overrides, recursive merges, ${vars.NAME}, exclude, and where values came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from declarative_conns.config.interpolate import InterpolationError, interpolate
from declarative_conns.config.layers import (
    _Declared,
    _override,
    load_environment,
    load_layers,
    origin_of,
)
from declarative_conns.config.loader import load_desired
from declarative_conns.config.project import load_project
from declarative_conns.config.typecheck import check_types
from declarative_conns.core.model import SecretRef
from declarative_conns.errors import InputError, ProjectError, ValidationFailed

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "environments"
BASE = """
[connections.warehouse]
conn_type = "postgres"
host = "wh.internal"
port = 5432
login = "etl"
password = { from_env = "WH_PASSWORD" }
extra = { sslmode = "require", options = { search_path = "analytics", timeout = 10 }, hosts = ["a", "b"] }
"""


def write(path: Path, text: str) -> Path:
    """Write a file (creating its folder) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(
    *layers: Path, variables: dict[str, Any] | None = None, exclude: tuple[str, ...] = ()
) -> list[str]:
    """Return the validation problems of layers (asserting they are invalid)."""
    with pytest.raises(ValidationFailed) as info:
        load_layers(layers, variables, exclude, label='environment "dev"')
    return info.value.problems


def fields(
    *layers: Path, variables: dict[str, Any] | None = None, conn_id: str = "warehouse"
) -> dict[str, Any]:
    """Load layers and return one connection's declared fields."""
    return dict(load_layers(layers, variables).connections[conn_id].fields)


# --- overriding and merging ---------------------------------------------------------------------


def test_a_later_layer_replaces_the_fields_it_names(tmp_path: Path) -> None:
    """Fields named by an overlay replace the base's; the others stay."""
    base = write(tmp_path / "base.toml", BASE)
    over = write(
        tmp_path / "over.toml", '[connections.warehouse]\nhost = "wh-staging.internal"\nport = 5433\n'
    )
    got = fields(base, over)
    assert (got["host"], got["port"], got["login"], got["conn_type"]) == (
        "wh-staging.internal",
        5433,
        "etl",
        "postgres",
    )


def test_extra_merges_key_by_key_recursively(tmp_path: Path) -> None:
    """extra merges recursively: an overlay adds and replaces keys at any depth; arrays are replaced."""
    base = write(tmp_path / "base.toml", BASE)
    over = write(
        tmp_path / "over.toml",
        '[connections.warehouse.extra]\nsslmode = "prefer"\noptions = { timeout = 30 }\nhosts = ["c"]\nnew = 1\n',
    )
    assert fields(base, over)["extra"] == {
        "sslmode": "prefer",
        "options": {"search_path": "analytics", "timeout": 30},
        "hosts": ["c"],
        "new": 1,
    }


@pytest.mark.parametrize(
    ("base_value", "over_value", "expected"),
    [
        ("{ a = 1, b = 2 }", '{ from_env = "X" }', SecretRef("env", "X")),
        ('{ from_env = "X" }', "{ a = 1 }", {"a": 1}),
        ('{ from_env = "X" }', '{ from_file = "f" }', SecretRef("file", "f")),
        ('"text"', "{ a = 1 }", {"a": 1}),
        ("{ a = 1 }", '"text"', "text"),
    ],
)
def test_secret_references_replace_rather_than_merge(
    tmp_path: Path, base_value: str, over_value: str, expected: Any
) -> None:
    """A secret reference is one value: it replaces a table, and a table replaces it."""
    base = write(
        tmp_path / "base.toml", f'[connections.c]\nconn_type = "http"\nextra = {{ k = {base_value} }}\n'
    )
    over = write(tmp_path / "o" / "over.toml", f"[connections.c.extra]\nk = {over_value}\n")
    got = fields(base, over, conn_id="c")["extra"]["k"]
    if isinstance(expected, SecretRef):
        assert isinstance(got, SecretRef) and (got.kind, got.target) == (expected.kind, expected.target)
        assert got.base_dir == str(tmp_path / "o")  # relative to the overlay that wrote it
    else:
        assert got == expected


def test_a_replaced_password_keeps_its_overlays_folder(tmp_path: Path) -> None:
    """A from_file reference resolves relative to the layer file that declared it."""
    base = write(tmp_path / "connections" / "base.toml", BASE)
    over = write(
        tmp_path / "overlays" / "prod.toml", '[connections.warehouse]\npassword = { from_file = "pw" }\n'
    )
    assert fields(base, over)["password"] == SecretRef("file", "pw", str(tmp_path / "overlays"))
    assert fields(base)["password"] == SecretRef("env", "WH_PASSWORD", str(tmp_path / "connections"))


@pytest.mark.parametrize(
    ("base", "over", "expected"),
    [
        ("extra = { a = 1, b = 2 }", "extra_json = '{\"c\": null}'", {"c": None}),
        ("extra_json = '{\"a\": 1}'", "extra = { b = 2 }", {"b": 2}),
        ("extra_json = '{\"a\": 1}'", "extra_json = '{\"b\": 2}'", {"b": 2}),
    ],
)
def test_extra_and_extra_json_are_one_field(
    tmp_path: Path, base: str, over: str, expected: dict[str, Any]
) -> None:
    """An overlay's extra_json replaces the whole extra; its extra replaces an earlier extra_json."""
    first = write(tmp_path / "a.toml", f'[connections.c]\nconn_type = "http"\n{base}\n')
    second = write(tmp_path / "b.toml", f"[connections.c]\n{over}\n")
    assert fields(first, second, conn_id="c")["extra"] == expected


def test_extra_and_extra_json_in_one_layer_are_still_refused(tmp_path: Path) -> None:
    """Within one file, extra beside extra_json stays the schema error it always was."""
    base = write(tmp_path / "a.toml", BASE)
    over = write(tmp_path / "b.toml", "[connections.warehouse]\nextra = { a = 1 }\nextra_json = '{}'\n")
    assert problems_of(base, over) == [
        f"{over}: connections.warehouse: declare either extra or extra_json, not both"
    ]


def test_a_key_twice_within_one_layer_names_both_files(tmp_path: Path) -> None:
    """Within one folder layer, a conn_id declared in two files is an error naming both."""
    first = write(tmp_path / "base" / "1.toml", '[connections.a]\nconn_type = "x"\n')
    second = write(tmp_path / "base" / "2.toml", '[connections.a]\nconn_type = "y"\n')
    assert problems_of(tmp_path / "base") == [
        f'{second}: connections.a: conn_id "a" is also declared in {first}'
    ]


def test_a_key_in_two_layers_is_an_override(tmp_path: Path) -> None:
    """The same conn_id in two layers is no error: the later one wins field by field."""
    write(tmp_path / "base" / "1.toml", '[connections.a]\nconn_type = "x"\n')
    write(tmp_path / "over" / "1.toml", '[connections.a]\nconn_type = "y"\n')
    assert fields(tmp_path / "base", tmp_path / "over", conn_id="a") == {"conn_type": "y"}


def test_layers_add_connections(tmp_path: Path) -> None:
    """A connection only an overlay declares is added; the files are listed in layer order."""
    base = write(tmp_path / "base.toml", BASE)
    over = write(tmp_path / "over.toml", '[connections.extra_one]\nconn_type = "http"\n')
    desired = load_layers([base, over])
    assert sorted(desired.connections) == ["extra_one", "warehouse"]
    assert desired.files == (base, over)


def test_settings_merge_across_layers(tmp_path: Path) -> None:
    """[settings]: a later layer wins per key, ignore lists add up, type_rules is relative to its file."""
    base = write(
        tmp_path / "base.toml", BASE + '[settings]\nprune = true\nignore = ["*_default"]\ndedupe = false\n'
    )
    write(tmp_path / "rules" / "types.json", "{}")
    over = write(
        tmp_path / "rules" / "over.toml",
        '[settings]\nprune = false\nignore = ["tmp_*"]\ntype_rules = "types.json"\n',
    )
    settings = load_layers([base, over]).settings
    assert (settings.prune, settings.dedupe, settings.ignore) == (False, False, ("*_default", "tmp_*"))
    assert settings.type_rules == str(tmp_path / "rules" / "types.json")


def test_settings_within_one_layer_must_agree(tmp_path: Path) -> None:
    """Within one folder layer, files that set one setting differently conflict (as for -c)."""
    write(tmp_path / "l" / "a.toml", "[settings]\nprune = true\n")
    second = write(tmp_path / "l" / "b.toml", "[settings]\nprune = false\n")
    assert problems_of(tmp_path / "l") == [
        f"{second}: settings.prune: conflicts with the value in {tmp_path / 'l' / 'a.toml'}"
    ]


def test_a_single_layer_reads_as_plain_config(tmp_path: Path) -> None:
    """One layer without templates gives exactly what -c gives: fields, settings, warnings."""
    path = write(
        tmp_path / "c.toml",
        BASE + '[connections.aws_default]\nconn_type = "aws"\n[settings]\nignore = ["*_default"]\n',
    )
    plain, layered = load_desired(path), load_layers([path])
    assert {k: dict(c.fields) for k, c in plain.connections.items()} == {
        k: dict(c.fields) for k, c in layered.connections.items()
    }
    assert (plain.settings, plain.warnings, plain.files) == (
        layered.settings,
        layered.warnings,
        layered.files,
    )


# --- where values came from ---------------------------------------------------------------------


def test_origins_name_the_file_of_each_field(tmp_path: Path) -> None:
    """Each field, and each merged extra key, records the layer file it came from."""
    base = write(tmp_path / "base.toml", BASE)
    over = write(
        tmp_path / "over.toml",
        '[connections.warehouse]\nhost = "h2"\nextra = { options = { timeout = 1 } }\n',
    )
    conn = load_layers([base, over]).connections["warehouse"]
    assert conn.source == base
    assert conn.origins[("host",)] == over and conn.origins[("port",)] == base
    assert origin_of(conn, ("extra", "options", "timeout")) == over
    assert origin_of(conn, ("extra", "options", "search_path")) == base
    assert origin_of(conn, ("extra", "sslmode")) == base
    assert origin_of(conn, ("login",)) == base


def test_a_replaced_table_forgets_the_origins_below_it(tmp_path: Path) -> None:
    """When an overlay replaces a merged key by a non-table, the deeper origins go with it."""
    base = write(tmp_path / "a.toml", '[connections.c]\nconn_type = "http"\nextra = { t = { x = 1 } }\n')
    mid = write(tmp_path / "b.toml", "[connections.c.extra.t]\nx = 2\n")
    last = write(tmp_path / "c.toml", '[connections.c.extra]\nt = "flat"\n')
    conn = load_layers([base, mid, last]).connections["c"]
    assert ("extra", "t", "x") not in conn.origins and origin_of(conn, ("extra", "t")) == last


def test_extra_json_origin_is_recorded_as_extra(tmp_path: Path) -> None:
    """A field set through extra_json is recorded under the parsed field's name, extra."""
    base = write(tmp_path / "a.toml", BASE)
    over = write(tmp_path / "b.toml", "[connections.warehouse]\nextra_json = '{\"a\": null}'\n")
    conn = load_layers([base, over]).connections["warehouse"]
    assert origin_of(conn, ("extra", "a")) == over


def test_plain_loading_records_no_origins(tmp_path: Path) -> None:
    """A connection read by load_desired has no origins: everything came from its source."""
    conn = load_desired(write(tmp_path / "c.toml", BASE)).connections["warehouse"]
    assert conn.origins == {} and origin_of(conn, ("extra", "sslmode")) == conn.source


# --- ${vars.NAME} -------------------------------------------------------------------------------

VARS = {"host": "wh.internal", "port": 5433, "ratio": 1.5, "on": True, "off": False, "env": "staging"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("${vars.port}", 5433),
        ("${vars.ratio}", 1.5),
        ("${vars.on}", True),
        ("${vars.host}", "wh.internal"),
        ("db-${vars.env}.internal", "db-staging.internal"),
        ("${vars.host}:${vars.port}", "wh.internal:5433"),
        ("flag=${vars.off}", "flag=false"),
        ("x ${vars.ratio}", "x 1.5"),
        ("$${vars.port}", "${vars.port}"),
        ("cost $5 and $${HOME}", "cost $5 and ${HOME}"),
        ("$${vars.env}-${vars.env}", "${vars.env}-staging"),
        ("$", "$"),
        (" ${vars.port}", " 5433"),
    ],
)
def test_interpolate(text: str, expected: Any) -> None:
    """A whole-string reference keeps the var's type; inside text it is written as TOML would; $${ escapes."""
    got = interpolate(text, VARS)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${vars.nope}", 'undefined var "nope" in ${vars.nope} (environment "dev" defines env, host'),
        ("x-${vars.nope}", 'undefined var "nope"'),
        (
            "${HOME}",
            '"${HOME}" is not a template dconn knows: write ${vars.NAME}, or write $${ for a literal ${',
        ),
        ("${var.host}", '"${var.host}" is not a template'),
        ("${ vars.host }", '"${ vars.host }" is not a template'),
        ("${vars.host", 'unclosed "${": write ${vars.NAME}, or write $${ for a literal ${'),
    ],
)
def test_interpolate_errors(text: str, message: str) -> None:
    """An undefined var, another ${...} or an unclosed ${ is an error saying what to write."""
    with pytest.raises(InterpolationError) as info:
        interpolate(text, VARS, 'environment "dev"')
    assert str(info.value).startswith(message)


def test_a_var_is_inserted_once_never_read_again() -> None:
    """A var whose value reads like a template (from `$${` in dconn.toml) is inserted as text."""
    variables = {"raw": "${vars.other}"}
    assert interpolate("a-${vars.raw}", variables) == "a-${vars.other}"
    assert interpolate("${vars.raw}", variables) == "${vars.other}"


@given(st.text(alphabet=st.sampled_from("$${}va.rs_x "), max_size=30) | st.text(max_size=30))
def test_escaping_every_template_gives_the_text_back(text: str) -> None:
    """Writing every `${` as `$${` makes any text come out exactly as it was."""
    assert interpolate(text.replace("${", "$${"), {}) == text


def test_undefined_var_without_any_vars() -> None:
    """With no vars at all, the error says the environment defines none."""
    with pytest.raises(InterpolationError, match=r"\(defines no vars\)"):
        interpolate("${vars.x}", {})


def test_vars_fill_every_string_of_a_layer(tmp_path: Path) -> None:
    """Vars fill top-level fields, extra at any depth, arrays, secret references and settings."""
    layer = write(
        tmp_path / "c.toml",
        '[settings]\nignore = ["${vars.env}_*"]\n'
        '[connections.warehouse]\nconn_type = "postgres"\nhost = "${vars.host}"\nport = "${vars.port}"\n'
        'description = "Warehouse (${vars.env})"\npassword = { from_env = "${vars.env}_WH_PASSWORD" }\n'
        'login = { from_command = ["vault", "read", "secret/${vars.env}/login"] }\n'
        'extra = { deep = { deeper = ["${vars.on}", "n=${vars.port}"] }, ratio = "${vars.ratio}" }\n',
    )
    desired = load_layers([layer], {**VARS, "env": "staging"})
    got = desired.connections["warehouse"].fields
    assert (got["host"], got["port"], got["description"]) == ("wh.internal", 5433, "Warehouse (staging)")
    assert got["password"].target == "staging_WH_PASSWORD"
    assert got["login"].target == ("vault", "read", "secret/staging/login")
    assert got["extra"] == {"deep": {"deeper": [True, "n=5433"]}, "ratio": 1.5}
    assert desired.settings.ignore == ("staging_*",)


def test_an_undefined_var_names_file_and_path(tmp_path: Path) -> None:
    """An undefined var is an error naming the file and the dotted path, every one reported."""
    layer = write(
        tmp_path / "c.toml",
        '[connections.a]\nconn_type = "http"\nhost = "${vars.hots}"\nextra = { list = ["ok", "${vars.x}"] }\n',
    )
    assert problems_of(layer, variables={"host": "h"}) == [
        f'{layer}: connections.a.host: undefined var "hots" in ${{vars.hots}} (environment "dev" defines host)',
        f'{layer}: connections.a.extra.list.1: undefined var "x" in ${{vars.x}} (environment "dev" defines host)',
    ]


def test_an_unfilled_template_is_reported_once(tmp_path: Path) -> None:
    """An undefined var in port is one problem, not also a wrong type for the text left in place."""
    layer = write(tmp_path / "c.toml", '[connections.a]\nconn_type = "http"\nport = "${vars.nope}"\n')
    assert problems_of(layer) == [
        f'{layer}: connections.a.port: undefined var "nope" in ${{vars.nope}} (environment "dev" defines no vars)'
    ]


def test_keys_are_not_filled_in(tmp_path: Path) -> None:
    """A template in a key (conn_id, extra key) is an error: keys must read alike in every environment."""
    layer = write(tmp_path / "c.toml", '[connections.a]\nconn_type = "http"\nextra = { "${vars.k}" = 1 }\n')
    assert problems_of(layer, variables={"k": "x"}) == [
        f"{layer}: connections.a.extra.${{vars.k}}: keys are not filled in; ${{vars.NAME}} works in values only"
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"5432x"', "connections.warehouse.port: '5432x' is not of type 'integer'"),
        ("true", "connections.warehouse.port: True is not of type 'integer'"),
        ("1.5", "connections.warehouse.port: 1.5 is not of type 'integer'"),
        ("70000", "connections.warehouse.port: 70000 is above the maximum 65535"),
    ],
)
def test_a_var_of_the_wrong_type_is_a_schema_error(tmp_path: Path, value: str, expected: str) -> None:
    """A var a field cannot take (text for port) is the usual schema error, naming the file and the var."""
    base = write(tmp_path / "base.toml", BASE)
    over = write(tmp_path / "over.toml", '[connections.warehouse]\nport = "${vars.port}"\n')
    port = {"true": True, "1.5": 1.5, "70000": 70000}.get(value, value.strip('"'))
    named = ' (the value of ${vars.port} of environment "dev")'
    assert problems_of(base, over, variables={"port": port}) == [f"{over}: {expected}{named}"]


def test_a_template_in_a_string_field_stays_text(tmp_path: Path) -> None:
    """An integer var inside a longer string makes text; alone in a string field it is a type error."""
    layer = write(
        tmp_path / "c.toml", '[connections.a]\nconn_type = "http"\nhost = "${vars.n}"\nlogin = "u${vars.n}"\n'
    )
    assert problems_of(layer, variables={"n": 7}) == [
        f"{layer}: connections.a.host: 7: expected a string or a secret reference "
        "({ from_env = ... }, { from_file = ... } or { from_command = [...] })"
        ' (the value of ${vars.n} of environment "dev")'
    ]


# --- exclude ------------------------------------------------------------------------------------


def test_exclude_drops_keys_after_layering(tmp_path: Path) -> None:
    """exclude (fnmatch) drops keys declared by any layer; the rest stay."""
    base = write(tmp_path / "base.toml", BASE + '[connections.wh_sandbox]\nconn_type = "postgres"\n')
    over = write(tmp_path / "over.toml", '[connections.extra_sandbox]\nconn_type = "http"\n')
    desired = load_layers([base, over], exclude=["*_sandbox"])
    assert sorted(desired.connections) == ["warehouse"] and desired.warnings == ()


def test_exclude_matching_nothing_is_a_warning(tmp_path: Path) -> None:
    """An exclude pattern that matches no key is a warning in the result, naming the environment."""
    base = write(tmp_path / "base.toml", BASE)
    desired = load_layers([base], exclude=["warehouse", "*_sandbx"], label='environment "prod"')
    assert desired.connections == {}
    assert desired.warnings == (
        'environment "prod": exclude pattern "*_sandbx" matches no key of the layers',
    )


def test_an_excluded_partial_object_is_not_checked_for_required_fields(tmp_path: Path) -> None:
    """An overlay-only fragment that is excluded never needs its conn_type."""
    base = write(tmp_path / "base.toml", BASE)
    over = write(tmp_path / "over.toml", '[connections.scratch]\nhost = "x"\n')
    assert sorted(load_layers([base, over], exclude=["scratch"]).connections) == ["warehouse"]


# --- validation ---------------------------------------------------------------------------------


def test_a_field_missing_after_layering_names_the_declaring_file(tmp_path: Path) -> None:
    """An object no layer gives its required conn_type is an error naming the file that declared it."""
    base = write(tmp_path / "base.toml", BASE)
    over = write(tmp_path / "over.toml", '[connections.new_one]\nhost = "x"\n')
    assert problems_of(base, over) == [f"{over}: connections.new_one: 'conn_type' is a required property"]


def test_each_file_is_checked_even_when_overridden(tmp_path: Path) -> None:
    """A bad value is reported in its own file even when a later layer replaces it."""
    base = write(tmp_path / "base.toml", BASE.replace("port = 5432", 'port = "abc"'))
    over = write(tmp_path / "over.toml", "[connections.warehouse]\nport = 5433\nbogus = 1\n")
    assert problems_of(base, over) == [
        f"{base}: connections.warehouse.port: 'abc' is not of type 'integer'",
        f"{over}: connections.warehouse: unknown field 'bogus'",
    ]


def test_a_toml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    """Malformed TOML in a layer reports file, line and column."""
    base = write(tmp_path / "base.toml", BASE)
    over = write(tmp_path / "over.toml", "[connections.warehouse]\nport = = 1\n")
    with pytest.raises(InputError, match=r"over\.toml: invalid TOML: .*line 2, column 8"):
        load_layers([base, over])


def test_missing_layers_name_the_environment_and_paths(tmp_path: Path) -> None:
    """A layer that does not exist is one error naming the environment and every missing path."""
    base = write(tmp_path / "base.toml", BASE)
    with pytest.raises(ProjectError) as info:
        load_layers([base, tmp_path / "nope", tmp_path / "gone.toml"], label='environment "staging"')
    assert (
        str(info.value)
        == f'environment "staging": layers {tmp_path / "nope"}, {tmp_path / "gone.toml"} do not exist'
    )


def test_an_empty_folder_layer_is_an_error(tmp_path: Path) -> None:
    """A folder layer without *.toml files is an error naming it."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        ProjectError, match=r'^environment "dev": layer .*empty: the folder holds no \*\.toml files$'
    ):
        load_layers([tmp_path / "empty"], label='environment "dev"')


def test_secrets_are_not_resolved_while_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading layers resolves no reference: unset variables and missing files are fine."""
    monkeypatch.delenv("WH_PASSWORD", raising=False)
    desired = load_layers([write(tmp_path / "base.toml", BASE)])
    assert isinstance(desired.connections["warehouse"].fields["password"], SecretRef)


# --- environments -------------------------------------------------------------------------------


def test_load_environment_reads_its_layers_vars_and_exclude(tmp_path: Path) -> None:
    """An environment's layers, vars and exclude apply; a folder layer skips dconn.toml itself."""
    write(
        tmp_path / "connections.toml",
        BASE.replace('"wh.internal"', '"${vars.host}"') + '[connections.x_tmp]\nconn_type = "http"\n',
    )
    write(
        tmp_path / "dconn.toml",
        '[environments.dev]\nconfig = ["."]\nvars = { host = "wh-dev" }\nexclude = ["*_tmp", "nothing"]\n',
    )
    env = load_project(tmp_path / "dconn.toml").environments["dev"]
    desired = load_environment(env)
    assert list(desired.connections) == ["warehouse"]
    assert desired.connections["warehouse"].fields["host"] == "wh-dev"
    assert desired.files == (tmp_path / "connections.toml",)
    assert desired.warnings == ('environment "dev": exclude pattern "nothing" matches no key of the layers',)


def test_load_environment_names_a_missing_layer(tmp_path: Path) -> None:
    """A missing layer of an environment is an error naming the environment and the path."""
    write(tmp_path / "dconn.toml", '[environments.staging]\nconfig = ["connections/", "overlays/stagin/"]\n')
    write(tmp_path / "connections" / "c.toml", BASE)
    with pytest.raises(ProjectError, match=r'environment "staging": layer .*overlays/stagin does not exist'):
        load_environment(load_project(tmp_path / "dconn.toml").environments["staging"])


def test_example_project_loads_every_environment() -> None:
    """examples/environments: each environment loads, with its vars, overlays and exclude applied."""
    project = load_project(EXAMPLE / "dconn.toml")
    assert sorted(project.environments) == ["production", "staging"] and project.warnings == ()
    loaded = {name: load_environment(env) for name, env in project.environments.items()}
    for desired in loaded.values():
        assert desired.warnings == ()
        assert [f for f in check_types(desired, True) if f.severity != "note"] == []
    staging, production = loaded["staging"].connections, loaded["production"].connections
    assert sorted(staging) == ["aws_analytics", "slack_alerts", "warehouse", "warehouse_sandbox"]
    assert "warehouse_sandbox" not in production
    assert (staging["warehouse"].fields["host"], staging["warehouse"].fields["port"]) == (
        "wh-staging.internal",
        5433,
    )
    assert (production["warehouse"].fields["host"], production["warehouse"].fields["port"]) == (
        "wh.internal",
        5432,
    )
    assert staging["warehouse"].fields["extra"]["sslmode"] == "prefer"
    assert production["warehouse"].fields["extra"]["sslmode"] == "verify-full"
    assert production["warehouse"].fields["extra"]["application_name"] == "airflow-production"
    assert production["warehouse"].fields["login"] == "etl_prod"
    assert production["aws_analytics"].fields["extra"] == {
        "region_name": "eu-west-1",
        "role_arn": "arn:aws:iam::123456789012:role/airflow-production",
    }
    assert (loaded["staging"].settings.prune, loaded["production"].settings.prune) == (False, True)
    assert (
        origin_of(production["warehouse"], ("login",))
        == EXAMPLE / "overlays" / "production" / "warehouse.toml"
    )
    assert origin_of(production["warehouse"], ("host",)) == EXAMPLE / "connections" / "warehouse.toml"


# --- every kind the document will have ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "field", "expected"),
    [
        ("variables", "value", {"a": 1, "b": {"c": 2, "d": 3}}),
        ("pools", "value", {"b": {"d": 3}}),
        ("connections", "extra", {"a": 1, "b": {"c": 2, "d": 3}}),
        ("connections", "login", {"b": {"d": 3}}),
    ],
)
def test_merge_rules_per_kind(kind: str, field: str, expected: dict[str, Any]) -> None:
    """extra and a variable's table value merge recursively; any other field (and kind) is replaced."""
    base = _Declared({field: {"a": 1, "b": {"c": 2}}}, Path("base.toml"), {(field,): Path("base.toml")})
    over = _Declared({field: {"b": {"d": 3}}}, Path("over.toml"), {(field,): Path("over.toml")})
    _override(kind, base, over)
    assert base.fields[field] == expected
