"""Save a plan with `dconn plan --out` and carry it out later with `dconn apply FILE`.

A plan file is self-contained: the desired connections with their secret references (never
their values), literal secrets encrypted with the target's Fernet key, keyed digests of every
resolved secret and of every row the plan was computed against. Apply re-resolves, re-reads
and recomputes; any difference makes the plan stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from declarative_conns import __version__
from declarative_conns.api import PlannedRun, Workspace
from declarative_conns.api import plan as compute_plan
from declarative_conns.config.loader import DesiredConnection, DesiredState, references
from declarative_conns.config.secrets import resolve_secret
from declarative_conns.core.model import SecretRef, Settings
from declarative_conns.core.sensitive import is_sensitive_path
from declarative_conns.errors import InputError, PlanIsStale, TargetError
from declarative_conns.files.state import atomic_write, now
from declarative_conns.output.report import plan_document
from declarative_conns.targets.discovery import describe_identity, target_identity

PLAN_FILE_KIND = "dconn-plan"
PLAN_FILE_VERSION = 1


def save_plan(path: Path, run: PlannedRun) -> None:
    """Write the run's plan to a private file, holding no secret in clear."""
    connections = {
        conn_id: {name: _encode(value, (name,), run, conn_id) for name, value in conn.fields.items()}
        for conn_id, conn in sorted(run.desired.connections.items())
    }
    document = {
        "kind": PLAN_FILE_KIND,
        "format_version": PLAN_FILE_VERSION,
        "dconn_version": __version__,
        "created_at": now(),
        "target": run.state.target,
        "digest_key_id": run.digester.key_id,
        "settings": _settings_json(run.desired.settings),
        "managed": sorted(run.state.managed),
        "lineage": run.state.lineage,
        "rotate": any(a.reason == "rotate" for a in run.plan.actions),
        "connections": connections,
        "secret_digests": _secret_digests(run),
        "expected": {c: [list(r) for r in rows] for c, rows in run.plan.expected.items()},
        "plan": plan_document(run.plan, run.context),
    }
    text = json.dumps(document, indent=1, ensure_ascii=False, default=_jsonable) + "\n"
    atomic_write(path, text.encode("utf-8"))


def _jsonable(value: object) -> object:
    """Serialize the secret marker of redacted plan values."""
    return "(sensitive value)" if repr(value) == "(sensitive value)" else str(value)


def _encode(value: Any, path: tuple[str | int, ...], run: PlannedRun, conn_id: str) -> Any:
    """Return a declared value for the plan file: references kept, literal secrets encrypted."""
    if isinstance(value, SecretRef):
        return {"$ref": value.to_json(), "base_dir": str(Path(value.base_dir).resolve())}
    if is_sensitive_path(path) and value is not None:
        if not run.keyring.enabled:
            raise InputError(
                f'connection "{conn_id}" holds a literal secret at {".".join(map(str, path))}: a '
                "saved plan needs a Fernet key to keep it encrypted; set one, or use a secret reference"
            )
        return {"$encrypted": run.keyring.encrypt(json.dumps(value))}
    if isinstance(value, dict):
        return {k: _encode(v, (*path, k), run, conn_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v, (*path, i), run, conn_id) for i, v in enumerate(value)]
    return value


def _secret_digests(run: PlannedRun) -> dict[str, str]:
    """Return a keyed digest of every resolved reference, to notice a rotated secret."""
    digests = {}
    for _, _, ref in references(run.desired):
        key = json.dumps(ref.to_json(), sort_keys=True)
        if key not in digests:
            digests[key] = run.digester.digest(resolve_secret(ref))
    return digests


def _settings_json(settings: Settings) -> dict[str, Any]:
    """Return the settings as JSON."""
    return {
        "prune": settings.prune,
        "ignore": list(settings.ignore),
        "dedupe": settings.dedupe,
        "strict": settings.strict,
    }


def load_plan(path: Path, workspace: Workspace) -> PlannedRun:
    """Rebuild a saved plan against the live database; raise PlanIsStale if anything moved."""
    document = _read(path)
    target = workspace.target
    identity = target_identity(target.url, target.schema)
    if document["target"].get("identity") != identity:
        raise TargetError(
            f"{path} was planned for {describe_identity(document['target'].get('identity'))}, "
            f"not for {describe_identity(identity)}"
        )
    from declarative_conns.core.crypto import KeyRing

    keyring = KeyRing.from_setting(target.fernet_key)
    desired = DesiredState(
        {c: DesiredConnection(c, path, _decode(f, keyring, c)) for c, f in document["connections"].items()},
        Settings(**{**document["settings"], "ignore": tuple(document["settings"]["ignore"])}),
        (path,),
    )
    run = compute_plan(desired, workspace, rotate=bool(document.get("rotate")), refresh_state=False)
    if run.state.serial == 0 and not document["managed"]:
        # No state file here (a fresh CI checkout) and the plan was made on a first run: nothing
        # was managed either way, so the plan's state lineage carries over.
        run.state.lineage = document["lineage"]
    try:
        _check_same(document, run)
    except BaseException:
        run.close()
        raise
    return run


def _read(path: Path) -> dict[str, Any]:
    """Read and check a plan file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such plan file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable dconn plan file ({type(exc).__name__})") from None
    if not isinstance(document, dict) or document.get("kind") != PLAN_FILE_KIND:
        raise InputError(f"{path}: not a dconn plan file (save one with `dconn plan --out FILE`)")
    if document.get("format_version") != PLAN_FILE_VERSION:
        raise InputError(f"{path}: plan file format {document.get('format_version')} is not supported")
    return document


def _decode(value: Any, keyring: Any, conn_id: str) -> Any:
    """Turn a plan file's stored value back into a declared one."""
    if isinstance(value, dict) and "$ref" in value:
        ref = value["$ref"]
        kind, target = next(iter(ref.items()))
        return SecretRef(
            kind.removeprefix("from_"),
            tuple(target) if isinstance(target, list) else target,
            value["base_dir"],
        )
    if isinstance(value, dict) and "$encrypted" in value:
        text, _ = keyring.decrypt(value["$encrypted"], conn_id=conn_id, what="secret saved in the plan")
        return json.loads(text)
    if isinstance(value, dict):
        return {k: _decode(v, keyring, conn_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, keyring, conn_id) for v in value]
    return value


def _check_same(document: dict[str, Any], run: PlannedRun) -> None:
    """Refuse a plan whose secrets, rows or actions differ from what was saved."""
    if document.get("lineage") != run.state.lineage:
        raise PlanIsStale(
            f"the plan was made with another state file (lineage {document.get('lineage')}), not "
            f"{run.workspace.state_path}; pass --state with the state file the plan was made with"
        )
    if document["digest_key_id"] != run.digester.key_id:
        raise PlanIsStale("the plan is stale: the Fernet key changed since it was made; plan again")
    if _secret_digests(run) != document["secret_digests"]:
        raise PlanIsStale("the plan is stale: a secret it uses changed since it was made; plan again")
    expected = {c: [list(r) for r in rows] for c, rows in run.plan.expected.items()}
    if expected != document["expected"] or sorted(run.state.managed) != document["managed"]:
        raise PlanIsStale(
            "the plan is stale: connection rows changed since it was made; nothing was changed, "
            "run dconn plan again"
        )
    fresh = _roundtrip(plan_document(run.plan, run.context)["actions"])
    if fresh != document["plan"]["actions"]:
        raise PlanIsStale("the plan is stale: it no longer gives the same actions; plan again")


def _roundtrip(value: Any) -> Any:
    """Return a JSON value as it reads back (for comparing with a fresh plan)."""
    return json.loads(json.dumps(value, default=_jsonable))
