"""The recorded form of an object: its values as state and plan files keep them, secrets as digests.

A recorded form is plain JSON: every secret value is replaced by `{"$digest": "<hex>"}`, a keyed
HMAC (core.crypto.Digester), so files can tell whether a secret changed without holding it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from declarative_conns.core.crypto import Digester
from declarative_conns.core.kinds import Kind
from declarative_conns.core.model import JSON_SCALARS, Path, StoredObject, Values, same_json
from declarative_conns.core.sensitive import is_sensitive_path, redact

#: The key of a digest object: {"$digest": "<hex>"}.
DIGEST_KEY = "$digest"
#: Beside DIGEST_KEY when the secret is JSON stored as text (a variable's table value).
JSON_MARK = "$json"

Form = dict[str, Any]


def recorded_form(values: Values, digester: Digester, kind: Kind, fields: Sequence[str]) -> Form:
    """Return the values as files record them: secrets become keyed digests."""
    out: Form = {}
    secret_paths = values.secret_paths
    secret = _secret_fields(kind, secret_paths, tuple(fields))

    def digest(value: object) -> object:
        return {DIGEST_KEY: digester.digest(value)}

    for name in fields:
        value = values.fields.get(name)
        if value is None:
            continue
        if name in secret:
            out[name] = digest(value)
            if name in kind.json_text_fields and isinstance(value, (dict, list)):
                out[name][JSON_MARK] = True  # stored as text: parse it to compare
        elif value.__class__ in JSON_SCALARS:
            out[name] = value
        else:
            out[name] = redact(value, (name,), secret_paths, kind, digest)
    return out


@lru_cache(maxsize=1024)
def _secret_fields(kind: Kind, secret_paths: frozenset[Path], fields: tuple[str, ...]) -> frozenset[str]:
    """Return the fields whose whole value is secret for objects with these secret paths.

    Objects of a plan share a few sets of secret paths, so this is worked out once per set.
    """
    return frozenset(name for name in fields if is_sensitive_path((name,), secret_paths, kind))


def is_digest(value: Any) -> bool:
    """Tell whether a recorded value is a secret's digest object."""
    return isinstance(value, dict) and DIGEST_KEY in value and value.keys() <= {DIGEST_KEY, JSON_MARK}


def digest_paths(form: Mapping[str, Any]) -> frozenset[Path]:
    """Return the paths of a recorded form where a secret's digest stands."""
    found: list[Path] = []
    stack: list[tuple[Any, Path]] = [(dict(form), ())]
    while stack:
        value, path = stack.pop()
        if is_digest(value):
            found.append(path)
        elif isinstance(value, dict):
            stack.extend(
                (item, (*path, key)) for key, item in value.items() if isinstance(item, (dict, list))
            )
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value) if isinstance(item, (dict, list)))
    return frozenset(found)


def with_recorded_secrets(values: Values, form: Mapping[str, Any]) -> Values:
    """Return the values with every path the record holds as a digest marked secret.

    A value declared through a secret reference (a `login` from_env, say) is recorded as a digest
    although the target holds it in clear; it must be digested there too to compare.
    """
    paths = digest_paths(form)
    if paths <= values.secret_paths:
        return values
    return Values(values.fields, values.secret_paths | paths)


def snapshot_entries(
    objects: Sequence[StoredObject],
    digester: Digester,
    kinds: Mapping[str, Kind],
    fields: Mapping[str, Sequence[str]],
    declared: Mapping[Any, Values] | None = None,
    recorded: Mapping[Any, Form] | None = None,
    previous: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Return the state's snapshot of every stored object: ids, fingerprints, fields (secrets digested).

    A stored object cannot tell which of its fields came from a secret reference; the declared
    object of the same address can, so its secret paths are digested in the stored one too.
    `recorded` holds declared objects already in recorded form: an object holding exactly those
    declared values (one dconn just wrote) takes that form as it is. An entry equal to one of
    `previous` (the last snapshot's) is that entry itself: a plan that finds nothing changed
    keeps one copy of each, not two.
    """
    declared = declared or {}
    recorded = recorded or {}
    before = {(e["kind"], e["key"], e["id"]): e for e in previous}
    entries: list[dict[str, Any]] = []
    for obj in objects:
        want = declared.get(obj.address)
        form = recorded.get(obj.address)
        if form is None or obj.values is not want:
            values = obj.values
            if want is not None and not want.secret_paths <= values.secret_paths:
                values = Values(values.fields, values.secret_paths | want.secret_paths)
            kind = kinds[obj.address.kind]
            form = recorded_form(values, digester, kind, fields[obj.address.kind])
        old = before.get((obj.address.kind, obj.address.key, obj.row_id))
        if old is not None and old["fingerprint"] == obj.fingerprint and same_json(old["fields"], form):
            entries.append(old)  # type: ignore[arg-type]
            continue
        entries.append(
            {
                "kind": obj.address.kind,
                "key": obj.address.key,
                "id": obj.row_id,
                "fingerprint": obj.fingerprint,
                "fields": form,
            }
        )
    return entries
