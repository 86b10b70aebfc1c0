"""Saved plans: `dconn plan --out FILE` writes one, `dconn apply FILE` checks it and carries it out.

A saved plan holds the desired objects (secrets encrypted with the target's key, references as
written), the settings and what the plan expected to find; the whole file is authenticated with
a key derived from the target's Fernet key (files.planfile). Loading one rebuilds the run against
the live target and refuses it when the file was edited or anything it relied on moved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from declarative_conns.api import PlannedRun, Resolver, plan
from declarative_conns.config.loader import DesiredState
from declarative_conns.config.secrets import resolve_secret
from declarative_conns.core.model import Address, Settings
from declarative_conns.core.operations import Reencrypt
from declarative_conns.errors import TargetError
from declarative_conns.workspace import Workspace


def save_plan(run: PlannedRun, path: Path | str) -> None:
    """Save the run's plan for `dconn apply FILE` (authenticated; no secret in clear)."""
    from declarative_conns.files.planfile import encode_fields, plan_keys, write_plan

    keyring = run.target.keyring
    objects: dict[str, dict[str, Any]] = {}
    for address, obj in sorted(run.desired.objects.items()):
        objects.setdefault(address.kind, {})[address.key] = encode_fields(address, obj.fields, keyring)
    settings = run.desired.settings
    document = {
        "target": run.state.target,
        "settings": {
            "prune": settings.prune,
            "ignore": list(settings.ignore),
            "dedupe": settings.dedupe,
            "strict": settings.strict,
        },
        "kinds": list(run.desired.kinds),
        "rotate": any(isinstance(op, Reencrypt) for op in run.plan.operations),
        "resend_secrets": run.resend_secrets,
        "objects": objects,
        "ignore_changes": [
            [a.kind, a.key, [list(p) for p in o.ignore_changes]]
            for a, o in sorted(run.desired.objects.items())
            if o.ignore_changes
        ],
        "targets": None if run.plan.targets is None else [[a.kind, a.key] for a in run.plan.targets],
        **_plan_record(run),
    }
    write_plan(Path(path), document, plan_keys(keyring))


def load_plan(path: Path | str, workspace: Workspace, *, resolver: Resolver = resolve_secret) -> PlannedRun:
    """Rebuild a saved plan against the live target; refuse it when it was edited or anything moved.

    The file's authentication is checked first: nothing in a file that fails it is used.
    """
    from declarative_conns.config.loader import DesiredObject
    from declarative_conns.files.planfile import check_same, decode_fields, plan_keys, read_plan
    from declarative_conns.targets.discovery import describe_identity

    path, target = Path(path), workspace.target
    document = read_plan(path, plan_keys(target.keyring))
    if document["target"].get("identity") != dict(target.identity):
        raise TargetError(
            f"{path} was planned for {describe_identity(document['target'].get('identity') or {})}, "
            f"not for {describe_identity(target.identity)}"
        )
    lifecycle = {
        Address(kind, key): tuple(tuple(p) for p in paths)
        for kind, key, paths in document.get("ignore_changes", ())
    }
    objects = {
        Address(kind, key): DesiredObject(
            Address(kind, key),
            path,
            decode_fields(Address(kind, key), fields, target.keyring),
            ignore_changes=lifecycle.get(Address(kind, key), ()),
        )
        for kind, items in document["objects"].items()
        for key, fields in items.items()
    }
    saved_targets = document.get("targets")
    targets = None if saved_targets is None else [Address(kind, key) for kind, key in saved_targets]
    saved = document["settings"]
    settings = Settings(
        prune=saved["prune"], ignore=tuple(saved["ignore"]), dedupe=saved["dedupe"], strict=saved["strict"]
    )
    desired = DesiredState(objects, settings, (path,), (), tuple(document["kinds"]))
    run = plan(
        desired,
        workspace,
        resolver=resolver,
        rotate=bool(document["rotate"]),
        refresh_state=False,
        resend_secrets=bool(document.get("resend_secrets")),
        targets=targets,
    )
    try:
        if run.read_version is None and not document["managed"]:
            # No state here (a fresh CI checkout) and the plan was made on a first run: nothing was
            # managed either way, so the plan's state lineage carries over.
            run.state.lineage = document["lineage"]
        check_same(document, _plan_record(run), workspace.state.describe())
    except BaseException:
        run.close()
        raise
    return run


def _plan_record(run: PlannedRun) -> dict[str, Any]:
    """Return what a saved plan must still hold when it is applied: state, keys, secrets, objects, actions."""
    from declarative_conns.config.secrets import references
    from declarative_conns.output.report import plan_document

    digests: dict[str, str] = {}
    for address, path, ref in references(run.desired):
        value: Any = run.values[address].fields
        for part in path:
            value = value.get(part) if isinstance(value, dict) else _item(value, part)
        digests[json.dumps([address.kind, address.key, list(path), ref.to_json()])] = run.digester.digest(
            value
        )
    return {
        "lineage": run.state.lineage,
        "digest_key_id": run.digester.key_id,
        "secret_digests": digests,
        "expected": [
            [a.kind, a.key, [list(s) for s in seen]] for a, seen in sorted(run.plan.expected.items())
        ],
        "managed": sorted([a.kind, a.key] for a in run.state.managed),
        "plan": plan_document(run.plan, run.context),
    }


def _item(value: Any, index: str | int) -> Any:
    """Return a list's element at an index, None when absent."""
    if isinstance(value, list) and isinstance(index, int) and index < len(value):
        return value[index]
    return None
