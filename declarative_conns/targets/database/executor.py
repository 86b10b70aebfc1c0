"""Carry out a plan in one transaction: lock, re-check, back up, delete, update, insert.

Rows are re-read inside the transaction, under dconn's lock, and compared with the
fingerprints the plan was computed against; any difference aborts with PlanIsStale.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from declarative_conns.core.model import Action, StoredRow, Values
from declarative_conns.core.sensitive import redact
from declarative_conns.errors import PlanIsStale, ValidationFailed
from declarative_conns.files.state import atomic_write, now, save_state
from declarative_conns.targets.database import engine as airflow_db
from declarative_conns.targets.database import rows as codec

if TYPE_CHECKING:
    from declarative_conns.api import PlannedRun

Progress = Callable[[int, int], None]


def execute(run: PlannedRun, progress: Progress | None = None) -> int:
    """Apply the run's plan; return how many rows were written or deleted."""
    plan, db = run.plan, run.db
    columns = sorted(db.info.columns)
    encoded = _encode_all(run, columns)
    deletes = [a.row_id for a in plan.actions if a.kind == "delete" and a.row_id is not None]
    updates = [
        {"id": a.row_id, **encoded[a.conn_id]}
        for a in plan.actions
        if a.kind == "update" and a.reason != "rotate"
    ]
    rotations = {a.row_id for a in plan.actions if a.reason == "rotate"}
    creates = [{"conn_id": a.conn_id, **encoded[a.conn_id]} for a in plan.actions if a.kind == "create"]
    with airflow_db.transaction(db, write=True) as conn:
        airflow_db.acquire_lock(conn, db, run.workspace.lock_timeout)
        try:
            current = airflow_db.read_rows(conn, db)
            _check_fresh(run, current)
            touched = set(deletes) | {u["id"] for u in updates} | rotations
            created = [c["conn_id"] for c in creates]
            if touched or created:
                _write_backup(run, [r for r in current if r["id"] in touched], created)
            steps: list[tuple[Writer, Sequence[Any]]] = [
                (airflow_db.delete_rows, deletes),
                (airflow_db.update_rows, updates),
                (airflow_db.update_rows, _reencrypted(run, [r for r in current if r["id"] in rotations])),
                (airflow_db.insert_rows, creates),
            ]
            total = _run_steps(conn, run, steps, progress)
            new_ids = airflow_db.row_ids_of(conn, db, [c["conn_id"] for c in creates])
        finally:
            airflow_db.release_lock(conn, db)
    record_state(run, encoded, new_ids)
    return total


Writer = Callable[[Any, Any, Any], None]


def _run_steps(
    conn: Any, run: PlannedRun, steps: Sequence[tuple[Writer, Sequence[Any]]], progress: Progress | None
) -> int:
    """Run each step's statements in chunks, reporting progress; return the rows touched."""
    total = sum(len(batch) for _, batch in steps)
    done = 0
    for write, batch in steps:
        for start in range(0, len(batch), 1000):
            chunk = batch[start : start + 1000]
            write(conn, run.db, chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return total


def _reencrypted(run: PlannedRun, raws: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return updates that re-encrypt rows with the first key, changing nothing else."""
    out = []
    for raw in raws:
        row: dict[str, Any] = {"id": raw["id"]}
        for column, flag in (("password", "is_encrypted"), ("extra", "is_extra_encrypted")):
            value = raw.get(column)
            if value and raw.get(flag):
                text, _ = run.keyring.decrypt(value, conn_id=str(raw["conn_id"]), what=column)
                value = run.keyring.encrypt(text)
            row[column], row[flag] = value, bool(raw.get(flag))
        out.append(row)
    return out


def _encode_all(run: PlannedRun, columns: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Encode (encrypt) every create and update; refuse values too long for their column."""
    encoded: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for action in run.plan.actions:
        if action.kind in ("create", "update") and action.values is not None:
            row = codec.encode_values(action.values, columns, run.keyring)
            problems.extend(airflow_db.check_lengths(run.db, action.conn_id, row))
            encoded[action.conn_id] = row
    if problems:
        raise ValidationFailed(problems)
    return encoded


def _check_fresh(run: PlannedRun, current: Sequence[Mapping[str, Any]]) -> None:
    """Refuse to go on when a row the plan depends on changed since it was computed."""
    found: dict[str, list[tuple[int, str]]] = {}
    expected = run.plan.expected
    for raw in current:
        conn_id = raw["conn_id"] if raw["conn_id"] is not None else ""
        if conn_id in expected:
            found.setdefault(conn_id, []).append((int(raw["id"]), codec.fingerprint(raw, run.digester)))
    changed = sorted(c for c, rows in expected.items() if tuple(found.get(c, ())) != tuple(rows))
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise PlanIsStale(
            f"the plan is stale: connection rows changed since it was made ({shown}); "
            "nothing was changed, run dconn plan again"
        )


def _write_backup(run: PlannedRun, rows: Sequence[Mapping[str, Any]], created: Sequence[str]) -> None:
    """Write the pre-image of every row about to change, as stored (never decrypted).

    `created` names the conn_ids the apply inserts, so `dconn restore` can remove them again.
    """
    folder = run.workspace.state_path.parent / "backups"
    stamp = now().replace(":", "").replace("+0000", "Z")
    document = {
        "format_version": 1,
        "target": run.state.target,
        "taken_at": now(),
        "note": "Rows as stored before a dconn apply. Encrypted values are Fernet tokens; "
        "values Airflow stored in clear (no Fernet key) are replaced by digests.",
        "rows": [_backup_row(r, run) for r in rows],
        "created": sorted(created),
    }
    text = json.dumps(document, indent=1, default=str) + "\n"
    atomic_write(folder / f"{stamp}-serial{run.state.serial + 1}.json", text.encode("utf-8"))


def _backup_row(raw: Mapping[str, Any], run: PlannedRun) -> dict[str, Any]:
    """Return a stored row for a backup, keeping no secret in clear.

    Fernet tokens are kept as they are. Values stored in clear are replaced by digests when they
    are secret: a password, an extra with a sensitive key, or a field the configuration fills
    from a secret reference.
    """
    row = dict(raw)
    declared = run.values.get(str(raw.get("conn_id")))
    referenced = {str(p[0]) for p in declared.secret_paths} if declared else set()
    for column, flag in (("password", "is_encrypted"), ("extra", "is_extra_encrypted")):
        value = row.get(column)
        if not value or row.get(flag):
            continue
        if column in referenced or not (column == "extra" and _holds_no_secret(str(value))):
            row[column] = {"$digest": run.digester.digest(value)}
    for column in referenced - {"password", "extra"}:
        if row.get(column):
            row[column] = {"$digest": run.digester.digest(row[column])}
    return row


def _holds_no_secret(extra_text: str) -> bool:
    """Tell whether a clear-text extra is a JSON object without any sensitive key."""
    try:
        parsed = json.loads(extra_text)
    except ValueError:
        return False
    return isinstance(parsed, dict) and redact(parsed, ("extra",)) == parsed


def record_state(
    run: PlannedRun,
    encoded: Mapping[str, Mapping[str, Any]] | None = None,
    new_ids: Mapping[str, int] | None = None,
) -> None:
    """Update the state after an apply: what dconn manages and how it left each row.

    An apply with nothing to change records too: the declared connections match the table, so
    dconn now manages them (as after `dconn export`, adopting an existing deployment).
    """
    from declarative_conns.api import snapshot_record

    columns = sorted(run.db.info.columns)
    encoded, new_ids = encoded or {}, new_ids or {}
    rows = _rows_after(run, encoded, new_ids)
    state = run.state
    state.managed = sorted(run.values)
    state.applied = {c: codec.recorded_form(v, run.digester, columns) for c, v in run.values.items()}
    state.snapshot = snapshot_record(
        rows, run.digester, columns, run.db.info.shape, run.values, recorded=state.applied
    )
    save_state(run.workspace.state_path, state)


def _rows_after(
    run: PlannedRun, encoded: Mapping[str, Mapping[str, Any]], new_ids: Mapping[str, int]
) -> list[StoredRow]:
    """Return the rows as they are after the apply, without reading the table again."""
    by_id = {r.row_id: r for r in run.rows}
    for action in run.plan.actions:
        if action.kind == "delete" and action.row_id is not None:
            by_id.pop(action.row_id, None)
        elif action.values is not None:
            row_id = action.row_id if action.kind == "update" else new_ids.get(action.conn_id)
            if row_id is not None:
                by_id[row_id] = _stored(run, row_id, action, encoded[action.conn_id])
    return [by_id[i] for i in sorted(by_id)]


def _stored(run: PlannedRun, row_id: int, action: Action, row: Mapping[str, Any]) -> StoredRow:
    """Build the StoredRow of a row dconn just wrote."""
    raw = {"id": row_id, "conn_id": action.conn_id, **row}
    values = action.values or Values({})
    return StoredRow(
        row_id,
        action.conn_id,
        values,
        codec.fingerprint(raw, run.digester),
        0 if run.keyring.enabled else None,
    )
