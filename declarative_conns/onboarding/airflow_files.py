"""Read Airflow's own connection files and ``AIRFLOW_CONN_*`` variables into plain specs.

A spec is a dict with the keys of :data:`SPEC_FIELDS`: what Airflow itself would store in the
``connection`` table for that entry, with ``port`` an ``int`` and ``extra`` a parsed dict.

What Airflow does, and this module repeats (apache/airflow, ``airflow-core/src/airflow``):

- ``models/connection.py`` ``Connection._parse_from_uri``: ``conn-type://login:password@host:port/
  schema?query``; the scheme is lower-cased by ``urlsplit`` and normalised (``postgresql`` ->
  ``postgres``, ``-`` -> ``_``); ``type://protocol://host`` keeps ``protocol://host`` as the host;
  more than two ``://`` or credentials before the second one are invalid; login, password, host
  and schema are percent-decoded; a host that decodes to a path keeps its case; a missing host or
  schema is ``""``, a missing login or password ``None``; an empty password is ``None`` (the
  password setter ignores it); a ``__extra__`` query parameter holds the extra as JSON text and
  hides every other parameter; otherwise every query parameter becomes a string in extra (the
  last of repeated ones wins).
- ``Connection.from_json`` (``AIRFLOW_CONN_*`` and ``.env`` values that start with ``{``):
  conn_type is normalised as above, ``extra`` is a dict or its JSON text, an empty port is none.
- ``secrets/local_filesystem.py``: a file's values are URI strings or dicts of ``Connection``
  arguments (``extra`` or ``extra_dejson``, or ``uri`` with only a ``description`` beside it);
  a conn_type in such a dict is *not* normalised; a list of one value counts as that value, an
  empty list as nothing, several values are an error. ``.env`` files hold one ``ID=VALUE`` per
  line, skip empty lines and lines that start with ``#`` after optional blanks, and refuse lines
  without ``=``, an empty key or an empty value, and a key given twice.
- ``secrets/environment_variables.py``: Airflow reads ``AIRFLOW_CONN_`` + the upper-cased
  conn_id, and ``base_secrets.py`` strips the value and parses it as JSON when it starts with
  ``{``; an empty variable is no connection.

Where dconn is stricter than Airflow, on purpose: duplicate keys in a JSON or YAML file are
errors (Airflow keeps the last one silently); port must be 1-65535 (dconn's TOML rule; Airflow
stores 0); conn_type is required and the conn_id must match Airflow 3's rule; a ``.env`` value
that starts with ``{`` is read as JSON, as ``airflow connections export --serialization-format
json`` writes it (Airflow's own import would misread it as a URI). ``AIRFLOW_CONN_X`` becomes
conn_id ``x``: Airflow matches the name case-insensitively, and lower case is the convention.

Error messages name the file and the entry (conn_id, line number, variable name) but never a
value: a URI, a port or a parser's excerpt could hold a password.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from declarative_conns.core.kinds import CONN_ID_RULE, CONNECTION
from declarative_conns.errors import InputError

ConnSpec = dict[str, Any]

#: The keys of every spec, in the order dconn writes them (Airflow's files have no team_name).
SPEC_FIELDS: tuple[str, ...] = ("conn_id", *(f for f in CONNECTION.fields if f != "team_name"))
_STRING_FIELDS = ("conn_type", "description", "host", "schema", "login", "password")
#: Connection.__init__ parameters (minus team_name, which dconn convert cannot carry) + extra_dejson.
_MAPPING_KEYS = frozenset((*SPEC_FIELDS, "uri", "extra_dejson"))
_URI_COMPANIONS = ("conn_type", "host", "login", "password", "schema", "port", "extra")
_EXTRA_KEY = "__extra__"
_COMMENT = re.compile(r"\s*#")
_ENV_PREFIX = "AIRFLOW_CONN_"
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TEAM_SCOPED = re.compile(r"_[A-Za-z0-9-]{3,50}___.+")
_PORT_PROBLEM = "port must be an integer from 1 to 65535"


class _Problem(Exception):
    """Signal what is wrong with one entry; the caller adds the file and the entry's name."""


class _FileProblem(Exception):
    """Signal that a whole file is malformed, not one entry."""


def parse_connection_uri(conn_id: str, uri: str) -> ConnSpec:
    """Return the spec Airflow stores for ``Connection(conn_id=conn_id, uri=uri)``."""
    try:
        _check_conn_id(conn_id)
        return _spec(conn_id, _fields_from_uri(uri))
    except _Problem as exc:
        raise InputError(f"connection {conn_id!r}: {exc}") from None


def parse_env_vars(environ: Mapping[str, str], source: str = "the environment") -> list[ConnSpec]:
    """Return the specs of every ``AIRFLOW_CONN_<ID>`` variable, sorted by variable name."""
    specs: list[ConnSpec] = []
    problems: list[str] = []
    for name in sorted(environ):
        value = environ[name]
        if not name.startswith(_ENV_PREFIX) or not value:
            continue
        try:
            specs.append(_spec_from_env_var(name[len(_ENV_PREFIX) :], value))
        except _Problem as exc:
            problems.append(f"environment variable {name}: {exc}")
    _raise_problems(source, problems)
    return specs


def read_variables_file(path: Path) -> dict[str, str]:
    """Return the variables of a shell or Docker Compose env file (``NAME=value`` per line).

    Blank lines and ``#`` comments are skipped, an ``export`` prefix is allowed, and one pair of
    matching quotes around a value is removed; nothing is expanded. A later line wins, as in a shell.
    """
    text = _read_text(path)
    variables: dict[str, str] = {}
    problems: list[str] = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip() or _COMMENT.match(line):
            continue
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        if not sep or not _VARIABLE.fullmatch(name.strip()):
            problems.append(f"line {line_no}: expected NAME=VALUE")
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        variables[name.strip()] = value
    _raise_problems(str(path), problems)
    return variables


def parse_airflow_file(path: Path) -> list[ConnSpec]:
    """Return the specs of a file written by ``airflow connections export`` (.json/.yaml/.env)."""
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml", ".env"):
        raise InputError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; "
            "Airflow's connection files end in .env, .json, .yaml or .yml"
        )
    text = _read_text(path)
    entries: Iterable[tuple[str, Any, Any]]
    if suffix == ".env":
        entries = _env_file_entries(path, text)
    else:
        loaded = _load_json(path, text) if suffix == ".json" else _load_yaml(path, text)
        entries = _mapping_entries(loaded)
    return _specs_from_entries(str(path), entries)


# -- files ---------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    """Read a UTF-8 file (a byte order mark is dropped), or raise InputError saying why not."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file: {exc.strerror or type(exc).__name__}") from None


def _load_json(path: Path, text: str) -> Any:
    """Parse JSON text, refusing duplicate keys that Airflow would silently drop."""
    if not text.strip():
        raise InputError(f"{path}: the file is empty")
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except _Problem as exc:
        raise InputError(f"{path}: {exc}") from None


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Build a JSON object, raising on a key given twice."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Problem(f"the key {key!r} appears twice in one JSON object")
        result[key] = value
    return result


def _load_yaml(path: Path, text: str) -> Any:
    """Parse YAML text safely, refusing duplicate keys that Airflow would silently drop."""
    try:
        import yaml
    except ImportError:
        raise InputError(
            f"{path}: reading YAML needs PyYAML: pip install 'declarative-conns[yaml]'"
        ) from None
    if not text.strip():
        raise InputError(f"{path}: the file is empty")

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            # Merge keys (<<) may be overridden legitimately; only the node's own keys count.
            own = [key for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge"]
            keys = [self.construct_object(key, deep=True) for key in own]
            for index, key in enumerate(keys):
                if key in keys[:index]:
                    raise _Problem(f"the key {key!r} appears twice in one YAML mapping")
            return super().construct_mapping(node, deep=deep)

    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        # Only the mark and the problem: the excerpt (str(exc)) can quote a password.
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError(f"{path}: invalid YAML{where}: {exc.problem}") from None
    except yaml.YAMLError:
        raise InputError(f"{path}: invalid YAML") from None
    except _Problem as exc:
        raise InputError(f"{path}: {exc}") from None


def _mapping_entries(loaded: Any) -> Iterator[tuple[str, Any, Any]]:
    """Yield (entry name, conn_id, value) for each conn_id of a parsed JSON or YAML file."""
    if not isinstance(loaded, dict):
        raise _FileProblem("the file must hold a mapping of conn_id to connection")
    for conn_id, value in loaded.items():
        yield f"connection {conn_id!r}", conn_id, value


def _env_file_entries(path: Path, text: str) -> list[tuple[str, Any, Any]]:
    """Return (entry name, conn_id, value) per line of a ``.env`` file, as Airflow reads it."""
    problems: list[str] = []
    lines_by_key: dict[str, list[tuple[int, str]]] = {}
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line or _COMMENT.match(line):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            problems.append(f"line {line_no}: expected CONN_ID=URI or CONN_ID={{JSON}}, no '='")
        elif not key:
            problems.append(f"line {line_no}: the conn_id before '=' is empty")
        elif not value:
            problems.append(f"line {line_no} ({key!r}): the value after '=' is empty")
        else:
            lines_by_key.setdefault(key, []).append((line_no, value))
    entries: list[tuple[str, Any, Any]] = []
    for key, found in lines_by_key.items():
        if len(found) > 1:
            numbers = ", ".join(str(line_no) for line_no, _ in found)
            problems.append(f"conn_id {key!r} is defined on lines {numbers}; Airflow refuses that")
        else:
            line_no, value = found[0]
            entries.append((f"line {line_no} ({key!r})", key, value))
    _raise_problems(str(path), problems)
    return entries


def _specs_from_entries(source: str, entries: Iterable[tuple[str, Any, Any]]) -> list[ConnSpec]:
    """Build every entry's spec, collecting all problems into one error naming each entry."""
    specs: list[ConnSpec] = []
    problems: list[str] = []
    try:
        for name, conn_id, value in entries:
            try:
                spec = _spec_from_value(conn_id, value)
            except _Problem as exc:
                problems.append(f"{name}: {exc}")
            else:
                if spec is not None:
                    specs.append(spec)
    except _FileProblem as exc:
        raise InputError(f"{source}: {exc}") from None
    _raise_problems(source, problems)
    return specs


def _raise_problems(source: str, problems: list[str]) -> None:
    """Raise one InputError listing every problem found in a source, if there are any."""
    if len(problems) == 1:
        raise InputError(f"{source}: {problems[0]}")
    if problems:
        raise InputError(f"{source}: {len(problems)} problems:\n  " + "\n  ".join(problems))


# -- entries -------------------------------------------------------------------------------


def _spec_from_env_var(suffix: str, value: str) -> ConnSpec:
    """Return the spec of ``AIRFLOW_CONN_<suffix>``, as Airflow's environment backend reads it."""
    if suffix != suffix.upper():
        raise _Problem(
            "Airflow never reads it: it looks up AIRFLOW_CONN_ followed by the upper-cased conn_id"
        )
    if _TEAM_SCOPED.fullmatch(suffix):
        raise _Problem("team-scoped connections (AIRFLOW_CONN__<TEAM>___<ID>) are not supported")
    spec = _spec_from_value(suffix.lower(), value.strip())
    assert spec is not None  # a non-empty string always yields a spec or a problem
    return spec


def _spec_from_value(conn_id: Any, value: Any) -> ConnSpec | None:
    """Return the spec of one file entry: a URI, a JSON text, a dict or a list of one of those."""
    if not isinstance(conn_id, str):
        raise _Problem("the conn_id must be a string")
    _check_conn_id(conn_id)
    if isinstance(value, list):
        if not value:
            return None  # Airflow loops over the list: no value, no connection
        if len(value) > 1:
            raise _Problem(f"has {len(value)} values; Airflow refuses a conn_id given twice")
        value = value[0]
    if isinstance(value, str):
        if value.lstrip().startswith("{"):
            return _spec(conn_id, _fields_from_json_text(conn_id, value))
        return _spec(conn_id, _fields_from_uri(value))
    if isinstance(value, dict):
        return _spec(conn_id, _fields_from_mapping(conn_id, value, normalize_type=False))
    raise _Problem("must be a connection URI string or a mapping of connection fields")


def _check_conn_id(conn_id: str) -> None:
    """Refuse a conn_id that Airflow 3 would not accept."""
    if not CONN_ID_RULE.fullmatch(conn_id):
        raise _Problem("the conn_id must be 1-250 letters, digits or _ # ! ( ) - . : / \\ (Airflow's rule)")


def _spec(conn_id: str, fields: Mapping[str, Any]) -> ConnSpec:
    """Return a spec with every key of SPEC_FIELDS, missing fields as None."""
    if not fields.get("conn_type"):
        raise _Problem("conn_type is missing")
    spec: ConnSpec = {key: fields.get(key) for key in SPEC_FIELDS}
    spec["conn_id"] = conn_id
    return spec


def _fields_from_json_text(conn_id: str, text: str) -> dict[str, Any]:
    """Return the fields of ``Connection.from_json``: a JSON object of connection fields."""
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError:
        raise _Problem("the value starts with '{' but is not valid JSON") from None
    if not isinstance(loaded, dict):
        raise _Problem("the JSON value must be an object of connection fields")
    return _fields_from_mapping(conn_id, loaded, normalize_type=True)


def _fields_from_mapping(conn_id: str, value: Mapping[str, Any], *, normalize_type: bool) -> dict[str, Any]:
    """Return the fields of a dict of Connection arguments, checked as Airflow checks them."""
    unknown = sorted(str(key) for key in value if key not in _MAPPING_KEYS)
    if unknown:
        hint = " (Airflow's key for a URI is 'uri')" if "conn_uri" in unknown else ""
        raise _Problem(f"unknown keys {', '.join(map(repr, unknown))}{hint}")
    if "extra" in value and "extra_dejson" in value:
        raise _Problem("extra and extra_dejson are mutually exclusive")
    if "conn_id" in value and value["conn_id"] != conn_id:
        raise _Problem("its conn_id field differs from the conn_id it is filed under")
    extra = _extra_from_value(value.get("extra"), value.get("extra_dejson"))
    uri = _string(value, "uri")
    if uri:
        if extra or any(value.get(key) for key in _URI_COMPANIONS):
            raise _Problem("uri cannot be mixed with other fields except description")
        fields = _fields_from_uri(uri)
        fields["description"] = _string(value, "description")
        return fields
    fields = {key: _string(value, key) for key in _STRING_FIELDS}
    if normalize_type and fields["conn_type"]:
        fields["conn_type"] = _normalize_conn_type(fields["conn_type"])
    if fields["password"] == "":
        fields["password"] = None  # Airflow's password setter ignores an empty value
    fields["port"] = _port(value.get("port"))
    fields["extra"] = extra
    return fields


def _string(value: Mapping[str, Any], key: str) -> str | None:
    """Return a string field of a mapping, refusing other types without naming the value."""
    item = value.get(key)
    if item is not None and not isinstance(item, str):
        raise _Problem(f"{key} must be a string (quote it in YAML)")
    return item


def _port(value: Any) -> int | None:
    """Return a port given as an int or a string of digits; empty means none, as in from_json."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise _Problem(_PORT_PROBLEM) from None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _Problem(_PORT_PROBLEM)
    return value


def _extra_from_value(extra: Any, extra_dejson: Any) -> dict[str, Any] | None:
    """Return the extra of a dict entry: JSON text or a mapping, empty meaning none."""
    if extra_dejson is not None and not isinstance(extra_dejson, dict):
        raise _Problem("extra_dejson must be a mapping")
    if extra is None or extra == "":
        extra = extra_dejson
    if isinstance(extra, str):
        return _extra_from_json_text(extra)
    if extra is None:
        return None
    if not isinstance(extra, dict):
        raise _Problem("extra must be a mapping or the JSON text of an object")
    try:
        # Airflow stores json.dumps(extra): keys become strings, and a YAML date is an error.
        normalized: dict[str, Any] = json.loads(json.dumps(extra))
    except (TypeError, ValueError):
        raise _Problem("extra holds a value that JSON cannot represent") from None
    return normalized or None


def _extra_from_json_text(text: str) -> dict[str, Any] | None:
    """Return the extra held as JSON text; Airflow requires an object, empty meaning none."""
    if not text:
        return None
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError:
        raise _Problem("extra is not valid JSON") from None
    if not isinstance(loaded, dict):
        raise _Problem("extra must be a JSON object")
    return loaded or None


# -- URIs ----------------------------------------------------------------------------------


def _normalize_conn_type(conn_type: str) -> str:
    """Return conn_type as Airflow's ``_normalize_conn_type`` spells it."""
    if conn_type == "postgresql":
        return "postgres"
    return conn_type.replace("-", "_")


def _fields_from_uri(uri: str) -> dict[str, Any]:
    """Return the fields of an Airflow connection URI, step by step as ``_parse_from_uri``."""
    schemes = uri.count("://")
    if schemes > 2:
        raise _Problem("invalid connection URI: it holds more than two '://'")
    host_with_protocol = schemes == 2
    try:
        conn_type = urlsplit(uri).scheme
        # Airflow replaces every occurrence, not only the first; keep that quirk.
        rest = uri.replace(f"{conn_type}://", "" if host_with_protocol else "//")
        parts = urlsplit(rest)
    except ValueError:
        # Never the exception text: it can quote the URI, password included.
        raise _Problem("invalid connection URI: unbalanced '[' or ']' in the host") from None
    if host_with_protocol and any(char in rest.split("://", 1)[0] for char in "@:"):
        raise _Problem("invalid connection URI: login or password before the host's protocol")
    try:
        port = parts.port
    except ValueError:
        # An unencoded '/' in a password makes its tail look like a port: do not quote it.
        raise _Problem(
            f"invalid connection URI: {_PORT_PROBLEM} "
            "(a '/', '?', '#' or '@' in a login or password must be percent-encoded)"
        ) from None
    if not conn_type:
        raise _Problem("not a connection URI: it does not start with conn-type://")
    host = _hostname(parts)
    if host and host_with_protocol:
        host = f"{parts.scheme}://{host}"
    return {
        "conn_type": _normalize_conn_type(conn_type),
        "host": host,
        "schema": unquote(parts.path[1:]),
        "login": unquote(parts.username) if parts.username else parts.username,
        "password": unquote(parts.password) if parts.password else None,
        "port": None if port is None else _port(port),
        "extra": _extra_from_query(parts.query),
    }


def _hostname(parts: SplitResult) -> str:
    """Return the host as ``_parse_netloc_to_hostname``: lower-cased unless it is a path."""
    hostname = unquote(parts.hostname or "")
    if "/" in hostname:
        hostname = parts.netloc
        if "@" in hostname:
            hostname = hostname.rsplit("@", 1)[1]
        if ":" in hostname:
            hostname = hostname.split(":", 1)[0]
        hostname = unquote(hostname)
    return hostname


def _extra_from_query(query: str) -> dict[str, Any] | None:
    """Return the extra of a URI's query: ``__extra__`` JSON, else every parameter as a string."""
    if not query:
        return None
    params = dict(parse_qsl(query, keep_blank_values=True))
    if _EXTRA_KEY in params:
        return _extra_from_json_text(params[_EXTRA_KEY])
    return params or None
