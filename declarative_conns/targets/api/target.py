"""Airflow's REST API as a target: read every object, write object by object, under a lock object.

What the API cannot do is said in the capabilities: it shows no secrets (`***`), has no
transaction, and holds one object per key. An apply takes dconn's lock (an object the API
refuses to create twice: the variable `dconn_lock` on Airflow 3, the connection `dconn_lock` on
Airflow 2, whose POST /variables overwrites), re-reads what it depends on, then creates, updates
and deletes — Airflow 3's bulk endpoint, one request per kind of change and batch; Airflow 2 one
request per object — stopping at the first failure and saying what was written.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from declarative_conns.core.crypto import Digester, KeyRing
from declarative_conns.core.kinds import BY_NAME
from declarative_conns.core.model import Address, StoredObject, Values, nesting_exceeds
from declarative_conns.core.operations import Create, Delete, Operation, Reencrypt, Seen, Update
from declarative_conns.core.write_only import MASK, hidden_in
from declarative_conns.errors import ApplyInterrupted
from declarative_conns.targets.api.client import ApiClient, ApiError, ServerInfo, version_tuple
from declarative_conns.targets.api.endpoints import ENDPOINTS, LOCK_KEY
from declarative_conns.targets.api.settings import ApiSettings
from declarative_conns.targets.api.writes import Writer, non_secret_fields
from declarative_conns.targets.base import Capabilities, Progress, Snapshot, TargetInfo, WriteResult

#: How often a waiting apply asks again for the lock.
LOCK_POLL_SECONDS = 1.0


@dataclass
class ApiTarget:
    """A deployment's REST API, reached with httpx; secrets are write-only through it."""

    settings: ApiSettings
    client: ApiClient = field(init=False, repr=False)
    _info: TargetInfo | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.client = ApiClient(self.settings)

    def __repr__(self) -> str:
        return f"ApiTarget({self.display!r})"

    @property
    def capabilities(self) -> Capabilities:
        """Say what an API can do: no secrets shown, no transaction, one object per key, no state."""
        return Capabilities(sees_secrets=False, transactional=False, duplicate_keys=False, holds_state=False)

    @property
    def display(self) -> str:
        """Return the base URL (it holds no credentials)."""
        return self.client.display

    @property
    def identity(self) -> Mapping[str, object]:
        """Return the base URL: the same deployment whatever token reaches it."""
        return {"family": "api", "url": self.settings.url}

    @property
    def keyring(self) -> KeyRing:
        """Return an empty key ring: the API encrypts with the deployment's key itself."""
        return KeyRing.from_setting(None)

    @property
    def server(self) -> ServerInfo:
        """Return the API's prefix and Airflow's version (open() first)."""
        assert self.client.server is not None, "open() first"
        return self.client.server

    @property
    def version(self) -> tuple[int, ...]:
        """Return Airflow's version as numbers."""
        return version_tuple(self.server.version)

    @property
    def v1(self) -> bool:
        """Tell whether the deployment speaks Airflow 2's /api/v1."""
        return self.server.prefix == "/api/v1"

    def lock_kind(self) -> str:
        """Return the kind whose object holds dconn's lock (see the module's docstring)."""
        return "connection" if self.v1 else "variable"

    # -- reading ---------------------------------------------------------------------------

    def open(self) -> TargetInfo:
        """Find the API and Airflow's version; describe what it takes."""
        if self._info is None:
            server = self.client.open()
            fields = {kind: ep.fields(version_tuple(server.version)) for kind, ep in ENDPOINTS.items()}
            unseen = {"connection": frozenset({"password"})} if server.prefix == "/api/v1" else {}
            self._info = TargetInfo(
                server.version,
                f"Airflow {server.version} REST API {server.prefix}",
                fields,
                unseen=unseen,
            )
        return self._info

    def close(self) -> None:
        """Close the connection."""
        self.client.close()
        self._info = None

    def read(self, kinds: Sequence[str], digester: Digester) -> Snapshot:
        """Return every object of the kinds as the API shows them (secrets as `***`)."""
        objects: list[StoredObject] = []
        skipped: list[tuple[Address, str]] = []
        for kind in kinds:
            for item in self.raw_items(kind):
                address = Address(kind, str(item.get(ENDPOINTS[kind].key_field, "")))
                values = self.values(kind, item)
                if any(nesting_exceeds(v) for v in values.fields.values()):
                    skipped.append(
                        (address, f"{address} nests deeper than dconn reads (100 levels): it is left alone")
                    )
                    continue
                objects.append(StoredObject(address, None, values, self.fingerprint(kind, item, digester)))
        return Snapshot(objects, tuple(skipped))

    def values(self, kind: str, item: Mapping[str, Any]) -> Values:
        """Return an API object's values under dconn's names, normalised as the kind compares them."""
        fields = self.open().fields[kind]
        decoded = BY_NAME[kind].normalize(ENDPOINTS[kind].decode(item, fields))
        key = str(item.get(ENDPOINTS[kind].key_field, ""))
        return Values(decoded, BY_NAME[kind].key_secret_paths(key))

    def fingerprint(self, kind: str, item: Mapping[str, Any], digester: Digester) -> str:
        """Return the keyed digest of an object as the API shows it (what a stale plan is told by)."""
        endpoint = ENDPOINTS[kind]
        shown = {name: item.get(endpoint.api_field(name)) for name in self.open().fields[kind]}
        return digester.digest([str(item.get(endpoint.key_field)), shown])

    def raw_items(self, kind: str) -> list[dict[str, Any]]:
        """Return every object of a kind as the API lists it (page by page); Airflow 2: each read whole."""
        endpoint = ENDPOINTS[kind]
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.client.request(
                "GET",
                f"/{endpoint.path}",
                params={"limit": 100, "offset": offset, "order_by": endpoint.key_field},
            ).json()
            batch = page.get(endpoint.path) or []
            items += batch
            offset += len(batch)
            if not batch or offset >= int(page.get("total_entries", 0)):
                break
        items = [i for i in items if not self._is_lock(kind, str(i.get(endpoint.key_field)))]
        if self.v1 and endpoint.v1_list_omits:
            items = [self.get_item(kind, str(i[endpoint.key_field])) or i for i in items]
        return items

    def get_item(self, kind: str, key: str) -> dict[str, Any] | None:
        """Return one object as the API shows it, None when it does not exist."""
        answer = self.client.request("GET", f"/{ENDPOINTS[kind].path}/{quote(key, safe='')}", allow=(404,))
        return None if answer.status_code == 404 else dict(answer.json())

    def _is_lock(self, kind: str, key: str) -> bool:
        """Tell whether an object is dconn's own lock, which no plan sees."""
        return key == LOCK_KEY and kind == self.lock_kind()

    # -- checks ----------------------------------------------------------------------------

    def check_keys(self, declared: Sequence[Address], stored: Sequence[StoredObject]) -> list[str]:
        """Return declared keys the API refuses: its own key rule, and dconn's lock object."""
        problems = []
        for address in declared:
            endpoint = ENDPOINTS[address.kind]
            label = BY_NAME[address.kind].key_label
            pattern = endpoint.key_pattern
            if (pattern and not re.fullmatch(pattern, address.key, re.ASCII)) or len(
                address.key
            ) > endpoint.key_max:
                rule = "letters, digits, _ . - only, " if pattern else ""
                problems.append(
                    f"{address}: Airflow's REST API takes a {label} of {rule}at most {endpoint.key_max} characters "
                    f"({self.display}); rename it"
                )
            if self._is_lock(address.kind, address.key):
                problems.append(
                    f"{address}: {LOCK_KEY} is the object dconn holds its apply lock with on {self.display}"
                )
        return problems

    def check_writes(self, operations: Sequence[Operation]) -> list[str]:
        """Return writes the API would store wrongly: a value of `***` (Airflow 2 stores it literally)."""
        return (
            [
                f'{op.address}: a value is "{MASK}", which the REST API uses to hide secrets; dconn does not send it'
                for op in operations
                if isinstance(op, (Create, Update)) and hidden_in(op.values)
            ]
            + [
                f"{op.address}: re-encrypting is the deployment's own job through the REST API (--rotate needs --db-url)"
                for op in operations
                if isinstance(op, Reencrypt)
            ]
            + [
                f"{op.address}: Airflow's REST API cannot remove a password (it ignores an empty one): declare "
                "the password, or remove it with Airflow's CLI (`airflow connections delete`, then `add`)"
                for op in operations
                if isinstance(op, Update)
                and any(c.path == ("password",) and c.kind == "remove" for c in op.changes)
            ]
        )

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def session(self, lock_timeout: float) -> Iterator[ApiSession]:
        """Hold dconn's lock object for the block; delete it at the end, whatever happened."""
        self.acquire_lock(lock_timeout)
        try:
            yield ApiSession(self)
        finally:
            self.release_lock()

    def lock_body(self) -> dict[str, Any]:
        """Return the lock object: its value names the holder (host, process) and the time."""
        holder = json.dumps(
            {
                "holder": "dconn apply",
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        if self.v1:
            return {"connection_id": LOCK_KEY, "conn_type": "generic", "description": holder}
        return {
            "key": LOCK_KEY,
            "value": holder,
            "description": "dconn apply lock (dconn force-unlock removes it)",
        }

    def acquire_lock(self, timeout: float) -> None:
        """Create the lock object; wait while another run holds it, up to `timeout` seconds."""
        path = f"/{ENDPOINTS[self.lock_kind()].path}"
        deadline = time.monotonic() + timeout
        while True:
            answer = self.client.request("POST", path, body=self.lock_body(), allow=(409,))
            if answer.status_code != 409:
                return
            if time.monotonic() >= deadline:
                holder = self.lock_holder()
                raise ApiError(
                    f"another dconn apply holds the lock on {self.display}{_describe_holder(holder)}; waited "
                    f"{timeout:g} s (--lock-timeout); nothing was changed. If that run was killed, "
                    "`dconn force-unlock` removes its lock"
                )
            time.sleep(min(LOCK_POLL_SECONDS, max(deadline - time.monotonic(), 0.05)))

    def lock_holder(self) -> dict[str, Any] | None:
        """Return who holds the lock (host, pid, since), {} when unreadable, None when there is no lock."""
        item = self.get_item(self.lock_kind(), LOCK_KEY)
        if item is None:
            return None
        text = item.get("description") if self.v1 else item.get("value")
        try:
            holder = json.loads(text) if isinstance(text, str) else {}
        except ValueError:
            holder = {}
        return holder if isinstance(holder, dict) else {}

    def release_lock(self) -> None:
        """Delete the lock object (gone already: nothing to do)."""
        self.client.request("DELETE", f"/{ENDPOINTS[self.lock_kind()].path}/{LOCK_KEY}", allow=(404,))


def _describe_holder(holder: Mapping[str, Any] | None) -> str:
    """Return ` (held by host H, process P, since T)` or ''."""
    if not holder:
        return ""
    parts = [
        f"host {holder['host']}" if holder.get("host") else "",
        f"process {holder['pid']}" if holder.get("pid") else "",
    ]
    since = f" since {holder['since']}" if holder.get("since") else ""
    shown = ", ".join(p for p in parts if p)
    return f" ({shown}{since})" if shown or since else ""


def describe_holder(holder: Mapping[str, Any] | None) -> str:
    """Return how a lock's holder reads in force-unlock's question."""
    return _describe_holder(holder).strip(" ()") or "an unknown holder"


class ApiSession:
    """One locked apply through the API: re-read, back up, write object by object."""

    def __init__(self, target: ApiTarget) -> None:
        self.target = target
        self.client = target.client
        #: Objects as the API showed them in this session, by address.
        self._seen: dict[Address, dict[str, Any]] = {}

    def fingerprints(
        self, kinds: Sequence[str], digester: Digester, only: Sequence[Address] | None = None
    ) -> Mapping[Address, Seen]:
        """Re-read the objects the plan depends on; return each one's fingerprint (no row ids)."""
        target = self.target
        found: dict[Address, Seen] = {}
        for kind in kinds:
            wanted = None if only is None else [a for a in only if a.kind == kind]
            if target.v1 and wanted is not None and len(wanted) < 100:
                items = [item for a in wanted if (item := target.get_item(kind, a.key)) is not None]
            else:
                items = target.raw_items(kind)
            for item in items:
                address = Address(kind, str(item[ENDPOINTS[kind].key_field]))
                self._seen[address] = item
                found[address] = ((None, target.fingerprint(kind, item, digester)),)
        return found

    def pre_images(
        self, operations: Sequence[Operation], declared: Mapping[Address, Values], digester: Digester
    ) -> list[dict[str, Any]]:
        """Return the non-secret fields of each object the operations change or delete (the API hides the rest)."""
        images = []
        for op in operations:
            item = self._seen.get(op.address)
            if isinstance(op, Create) or item is None:
                continue
            values = self.target.values(op.address.kind, item)
            want = declared.get(op.address)
            if want is not None:  # a field the configuration fills from a secret reference is secret here too
                values = Values(values.fields, values.secret_paths | want.secret_paths)
            kept, hidden = non_secret_fields(values, BY_NAME[op.address.kind])
            hidden += sorted(self.target.open().unseen.get(op.address.kind, frozenset()) - set(hidden))
            images.append({"kind": op.address.kind, "key": op.address.key, "fields": kept, "hidden": hidden})
        return images

    def write(
        self, operations: Sequence[Operation], digester: Digester, progress: Progress | None = None
    ) -> WriteResult:
        """Create, then update, then delete; stop at the first failure and say what was done."""
        writer = Writer(self, digester, progress, len(operations))
        try:
            for verb in (Create, Update, Delete):
                ops = [op for op in operations if isinstance(op, verb)]
                if ops:
                    writer.run(ops)
        except ApiError as error:
            return writer.result(error)
        except KeyboardInterrupt:
            # Without a transaction what was written stays written: say so and record it.
            return writer.result(ApplyInterrupted("interrupted"))
        return writer.result(None)
