"""dconn as a library: plan and apply with the same guarantees as the CLI.

    from declarative_conns import Workspace, plan, apply
    ws = Workspace.from_airflow_config()            # or Workspace(resolve_target(db_url=...))
    run = plan("connections.toml", ws)
    print(run.render("text"))
    if run.plan.summary.has_changes:
        apply(run)
    run.close()

Nothing here prints or exits; failures are DconnError subclasses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import airflow_db, codec
from .crypto import Digester, KeyRing, decode_stored_key
from .desired import DesiredState, check_against_table, load_desired, resolve_desired
from .diff import compute_plan, detect_drift
from .errors import StateError
from .model import Plan, StoredRow, Values
from .render import PlanContext, render_text
from .secrets import resolve_secret
from .state import State, check_writable, load_state, now
from .target import Target, resolve_target, target_identity

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Workspace:
    """Say where dconn works: the target database and key, and the state file."""

    target: Target
    state_path: Path = Path(".dconn/state.json")
    lock_timeout: float = 30.0

    @classmethod
    def from_airflow_config(cls, state_path: Path | str = ".dconn/state.json") -> Workspace:
        """Find the target as Airflow does (environment, airflow.cfg)."""
        return cls(resolve_target(), Path(state_path))


@dataclass
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
        """Return the plan as text, markdown or JSON."""
        from . import report

        if fmt == "json":
            return report.render_json(self.plan, self.context)
        if fmt == "markdown":
            return report.render_markdown(self.plan, self.context)
        return render_text(self.plan, self.context)

    def close(self) -> None:
        """Release the database connections."""
        self.db.close()


def load(config: Path | str) -> DesiredState:
    """Load and validate a desired-state file or folder, without resolving secrets."""
    return load_desired(Path(config))


def plan(
    config: Path | str | DesiredState,
    workspace: Workspace,
    *,
    resolver: Callable[..., str] = resolve_secret,
    verbose: bool = False,
    refresh_state: bool = True,
) -> PlannedRun:
    """Compute the plan for a configuration against the workspace's database.

    With `refresh_state` the state file's snapshot is updated (as `dconn plan` does).
    """
    desired = config if isinstance(config, DesiredState) else load(config)
    check_writable(workspace.state_path)
    state = load_state(workspace.state_path)
    identity = target_identity(workspace.target.url, workspace.target.schema)
    _check_state_target(state, identity, workspace)
    keyring = KeyRing.from_setting(workspace.target.fernet_key)
    digester, same_key = _digester(keyring, state)
    db = airflow_db.open_database(workspace.target.url, workspace.target.schema, workspace.lock_timeout)
    try:
        check_against_table(desired, db.info)
        values = resolve_desired(desired, resolver)
        with airflow_db.transaction(db, write=False) as conn:
            raw = airflow_db.read_rows(conn, db)
        rows = codec.decode_rows(raw, keyring, digester)
        run = _assemble(
            desired, values, rows, state, db, keyring, digester, workspace, identity, same_key, verbose
        )
    except BaseException:
        db.close()
        raise
    if refresh_state:
        from .state import save_state

        save_state(workspace.state_path, run.state)
    return run


def _assemble(
    desired: DesiredState,
    values: dict[str, Values],
    rows: list[StoredRow],
    state: State | None,
    db: airflow_db.Database,
    keyring: KeyRing,
    digester: Digester,
    workspace: Workspace,
    identity: Mapping[str, object],
    same_key: bool,
    verbose: bool,
) -> PlannedRun:
    """Diff, detect drift, and prepare the next state (its snapshot refreshed)."""
    columns = sorted(db.info.columns)
    managed = frozenset(state.managed) if state else frozenset()
    result = compute_plan(values, rows, desired.settings, columns, managed=managed)
    if state and state.applied:
        applied = state.applied if same_key else {k: _drop_digests(v) for k, v in state.applied.items()}

        def recorded(v: Values) -> dict[str, object]:
            form = codec.recorded_form(v, digester, columns)
            return form if same_key else _drop_digests(form)

        result = _with_drift(result, detect_drift(applied, rows, recorded, managed))
    new_state = state or State()
    new_state.target = {"url": workspace.target.masked_url, "identity": identity}
    new_state.digest_key = _digest_key_record(digester)
    new_state.snapshot = snapshot_record(rows, digester, columns, db.info.shape)
    context = PlanContext(
        target=workspace.target.masked_url,
        shape=db.info.shape,
        rows=len(rows),
        connections=len({r.conn_id for r in rows}),
        verbose=verbose,
    )
    warnings = list(desired.warnings)
    if not keyring.enabled:
        warnings.append(
            "no Fernet key is set: passwords and extras are stored in clear, as Airflow does without one"
        )
    return PlannedRun(
        result, context, desired, values, rows, new_state, db, keyring, digester, workspace, warnings
    )


def _with_drift(result: Plan, drift: tuple) -> Plan:  # type: ignore[type-arg]
    """Return the plan with its drift section set."""
    from dataclasses import replace

    return replace(result, drift=drift)


def _drop_digests(form: dict[str, object]) -> dict[str, object]:
    """Remove secret digests from a recorded form (they cannot compare across keys)."""
    from .diff import DIGEST_KEY

    def strip(value: object) -> object:
        if isinstance(value, dict):
            if DIGEST_KEY in value:
                return None
            return {k: strip(v) for k, v in value.items()}
        return value

    return {k: strip(v) for k, v in form.items()}


def _check_state_target(state: State | None, identity: Mapping[str, object], workspace: Workspace) -> None:
    """Refuse a state file recorded for another database."""
    if state is None or state.target.get("identity") == identity:
        return
    raise StateError(
        f"state file {workspace.state_path} belongs to {state.target.get('url')}, not to "
        f"{workspace.target.masked_url}; pass --state with this target's state file"
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
    rows: list[StoredRow], digester: Digester, columns: list[str], shape: str
) -> dict[str, object]:
    """Return the state's snapshot of every row: ids and fields, secrets as digests."""
    return {
        "taken_at": now(),
        "shape": shape,
        "rows": [
            {
                "id": r.row_id,
                "conn_id": r.conn_id,
                "fingerprint": r.fingerprint,
                "fields": codec.recorded_form(r.values, digester, columns),
            }
            for r in rows
        ],
    }


def apply(run: PlannedRun, progress: Progress | None = None) -> int:
    """Carry out a planned run in one transaction and record it; return rows changed."""
    from .apply import execute

    return execute(run, progress)
