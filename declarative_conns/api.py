"""dconn as a library: plan and apply with the same guarantees as the CLI.

    import declarative_conns as dc
    ws = dc.Workspace.from_airflow_config()          # or dc.Workspace.from_url(url, fernet_key)
    with dc.plan("connections.toml", ws) as run:     # or dc.plan(dc.desired_from_dicts({...}), ws)
        print(run.render("text"))
        if run.plan.summary.has_changes:
            dc.apply(run)

Nothing here prints or exits; failures are DconnError subclasses.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from declarative_conns.config.loader import DesiredState, check_against_table, load_desired, resolve_desired
from declarative_conns.config.secrets import resolve_secret
from declarative_conns.core.crypto import Digester, KeyRing, decode_stored_key
from declarative_conns.core.diff import compute_plan, detect_drift, rekey_applied
from declarative_conns.core.model import Plan, StoredRow, Values
from declarative_conns.errors import InputError, StateError
from declarative_conns.files.state import State, check_writable, load_state, now
from declarative_conns.output.text import PlanContext, render_text
from declarative_conns.targets.database import engine as airflow_db
from declarative_conns.targets.database import rows as codec
from declarative_conns.targets.discovery import Target, describe_identity, resolve_target, target_identity

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Workspace:
    """Say where dconn works: the target database and key, and the state file."""

    target: Target
    state_path: Path = Path(".dconn/state.json")
    lock_timeout: float = 30.0

    def __post_init__(self) -> None:
        # Accept a str too: scripts pass paths as text, and the engine needs a Path.
        object.__setattr__(self, "state_path", Path(self.state_path))

    @classmethod
    def from_airflow_config(
        cls, state_path: Path | str = ".dconn/state.json", *, lock_timeout: float = 30.0
    ) -> Workspace:
        """Find the target as Airflow does (environment, airflow.cfg)."""
        return cls(resolve_target(), Path(state_path), lock_timeout)

    @classmethod
    def from_url(
        cls,
        db_url: str | None,
        fernet_key: str | None = None,
        *,
        state_path: Path | str = ".dconn/state.json",
        lock_timeout: float = 30.0,
    ) -> Workspace:
        """Target a database URL and Fernet key; either, when None, is found as Airflow finds it."""
        return cls(resolve_target(db_url, fernet_key), Path(state_path), lock_timeout)


@dataclass(repr=False)
class PlannedRun:
    """Hold a computed plan with everything needed to render it, apply it and record it."""

    plan: Plan
    context: PlanContext
    desired: DesiredState
    values: dict[str, Values]
    rows: list[StoredRow]
    state: State
    db: airflow_db.Database
    keyring: KeyRing
    digester: Digester
    workspace: Workspace
    warnings: list[str] = field(default_factory=list)

    def render(self, fmt: str = "text") -> str:
        """Return the plan as text, markdown or JSON; secrets never appear in any of them."""
        from declarative_conns.output import report

        if fmt not in ("text", "json", "markdown"):
            raise InputError(f"the plan format must be text, json or markdown, not {fmt!r}")
        if fmt == "json":
            return report.render_json(self.plan, self.context)
        if fmt == "markdown":
            return report.render_markdown(self.plan, self.context)
        return render_text(self.plan, self.context)

    def close(self) -> None:
        """Release the database connections."""
        self.db.close()

    def __enter__(self) -> PlannedRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # The default repr would reach the raw database URL (with its password) through `db`.
        s = self.plan.summary
        return (
            f"PlannedRun(target={self.workspace.target.masked_url!r}, "
            f"add={s.add}, change={s.change}, destroy={s.destroy})"
        )


def load(config: Path | str) -> DesiredState:
    """Load and validate a desired-state file or folder, without resolving secrets."""
    return load_desired(Path(config))


def plan(
    config: Path | str | DesiredState,
    workspace: Workspace,
    *,
    resolver: Callable[..., str] = resolve_secret,
    verbose: bool = False,
    rotate: bool = False,
    refresh_state: bool = True,
) -> PlannedRun:
    """Compute the plan for a configuration against the workspace's database.

    `config` is a file or folder, or a loaded DesiredState. With `refresh_state` the state
    file's snapshot is updated (as `dconn plan` does); with `rotate`, rows encrypted with an
    older key of the ring are re-encrypted with the first.
    """
    desired = config if isinstance(config, DesiredState) else load(config)
    check_writable(workspace.state_path)
    state = load_state(workspace.state_path)
    recorded_before = _state_content(state) if refresh_state else None
    identity = target_identity(workspace.target.url, workspace.target.schema)
    _check_state_target(state, identity, workspace)
    keyring = KeyRing.from_setting(workspace.target.fernet_key)
    digester, same_key = _digester(keyring, state)
    target = workspace.target
    db = airflow_db.open_database(target.url, target.schema, workspace.lock_timeout, target.db_timeout)
    try:
        check_against_table(desired, db.info)
        values = resolve_desired(desired, resolver)
        with airflow_db.transaction(db, write=False) as conn:
            raw = airflow_db.read_rows(conn, db)
        airflow_db.check_conn_ids(db, desired.connections, (r["conn_id"] or "" for r in raw))
        rows = codec.decode_rows(raw, keyring, digester)
        found = _Found(rows, state, db, keyring, digester, same_key)
        run = _assemble(desired, values, found, workspace, identity, verbose=verbose, rotate=rotate)
    except BaseException:
        db.close()
        raise
    if refresh_state and _state_content(run.state) != recorded_before:
        from declarative_conns.files.state import save_state

        save_state(workspace.state_path, run.state)
    return run


@dataclass(frozen=True)
class _Found:
    """Hold what a plan reads: rows, the previous state, the database and the keys."""

    rows: list[StoredRow]
    state: State | None
    db: airflow_db.Database
    keyring: KeyRing
    digester: Digester
    same_key: bool


def _diff(
    desired: DesiredState,
    values: dict[str, Values],
    found: _Found,
    rotate: bool,
    snapshot: Mapping[str, object],
) -> Plan:
    """Compute the actions, then the drift of managed connections since the last apply.

    `snapshot` is this run's snapshot of the rows: where a connection's recorded form there is
    exactly what dconn last applied, the row has not drifted and is not recorded again.
    """
    columns = sorted(found.db.info.columns)
    state, digester, same_key = found.state, found.digester, found.same_key
    managed = frozenset(state.managed) if state else frozenset()
    result = compute_plan(values, found.rows, desired.settings, columns, managed=managed, rotate=rotate)
    if not state or not state.applied:
        return result
    known = digester if same_key else _state_digester(found.keyring, state)

    def recorded(v: Values) -> dict[str, object]:
        return codec.recorded_form(v, known or digester, columns)

    current = _kept_forms(snapshot) if same_key else None  # digested with the record's key
    drift = detect_drift(
        state.applied, found.rows, recorded, managed, compare_secrets=known is not None, current=current
    )
    if not same_key:
        # Re-key the record (a Fernet key rotation is not drift) so the next run compares secrets again.
        state.applied = rekey_applied(
            state.applied,
            found.rows,
            recorded if known else None,
            lambda v: codec.recorded_form(v, digester, columns),
        )
    return _with_drift(result, drift)


def _state_digester(keyring: KeyRing, state: State) -> Digester | None:
    """Return the digester the state's digests were made with, when its key is still at hand."""
    record = state.digest_key
    if record.get("source") == "state" and record.get("key"):
        candidates = [KeyRing().digester(decode_stored_key(record["key"]))]
    else:
        candidates = [KeyRing.from_setting(key.decode()).digester() for key in keyring.keys]
    return next((d for d in candidates if d.key_id == record.get("id")), None)


def _key_warnings(found: _Found) -> list[str]:
    """Warn when the digest key changed and the previous one is gone: secrets cannot be compared."""
    state = found.state
    if found.same_key or not state or not state.applied or _state_digester(found.keyring, state):
        return []
    return [
        "the Fernet key changed since the state was written and the previous key is no longer in "
        "the key ring: secrets changed outside dconn before this run cannot be detected; the state "
        "now records the database's current ones"
    ]


def _state_content(state: State | None) -> object:
    """Return a state's content without serial and times: `plan` rewrites the file only when it changes."""
    if state is None:
        return None
    # Compared with ==, not serialized: the plan replaces the state's parts, never edits them.
    document = state.to_json()
    del document["serial"], document["written_at"]
    document["snapshot"] = {k: v for k, v in document["snapshot"].items() if k != "taken_at"}
    return document


def _assemble(
    desired: DesiredState,
    values: dict[str, Values],
    found: _Found,
    workspace: Workspace,
    identity: Mapping[str, object],
    *,
    verbose: bool,
    rotate: bool,
) -> PlannedRun:
    """Diff, detect drift, and prepare the next state (its snapshot refreshed)."""
    key_warnings = _key_warnings(found)
    rows, db, digester, keyring = found.rows, found.db, found.digester, found.keyring
    columns = sorted(db.info.columns)
    snapshot = snapshot_record(rows, digester, columns, db.info.shape, values)
    result = _diff(desired, values, found, rotate, snapshot)
    new_state = found.state or State()
    new_state.target = {"url": workspace.target.masked_url, "identity": identity}
    new_state.digest_key = _digest_key_record(digester)
    new_state.snapshot = snapshot
    context = PlanContext(
        target=workspace.target.masked_url,
        shape=db.info.shape,
        rows=len(rows),
        connections=len({r.conn_id for r in rows}),
        verbose=verbose,
    )
    warnings = list(desired.warnings) + shadowing_warnings(values) + key_warnings
    if not keyring.enabled:
        warnings.append(
            "no Fernet key is set: passwords and extras are stored in clear, as Airflow does without one"
        )
    return PlannedRun(
        result, context, desired, values, rows, new_state, db, keyring, digester, workspace, warnings
    )


def shadowing_warnings(values: Mapping[str, Values], environ: Mapping[str, str] | None = None) -> list[str]:
    """Warn about declared conn_ids that an AIRFLOW_CONN_<ID> variable shadows in Airflow."""
    env = os.environ if environ is None else environ
    return [
        f'connection "{conn_id}": AIRFLOW_CONN_{conn_id.upper()} is set in this environment; '
        "where Airflow sees it too, Airflow reads that variable, not the database row"
        for conn_id in sorted(values)
        if f"AIRFLOW_CONN_{conn_id.upper()}" in env
    ]


def _with_drift(result: Plan, drift: tuple) -> Plan:  # type: ignore[type-arg]
    """Return the plan with its drift section set."""
    from dataclasses import replace

    return replace(result, drift=drift)


def _check_state_target(state: State | None, identity: Mapping[str, object], workspace: Workspace) -> None:
    """Refuse a state file recorded for another database."""
    if state is None or state.target.get("identity") == identity:
        return
    raise StateError(
        f"state file {workspace.state_path} belongs to {describe_identity(state.target.get('identity'))}, "
        f"not to {describe_identity(identity)}; pass --state with this target's state file"
    )


def _digester(keyring: KeyRing, state: State | None) -> tuple[Digester, bool]:
    """Return the digester for this run, and whether the state's digests were made with it."""
    recorded = state.digest_key if state else {}
    if not keyring.enabled and recorded.get("source") == "state" and recorded.get("key"):
        digester = keyring.digester(decode_stored_key(recorded["key"]))
    else:
        digester = keyring.digester()
    return digester, recorded.get("id") == digester.key_id


def _digest_key_record(digester: Digester) -> dict[str, str]:
    """Return the state's record of the digest key."""
    record = {"id": digester.key_id, "source": digester.source}
    stored = digester.stored_key_text()
    if stored:
        record["key"] = stored
    return record


def snapshot_record(
    rows: list[StoredRow],
    digester: Digester,
    columns: list[str],
    shape: str,
    declared: Mapping[str, Values] | None = None,
    recorded: Mapping[str, Mapping[str, object]] | None = None,
) -> dict[str, object]:
    """Return the state's snapshot of every row: ids and fields, secrets as digests.

    A stored row cannot tell which of its fields came from a secret reference; the declared
    connection of the same conn_id can, so its secret paths are digested in the row too.
    `recorded` holds declared connections already in recorded form (digested with `digester`):
    a row holding exactly those declared values (one dconn just wrote) takes that form as it is.
    """
    declared = declared or {}
    recorded = recorded or {}

    def secret(row: StoredRow) -> Values:
        paths = declared[row.conn_id].secret_paths if row.conn_id in declared else frozenset()
        return Values(row.values.fields, row.values.secret_paths | paths) if paths else row.values

    def fields(row: StoredRow) -> Mapping[str, object]:
        form = recorded.get(row.conn_id)
        if form is not None and row.values is declared.get(row.conn_id):
            return form
        return codec.recorded_form(secret(row), digester, columns)

    return {
        "taken_at": now(),
        "shape": shape,
        "rows": [
            {
                "id": r.row_id,
                "conn_id": r.conn_id,
                "fingerprint": r.fingerprint,
                "fields": fields(r),
            }
            for r in rows
        ],
    }


def _kept_forms(snapshot: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Return each conn_id's recorded form in a snapshot, of its kept row (the lowest id)."""
    forms: dict[str, tuple[int, Mapping[str, Any]]] = {}
    for entry in snapshot["rows"]:
        kept = forms.get(entry["conn_id"])
        if kept is None or entry["id"] < kept[0]:
            forms[entry["conn_id"]] = (entry["id"], entry["fields"])
    return {conn_id: form for conn_id, (_, form) in forms.items()}


def apply(run: PlannedRun, progress: Progress | None = None) -> int:
    """Carry out a planned run in one transaction and record it; return rows changed.

    A plan without changes writes nothing to the database; only the state's snapshot is refreshed.
    """
    from declarative_conns.targets.database.executor import execute, record_state

    if not run.plan.summary.has_changes:
        record_state(run)
        return 0

    return execute(run, progress)
