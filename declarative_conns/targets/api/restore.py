"""Put back what an apply through the REST API changed, as far as the API allows.

An apply's backup holds the non-secret fields of each object it changed or deleted (the API
never showed the secrets) and names the objects it created. Restoring deletes the created ones,
rewrites the changed ones' non-secret fields and re-creates the deleted ones, under the apply
lock, object by object. What cannot be put back is said: a password or a sensitive value the
API hid; an extra that held a hidden key is left as it is rather than written without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from declarative_conns.core.kinds import BY_NAME
from declarative_conns.core.model import Address, Values
from declarative_conns.files.atomic import now
from declarative_conns.files.backups import write_backup
from declarative_conns.targets.api.endpoints import ENDPOINTS
from declarative_conns.targets.api.target import ApiTarget
from declarative_conns.targets.api.writes import non_secret_fields


@dataclass
class ApiRestorePlan:
    """Describe what restoring a backup through the API will do."""

    source: Path
    target_record: Mapping[str, Any]
    #: (address, fields to write) of objects that exist and are rewritten, and of those re-created.
    updates: list[tuple[Address, dict[str, Any]]] = field(default_factory=list)
    creates: list[tuple[Address, dict[str, Any]]] = field(default_factory=list)
    deletes: list[Address] = field(default_factory=list)
    #: What cannot be restored, one line each.
    kept: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """Return the restore as lines a person reads before approving it."""
        lines = [f"Restore from {self.source}:", ""]
        lines += [f"  ~ {a} will be rewritten as backed up (its non-secret fields)" for a, _ in self.updates]
        lines += [f"  + {a} will be created again" for a, _ in self.creates]
        lines += [f"  - {a} was created by the apply and will be destroyed" for a in self.deletes]
        lines += [f"  ! {k}" for k in self.kept]
        lines += [
            "",
            f"Restore: {len(self.creates)} to re-create, {len(self.updates)} to rewrite, {len(self.deletes)} to destroy.",
        ]
        return "\n".join(lines) + "\n"

    @property
    def total(self) -> int:
        """Return how many objects the restore writes or deletes."""
        return len(self.updates) + len(self.creates) + len(self.deletes)


def plan_restore(source: Path, document: Mapping[str, Any], target: ApiTarget) -> ApiRestorePlan:
    """Compare a backup with what the API shows now and return what restoring it will do."""
    info = target.open()
    restore = ApiRestorePlan(source, document["target"])
    saved = {Address(r["kind"], str(r["key"])): r for r in document["rows"] if "fields" in r}
    for item in document["created"]:
        address = Address(item["kind"], str(item["key"]))
        if address not in saved and target.get_item(address.kind, address.key) is not None:
            restore.deletes.append(address)
    for address, row in sorted(saved.items()):
        fields = dict(row["fields"])
        hidden = [str(h) for h in row.get("hidden", [])]
        secrets = [h for h in hidden if "." not in h]
        in_extra = [h for h in hidden if "." in h]
        writable = {n: fields.get(n) for n in info.fields[address.kind] if n not in secrets}
        if in_extra:
            top = sorted({h.split(".", 1)[0] for h in in_extra})
            for name in top:
                writable.pop(name, None)
            restore.kept.append(
                f"{address}: its {', '.join(top)} held secrets the API never showed ({', '.join(in_extra)}); "
                "left as it is"
            )
        if secrets:
            restore.kept.append(
                f"{address}: {', '.join(secrets)} cannot be restored (the API never showed it)"
            )
        exists = target.get_item(address.kind, address.key) is not None
        (restore.updates if exists else restore.creates).append((address, writable))
    return restore


def execute_restore(
    restore: ApiRestorePlan, target: ApiTarget, lock_timeout: float, backups_dir: Path
) -> int:
    """Carry out the restore object by object under the lock; back up what it overwrites first."""
    with target.session(lock_timeout):
        current = []
        for address, _ in restore.updates:
            item = target.get_item(address.kind, address.key)
            if item is not None:
                shown, hidden = non_secret_fields(target.values(address.kind, item), BY_NAME[address.kind])
                current.append({"kind": address.kind, "key": address.key, "fields": shown, "hidden": hidden})
        if current:
            write_backup(
                backups_dir,
                "before-restore",
                {
                    "format_version": 2,
                    "target": restore.target_record,
                    "taken_at": now(),
                    "note": f"Objects as the API showed them before `dconn restore {restore.source.name}`.",
                    "rows": current,
                    "created": [],
                },
            )
        for address in restore.deletes:
            path = f"/{ENDPOINTS[address.kind].path}/{quote(address.key, safe='')}"
            target.client.request("DELETE", path, allow=(404,))
        for address, fields in restore.updates:
            _patch(target, address, fields)
        for address, fields in restore.creates:
            endpoint = ENDPOINTS[address.kind]
            body = endpoint.encode(address.key, Values(fields), tuple(fields))
            target.client.request(
                "POST", f"/{endpoint.path}", body={k: v for k, v in body.items() if v is not None}
            )
    return restore.total


def _patch(target: ApiTarget, address: Address, fields: Mapping[str, Any]) -> None:
    """Rewrite the named fields of one object (update_mask: the others stay as they are)."""
    endpoint = ENDPOINTS[address.kind]
    names = BY_NAME[address.kind].managed_fields(address.key, tuple(fields))
    body = endpoint.encode(address.key, Values(dict(fields)), names)
    mask = [endpoint.api_field(n) for n in names]
    params: list[tuple[str, Any]] = (
        [("update_mask", ",".join(mask))] if target.v1 else [("update_mask", m) for m in mask]
    )
    if endpoint.kind == "connection" and body.get("conn_type") is None:
        body.pop("conn_type", None)
    path = f"/{endpoint.path}/{quote(address.key, safe='')}"
    target.client.request("PATCH", path, params=params, body=body)
