"""Convert between rows as Airflow stores them and dconn's normalized Values, for every kind.

Writing follows Airflow's models: a connection's `extra` is `json.dumps(dict)`, a variable
declared as a table or array is stored as JSON text; `password`, `extra` and a variable's `val`
are Fernet tokens when a key is set, with their flag (`is_encrypted`, `is_extra_encrypted`) set
to match; without a key they are stored in clear with the flags false.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from declarative_conns.core.crypto import Digester, KeyRing
from declarative_conns.core.kinds import BY_NAME, Kind
from declarative_conns.core.model import (
    MAX_NESTING,
    Address,
    Path,
    StoredObject,
    Values,
    address_of,
    frozen_paths,
    nesting_exceeds,
)
from declarative_conns.errors import DecryptionError
from declarative_conns.targets.database.tables import KindTable


class TooDeep(Exception):
    """Raise when a stored value nests deeper than dconn reads (core.model.MAX_NESTING)."""


@dataclass(frozen=True)
class RowLayout:
    """Where a kind's fields live in its table, worked out once per read rather than once per row."""

    #: (field, column) for every field of the kind.
    fields: tuple[tuple[str, str], ...]
    #: (column, flag column, field) for every encrypted column.
    encrypted: tuple[tuple[str, str, str], ...]
    #: The columns a fingerprint covers, in order, and the flag columns after them.
    stored: tuple[str, ...]
    flags: tuple[str, ...]


def row_layout(spec: KindTable, kind: Kind) -> RowLayout:
    """Return how a kind's rows are laid out in its table."""
    return RowLayout(
        fields=tuple((name, spec.column(name)) for name in kind.fields),
        encrypted=tuple((c, flag, _field_of(spec, kind, c)) for c, flag in spec.encrypted.items()),
        stored=("id", spec.key_column, *(spec.column(f) for f in kind.fields)),
        flags=tuple(spec.encrypted.values()),
    )


def decode_rows(
    raws: Iterable[Mapping[str, Any]], spec: KindTable, keyring: KeyRing, digester: Digester
) -> tuple[list[StoredObject], list[tuple[Address, str]]]:
    """Decrypt and normalize every row of a kind; return them, and the rows left alone with why.

    Rows no key decrypts are one error naming each; a row nested too deep to read is left out of
    the plan with a warning naming it, while every other row still plans.
    """
    kind = BY_NAME[spec.kind]
    objects: list[StoredObject] = []
    failed: list[str] = []
    skipped: list[tuple[Address, str]] = []
    layout = row_layout(spec, kind)
    for raw in raws:
        try:
            objects.append(decode_row(raw, spec, kind, keyring, digester, layout))
        except DecryptionError:
            failed.append(f"{_key(raw, spec)} (row {raw['id']})")
        except (TooDeep, RecursionError):
            key = _key(raw, spec)
            skipped.append(
                (
                    Address(kind.name, key),
                    f'{kind.name} "{key}" (row {raw["id"]}) nests deeper than dconn reads (100 levels): '
                    "it is left alone; simplify it in Airflow",
                )
            )
    if failed:
        shown = ", ".join(failed[:10]) + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
        reason = (
            "no Fernet key is set" if not keyring.enabled else "no key of the Fernet key ring decrypts them"
        )
        raise DecryptionError(
            f"{len(failed)} {kind.name} row{'s' if len(failed) != 1 else ''} cannot be decrypted ({reason}): "
            f"{shown}; is this the deployment's fernet_key? Nothing was changed"
        )
    return objects, skipped


def _key(raw: Mapping[str, Any], spec: KindTable) -> str:
    """Return a row's key ('' for Airflow 1.10's NULL conn_id)."""
    key = raw.get(spec.key_column)
    return "" if key is None else str(key)


def decode_row(
    raw: Mapping[str, Any],
    spec: KindTable,
    kind: Kind,
    keyring: KeyRing,
    digester: Digester,
    layout: RowLayout | None = None,
) -> StoredObject:
    """Decrypt and normalize one stored row."""
    layout = layout or row_layout(spec, kind)
    key = _key(raw, spec)
    owner = f'{kind.name} "{key}"'
    fields = {name: raw.get(column) for name, column in layout.fields}
    key_index: int | None = None
    for column, flag, name in layout.encrypted:
        value = raw.get(column)
        if value and raw.get(flag):
            fields[name], index = keyring.decrypt(value, owner=owner, what=name)
            key_index = max(key_index or 0, index)
    paths = kind.key_secret_paths(key)  # shared sets: most objects add nothing to them
    if "extra" in fields and kind.name == "connection":
        secret_paths: set[Path] = set(paths)
        fields["extra"] = _parse_extra(fields["extra"], secret_paths)
        paths = frozen_paths(secret_paths)
    elif kind.json_text_fields:
        for name in kind.json_text_fields:
            text = fields.get(name)
            if isinstance(text, str) and text[:1] in ("[", "{") and _deep_json(text):
                raise TooDeep(name)
    return StoredObject(
        address_of(kind.name, key),
        int(raw["id"]),
        Values(kind.normalize(fields), paths),
        fingerprint(raw, spec, kind, digester, layout),
        key_index,
    )


def _field_of(spec: KindTable, kind: Kind, column: str) -> str:
    """Return the field a column holds."""
    return next((f for f in kind.fields if spec.column(f) == column), column)


def _parse_extra(text: Any, secret_paths: set[Path]) -> Any:
    """Parse a stored extra; text that is not JSON is kept whole and treated as secret."""
    if text is None or text == "":
        return None
    try:
        value = json.loads(text)
    except ValueError:
        secret_paths.add(("extra",))
        return text
    if _may_nest_too_deep(text) and nesting_exceeds(value):
        raise TooDeep("extra")
    return value


def _may_nest_too_deep(text: str) -> bool:
    """Tell whether JSON text has enough brackets to nest deeper than the limit.

    Each level opens a bracket, so text with no more `{` and `[` than the limit cannot exceed it
    (brackets inside strings only count too many): most values need no walk at all.
    """
    return text.count("{") + text.count("[") > MAX_NESTING


def _deep_json(text: str) -> bool:
    """Tell whether JSON text nests too deep to compare (text that is not JSON is a plain string)."""
    if not _may_nest_too_deep(text):
        return False
    try:
        return nesting_exceeds(json.loads(text))
    except ValueError:
        return False


def fingerprint(
    raw: Mapping[str, Any], spec: KindTable, kind: Kind, digester: Digester, layout: RowLayout | None = None
) -> str:
    """Return a keyed digest of a row exactly as stored, to notice any change to it."""
    if layout is None:
        columns: Iterable[str] = ("id", spec.key_column, *(spec.column(f) for f in kind.fields))
        flags: Iterable[str] = spec.encrypted.values()
    else:
        columns, flags = layout.stored, layout.flags
    stored: list[Any] = [raw.get(c) for c in columns]
    stored += [bool(raw.get(flag)) for flag in flags]
    return digester.digest(stored)


def encode_values(
    values: Values, spec: KindTable, kind: Kind, fields: Sequence[str], keyring: KeyRing
) -> dict[str, Any]:
    """Return the column values Airflow would store for these values (encrypted where it encrypts)."""
    row: dict[str, Any] = {}
    for name in fields:
        value = values.fields.get(name)
        if isinstance(value, (dict, list)):
            value = kind.stored_text(value)
        elif name in kind.boolean_fields:
            value = bool(value)
        row[spec.column(name)] = value
    for column, flag in spec.encrypted.items():
        if column in row:
            text = row[column]
            row[flag] = bool(text) and keyring.enabled
            if text and keyring.enabled:
                row[column] = keyring.encrypt(text)
    return row


def reencrypted(raw: Mapping[str, Any], spec: KindTable, keyring: KeyRing) -> dict[str, Any]:
    """Return the update that re-encrypts a row's secrets with the first key, changing nothing else."""
    row: dict[str, Any] = {"id": raw["id"]}
    owner = f'{spec.kind} "{_key(raw, spec)}"'
    for column, flag in spec.encrypted.items():
        value = raw.get(column)
        if value and raw.get(flag):
            text, _ = keyring.decrypt(value, owner=owner, what=column)
            value = keyring.encrypt(text)
        row[column], row[flag] = value, bool(raw.get(flag))
    return row


def holds_no_secret(extra_text: str, kind: Kind) -> bool:
    """Tell whether a clear-text extra is a JSON object without any sensitive key."""
    from declarative_conns.core.sensitive import redact

    try:
        parsed = json.loads(extra_text)
    except ValueError:
        return False
    return isinstance(parsed, dict) and redact(parsed, ("extra",), frozenset(), kind) == parsed


def _public_in_clear(column: str, value: str, kind: Kind) -> bool:
    """Tell whether a value stored in clear in an encrypted column holds no secret by Airflow's rules.

    A variable's value is secret only under a sensitive key or from a reference (the caller's
    `referenced`); an extra, when it is a JSON object without a sensitive key.
    """
    if kind.secret_when_key_sensitive:
        return True
    return column == "extra" and holds_no_secret(value, kind)


def clear_secrets_digested(
    raw: Mapping[str, Any], spec: KindTable, declared: Values | None, digester: Digester
) -> dict[str, Any]:
    """Return a stored row for a backup, keeping no secret in clear.

    Fernet tokens are kept as they are. Values stored in clear are replaced by digests when they
    are secret: an encrypted column's value Airflow stored in clear (no key) — unless it is an
    extra without any sensitive key, or the value of a variable whose key is not sensitive —, a
    variable with a sensitive key, or a field the
    configuration fills from a secret reference.
    """
    kind = BY_NAME[spec.kind]
    row = dict(raw)
    referenced = {spec.column(str(p[0])) for p in declared.secret_paths} if declared else set()
    key = row.get(spec.key_column)
    referenced |= {spec.column(str(p[0])) for p in kind.key_secret_paths("" if key is None else str(key))}
    for column, flag in spec.encrypted.items():
        value = row.get(column)
        if not value or row.get(flag):
            continue
        if column in referenced or not _public_in_clear(column, str(value), kind):
            row[column] = {"$digest": digester.digest(value)}
    for column in referenced - set(spec.encrypted):
        if row.get(column):
            row[column] = {"$digest": digester.digest(row[column])}
    return row
