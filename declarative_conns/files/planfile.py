"""Saved plans (`dconn plan --out FILE`): a self-contained, authenticated document.

A plan file holds the declared objects with their secret references (never their values),
literal secrets encrypted with the target's Fernet key, keyed digests of every resolved secret
and of every stored object the plan was computed against, and the plan itself. The whole file
is authenticated with an HMAC keyed from the target's Fernet key (or `DCONN_PLAN_KEY` where
there is none): `dconn apply FILE` checks it before anything in it is used — a hand-edited
file is refused and none of its references is resolved or command run.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from declarative_conns import __version__
from declarative_conns.core.crypto import KeyRing
from declarative_conns.core.kinds import BY_NAME
from declarative_conns.core.model import Address, SecretRef
from declarative_conns.core.sensitive import is_sensitive_path
from declarative_conns.errors import InputError, PlanIsStale
from declarative_conns.files.atomic import atomic_write, now, read_json_file

PLAN_FILE_KIND = "dconn-plan"
PLAN_FILE_VERSION = 2
#: The environment variable holding the key of plan files where the target has no Fernet key.
PLAN_KEY_VARIABLE = "DCONN_PLAN_KEY"


def plan_keys(keyring: KeyRing, environ: Mapping[str, str] | None = None) -> list[bytes]:
    """Return the keys a plan file may be authenticated with, the signing key first.

    The Fernet keys of the ring (any may verify, after a rotation), then DCONN_PLAN_KEY.
    """
    env = os.environ if environ is None else environ
    keys = [b"fernet:" + key for key in keyring.keys]
    if env.get(PLAN_KEY_VARIABLE):
        keys.append(b"shared:" + env[PLAN_KEY_VARIABLE].encode("utf-8"))
    return keys


def _mac(key: bytes, document: Mapping[str, Any]) -> str:
    """Return the HMAC of a plan document (without its own `mac` member)."""
    derived = hashlib.sha256(b"dconn-plan-v2\0" + key).digest()
    body = {k: v for k, v in document.items() if k != "mac"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(derived, text.encode("utf-8"), "sha256").hexdigest()


def write_plan(path: Path, document: dict[str, Any], keys: Sequence[bytes]) -> None:
    """Write an authenticated plan file (private, atomic)."""
    if not keys:
        raise InputError(
            f"a saved plan must be authenticated, and this target has no Fernet key: set {PLAN_KEY_VARIABLE} "
            "to a secret the plan and apply jobs share"
        )
    header = {"kind": PLAN_FILE_KIND, "format_version": PLAN_FILE_VERSION, "dconn_version": __version__}
    document = roundtrip({**header, "created_at": now(), **document})  # exactly as it will read back
    document["mac"] = _mac(keys[0], document)
    text = json.dumps(document, indent=1, ensure_ascii=False, default=_jsonable) + "\n"
    atomic_write(path, text.encode("utf-8"))


def read_plan(path: Path, keys: Sequence[bytes]) -> dict[str, Any]:
    """Read a plan file and check its authentication before anything in it is used."""
    document = read_json_file(path, "plan file")
    if not isinstance(document, dict) or document.get("kind") != PLAN_FILE_KIND:
        raise InputError(f"{path}: not a dconn plan file (save one with `dconn plan --out FILE`)")
    if document.get("format_version") != PLAN_FILE_VERSION:
        raise InputError(
            f"{path}: plan file format {document.get('format_version')} is not supported by this dconn; plan again"
        )
    mac = document.get("mac")
    if not keys:
        raise InputError(
            f"{path}: cannot check the plan's authentication: this target has no Fernet key; set "
            f"{PLAN_KEY_VARIABLE} to the key the plan was saved with"
        )
    if not isinstance(mac, str) or not any(hmac.compare_digest(mac, _mac(key, document)) for key in keys):
        raise InputError(
            f"{path}: the plan file fails its authentication check (edited, or saved with another key); "
            "nothing in it was used: plan again"
        )
    return document


def encode_fields(address: Address, fields: Mapping[str, Any], keyring: KeyRing) -> dict[str, Any]:
    """Return declared fields for a plan file: references kept, literal secrets encrypted."""
    kind = BY_NAME[address.kind]

    def encode(value: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(value, SecretRef):
            return {"$ref": value.to_json(), "base_dir": str(Path(value.base_dir).resolve())}
        if value is not None and is_sensitive_path(path, kind.key_secret_paths(address.key), kind):
            if not keyring.enabled:
                raise InputError(
                    f"{address} holds a literal secret at {'.'.join(map(str, path))}: a saved plan needs a "
                    "Fernet key to keep it encrypted; set one, or use a secret reference"
                )
            return {"$encrypted": keyring.encrypt(json.dumps(value))}
        if isinstance(value, dict):
            return {k: encode(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [encode(v, (*path, i)) for i, v in enumerate(value)]
        return value

    return {name: encode(value, (name,)) for name, value in fields.items()}


def decode_fields(address: Address, fields: Mapping[str, Any], keyring: KeyRing) -> dict[str, Any]:
    """Turn a plan file's stored fields back into declared ones (references, decrypted literals)."""

    def decode(value: Any) -> Any:
        if isinstance(value, dict) and "$ref" in value:
            kind, target = next(iter(value["$ref"].items()))
            return SecretRef(
                kind.removeprefix("from_"),
                tuple(target) if isinstance(target, list) else target,
                value["base_dir"],
            )
        if isinstance(value, dict) and "$encrypted" in value:
            text, _ = keyring.decrypt(
                value["$encrypted"], owner=str(address), what="secret saved in the plan"
            )
            return json.loads(text)
        if isinstance(value, dict):
            return {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    return {name: decode(value) for name, value in fields.items()}


def check_same(saved: Mapping[str, Any], fresh: Mapping[str, Any], state_path: str) -> None:
    """Refuse a plan whose state, keys, secrets, objects or actions differ from the fresh ones."""
    if saved.get("lineage") != fresh["lineage"]:
        raise PlanIsStale(
            f"the plan was made with another state (lineage {saved.get('lineage')}), not "
            f"{state_path}; pass --state with the state the plan was made with"
        )
    if saved["digest_key_id"] != fresh["digest_key_id"]:
        raise PlanIsStale("the plan is stale: the Fernet key changed since it was made; plan again")
    if saved["secret_digests"] != fresh["secret_digests"]:
        raise PlanIsStale("the plan is stale: a secret it uses changed since it was made; plan again")
    if saved["expected"] != fresh["expected"] or saved["managed"] != fresh["managed"]:
        raise PlanIsStale(
            "the plan is stale: objects changed since it was made; nothing was changed, run dconn plan again"
        )
    if roundtrip(saved["plan"]["actions"]) != roundtrip(fresh["plan"]["actions"]):
        raise PlanIsStale("the plan is stale: it no longer gives the same actions; plan again")


def roundtrip(value: Any) -> Any:
    """Return a JSON value as it reads back (to compare a saved plan with a fresh one)."""
    return json.loads(json.dumps(value, default=_jsonable))


def _jsonable(value: object) -> object:
    """Serialize the secret marker of redacted plan values."""
    return "(sensitive value)" if repr(value) == "(sensitive value)" else str(value)
