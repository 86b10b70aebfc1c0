"""Convert between rows as Airflow stores them and dconn's normalized Values.

Writing follows Airflow's Connection model: `extra` is `json.dumps(dict)`; password and
extra are Fernet tokens when a key is set, with `is_encrypted`/`is_extra_encrypted` set to
match; without a key both are stored in clear with the flags false.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from declarative_conns.core.crypto import Digester, KeyRing
from declarative_conns.core.diff import DIGEST_KEY
from declarative_conns.core.model import FIELDS, JSON_SCALARS, Path, StoredRow, Values, normalize_fields
from declarative_conns.core.sensitive import is_sensitive_path, redact
from declarative_conns.errors import DecryptionError

#: Columns of the stored row that a fingerprint covers (with the managed fields).
FLAG_COLUMNS = ("is_encrypted", "is_extra_encrypted")


def decode_rows(raws: Iterable[Mapping[str, Any]], keyring: KeyRing, digester: Digester) -> list[StoredRow]:
    """Decrypt and normalize every row; report every row no key decrypts, by conn_id."""
    rows: list[StoredRow] = []
    failed: list[str] = []
    for raw in raws:
        try:
            rows.append(decode_row(raw, keyring, digester))
        except DecryptionError:
            failed.append(f"{raw['conn_id']} (row {raw['id']})")
    if failed:
        shown = ", ".join(failed[:10]) + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
        reason = (
            "no Fernet key is set" if not keyring.enabled else "no key of the Fernet key ring decrypts them"
        )
        raise DecryptionError(
            f"{len(failed)} connection row{'s' if len(failed) != 1 else ''} cannot be decrypted ({reason}): "
            f"{shown}; is this the deployment's fernet_key? Nothing was changed"
        )
    return rows


def decode_row(raw: Mapping[str, Any], keyring: KeyRing, digester: Digester) -> StoredRow:
    """Decrypt and normalize one stored row."""
    conn_id = raw["conn_id"] if raw["conn_id"] is not None else ""
    fields = {name: raw.get(name) for name in FIELDS}
    key_index: int | None = None
    secret_paths: set[Path] = set()
    if raw.get("password") and raw.get("is_encrypted"):
        fields["password"], key_index = keyring.decrypt(raw["password"], conn_id=conn_id, what="password")
    extra_text = raw.get("extra")
    if extra_text and raw.get("is_extra_encrypted"):
        extra_text, index = keyring.decrypt(extra_text, conn_id=conn_id, what="extra")
        key_index = max(key_index or 0, index)
    fields["extra"] = _parse_extra(extra_text, secret_paths)
    return StoredRow(
        row_id=int(raw["id"]),
        conn_id=conn_id,
        values=Values(normalize_fields(fields), frozenset(secret_paths)),
        fingerprint=fingerprint(raw, digester),
        key_index=key_index,
    )


def _parse_extra(text: str | None, secret_paths: set[Path]) -> Any:
    """Parse a stored extra; text that is not JSON is kept whole and treated as secret."""
    if text is None or text == "":
        return None
    try:
        return json.loads(text)
    except ValueError:
        secret_paths.add(("extra",))
        return text


def fingerprint(raw: Mapping[str, Any], digester: Digester) -> str:
    """Return a keyed digest of a row exactly as stored, to notice any change to it."""
    stored: list[Any] = [raw.get(c) for c in ("id", "conn_id", *FIELDS)]
    stored += [bool(raw.get(c)) for c in FLAG_COLUMNS]
    return digester.digest(stored)


def encode_values(values: Values, columns: Iterable[str], keyring: KeyRing) -> dict[str, Any]:
    """Return the column values Airflow would store for these connection values."""
    row: dict[str, Any] = {name: values.get(name) for name in columns if name in FIELDS}
    password = values.get("password")
    extra = values.get("extra")
    extra_text = None if extra is None else (extra if isinstance(extra, str) else json.dumps(extra))
    row["is_encrypted"] = bool(password) and keyring.enabled
    row["is_extra_encrypted"] = bool(extra_text) and keyring.enabled
    row["password"] = keyring.encrypt(password) if password and keyring.enabled else password
    row["extra"] = keyring.encrypt(extra_text) if extra_text and keyring.enabled else extra_text
    return row


def recorded_form(values: Values, digester: Digester, columns: Iterable[str]) -> dict[str, Any]:
    """Return the values as a state file records them: secrets become keyed digests."""
    out: dict[str, Any] = {}
    fields, secret_paths = values.fields, values.secret_paths

    def digest(value: object) -> object:
        return {DIGEST_KEY: digester.digest(value)}

    for name in columns:
        value = fields.get(name)
        if value is None or name not in _FIELD_SET:
            continue
        path = (name,)
        # What redact returns, the common cases first: it runs for every field of every row.
        if name in _NAMED_PLAINLY and value.__class__ in JSON_SCALARS:
            # Neither password nor extra: secret only when a reference gives it.
            out[name] = digest(value) if secret_paths and path in secret_paths else value
        elif is_sensitive_path(path, secret_paths):
            out[name] = digest(value)
        elif isinstance(value, (dict, list)):
            out[name] = redact(value, path, secret_paths, digest)
        else:
            out[name] = value
    return out


_FIELD_SET = frozenset(FIELDS)
#: Fields whose name never makes them secret (is_sensitive_path: password and extra's keys do).
_NAMED_PLAINLY = _FIELD_SET - {"password", "extra"}
