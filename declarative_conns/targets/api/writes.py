"""Carry out an apply's operations through the REST API: bulk requests on Airflow 3, one per object on Airflow 2.

Creates, then updates, then deletes, kind by kind; each update sends the fields that change
(`update_mask`) with those the API's models require. Written operations are counted as they
succeed, so a failure part-way says exactly what was written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from declarative_conns.core.crypto import Digester
from declarative_conns.core.kinds import BY_NAME, Kind
from declarative_conns.core.model import Address, Values
from declarative_conns.core.operations import Create, Delete, Operation, Update
from declarative_conns.core.sensitive import is_sensitive_path
from declarative_conns.core.write_only import MASK
from declarative_conns.targets.api.client import ApiError
from declarative_conns.targets.api.endpoints import ENDPOINTS, Endpoint
from declarative_conns.targets.base import Progress, WriteResult

if TYPE_CHECKING:
    from declarative_conns.targets.api.target import ApiSession

#: Objects per bulk request (Airflow 3): large requests cost the server, not the count of them.
BATCH = 200


class Writer:
    """Carry out operations through the API, counting what was written."""

    def __init__(
        self, session: ApiSession, digester: Digester, progress: Progress | None, total: int
    ) -> None:
        self.session = session
        self.target = session.target
        self.client = session.client
        self.digester = digester
        self.progress = progress
        self.total = total
        self.done: list[Operation] = []
        self.fingerprints: dict[tuple[Address, int | None], str] = {}

    def result(self, failure: Exception | None) -> WriteResult:
        """Return what was written; the fingerprints of what was created or updated, read back."""
        written = [op.address for op in self.done if not isinstance(op, Delete)]
        if written:
            try:
                self._read_back(written)
            except ApiError as error:
                failure = failure or error
        for address in written:
            self.fingerprints.setdefault((address, None), "")
        new_ids: dict[Address, int | None] = {op.address: None for op in self.done if isinstance(op, Create)}
        return WriteResult(tuple(self.done), new_ids, dict(self.fingerprints), failure)

    def _read_back(self, written: Sequence[Address]) -> None:
        """Fingerprint the written objects as the API now shows them."""
        kinds = dict.fromkeys(a.kind for a in written)
        wanted = set(written)
        for address, seen in self.session.fingerprints(list(kinds), self.digester, written).items():
            if address in wanted:
                self.fingerprints[(address, None)] = seen[0][1]

    def _advance(self, ops: Sequence[Operation]) -> None:
        """Record written operations and report progress."""
        self.done.extend(ops)
        if self.progress:
            self.progress(len(self.done), self.total)

    def run(self, ops: Sequence[Operation]) -> None:
        """Carry out operations of one verb, kind by kind."""
        for kind in dict.fromkeys(op.address.kind for op in ops):
            of_kind = [op for op in ops if op.address.kind == kind]
            endpoint = ENDPOINTS[kind]
            if self.target.v1 or (isinstance(of_kind[0], Update) and self.target.version < (3, 2)):
                for op in of_kind:
                    self._one(endpoint, op)
            else:
                for start in range(0, len(of_kind), BATCH):
                    self._bulk(endpoint, of_kind[start : start + BATCH])

    def _body(self, endpoint: Endpoint, op: Create | Update) -> tuple[dict[str, Any], list[str]]:
        """Return the body for a create (set fields only) or an update (changed fields only), and the update mask."""
        fields = BY_NAME[endpoint.kind].managed_fields(
            op.address.key, self.target.open().fields[endpoint.kind]
        )
        body = endpoint.encode(op.address.key, op.values, fields)
        self.client.hide(*_secret_texts(endpoint.kind, op.values))
        if isinstance(op, Create):
            return {k: v for k, v in body.items() if v is not None}, []
        changed = [name for name in fields if any(c.path[0] == name for c in op.changes)]
        mask = [endpoint.api_field(name) for name in changed]
        # The body carries every field the API's models may require; update_mask says which are
        # written. Fields that may hold secrets travel only when they change (a variable's value
        # is required by the API, so it is always sent, and written only when masked).
        withheld = _SENT_ONLY_WHEN_CHANGED.get(endpoint.kind, frozenset())
        kept = {k: v for k, v in body.items() if k in mask or k not in withheld}
        return kept, mask

    def _one(self, endpoint: Endpoint, op: Operation) -> None:
        """Write one object with its own request (Airflow 2, and updates before Airflow 3.2)."""
        path = f"/{endpoint.path}"
        key = quote(op.address.key, safe="")
        if isinstance(op, Create):
            body, _ = self._body(endpoint, op)
            self.client.request("POST", path, body=body)
        elif isinstance(op, Update):
            body, mask = self._body(endpoint, op)
            params: list[tuple[str, Any]] = (
                [("update_mask", ",".join(mask))] if self.target.v1 else [("update_mask", m) for m in mask]
            )
            self.client.request("PATCH", f"{path}/{key}", params=params, body=body)
        else:
            # 404: gone already (a retried request's first attempt, or another hand): the goal holds.
            self.client.request("DELETE", f"{path}/{key}", allow=(404,))
        self._advance([op])

    def _bulk(self, endpoint: Endpoint, ops: Sequence[Operation]) -> None:
        """Write a batch of one verb with one bulk request (Airflow 3); updates grouped by their mask."""
        actions: list[dict[str, Any]] = []
        if isinstance(ops[0], Create):
            bodies = [self._body(endpoint, op)[0] for op in ops if isinstance(op, Create)]
            actions.append({"action": "create", "entities": bodies, "action_on_existence": "fail"})
            verb = "create"
        elif isinstance(ops[0], Update):
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for op in ops:
                assert isinstance(op, Update)
                body, mask = self._body(endpoint, op)
                groups.setdefault(tuple(mask), []).append(body)
            for fields, bodies in groups.items():
                actions.append(
                    {
                        "action": "update",
                        "entities": bodies,
                        "update_mask": list(fields),
                        "action_on_non_existence": "fail",
                    }
                )
            verb = "update"
        else:
            keys = [op.address.key for op in ops]
            actions.append({"action": "delete", "entities": keys, "action_on_non_existence": "fail"})
            verb = "delete"
        answer = self.client.request(
            "PATCH", f"/{endpoint.path}", body={"actions": actions}, retry=verb != "create"
        ).json()
        report = answer.get(verb) or {}
        success = {str(k) for k in report.get("success") or []}
        self._advance([op for op in ops if op.address.key in success])
        errors = report.get("errors") or []
        if errors or len(success) < len(ops):
            first = errors[0] if errors else {}
            detail = first.get("error") if isinstance(first, dict) else None
            status = first.get("status_code") if isinstance(first, dict) else None
            raise ApiError(
                f"{self.target.display} refused to {verb} {BY_NAME[endpoint.kind].plural}"
                + (f" ({status}: {self.client._scrub(str(detail))})" if detail else ""),
                status if isinstance(status, int) else None,
            )


def non_secret_fields(values: Values, kind: Kind) -> tuple[dict[str, Any], list[str]]:
    """Return an object's fields without any secret (nor `***`), and the dotted paths left out."""
    hidden: list[str] = []

    def keep(value: Any, path: tuple[str | int, ...]) -> Any:
        if value == MASK or is_sensitive_path(path, values.secret_paths, kind):
            hidden.append(".".join(str(p) for p in path))
            return _DROP
        if isinstance(value, dict):
            return {k: v for k, item in value.items() if (v := keep(item, (*path, k))) is not _DROP}
        if isinstance(value, list):
            return [v for i, item in enumerate(value) if (v := keep(item, (*path, i))) is not _DROP]
        return value

    kept = {
        n: v
        for n, value in values.fields.items()
        if value is not None and (v := keep(value, (n,))) is not _DROP
    }
    return kept, hidden


_DROP = object()

#: Fields an update sends only when it changes them: those that may hold secrets.
_SENT_ONLY_WHEN_CHANGED = {"connection": frozenset({"password", "extra"})}


def _secret_texts(kind: str, values: Values) -> list[str]:
    """Return the secret strings of an object (password, sensitive extra keys, references' values)."""
    out: list[str] = []
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(v, (k,)) for k, v in values.fields.items()]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str) and is_sensitive_path(path, values.secret_paths, BY_NAME[kind]):
            out.append(value)
        elif isinstance(value, dict):
            stack.extend((v, (*path, k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(value))
    return out
