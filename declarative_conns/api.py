"""dconn as a library: plan and apply with the same guarantees as the CLI.

Beside it: `workspace` (where dconn works: target, state, backups), `saved_plans` (plan files)
and `restoring` (dconn restore).

    import declarative_conns as dc
    ws = dc.Workspace.from_airflow_config()          # or dc.Workspace.from_url(url, fernet_key)
    with dc.plan("connections.toml", ws) as run:     # or dc.plan(dc.desired_from_dicts({...}), ws)
        print(run.render("text"))
        if run.plan.summary.has_changes:
            dc.apply(run)

Each function is a straight pipeline over the layers: the configuration (config), the target
(targets), the decisions (core) and the files (files). Nothing here prints or exits; failures
are DconnError subclasses.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from declarative_conns.config.loader import DesiredState, load_desired
from declarative_conns.config.secrets import resolve_desired, resolve_secret
from declarative_conns.core.crypto import Digester
from declarative_conns.core.digests import run_digester
from declarative_conns.core.kinds import BY_NAME
from declarative_conns.core.model import Address, SecretRef, Values, address_order, by_address
from declarative_conns.core.operations import Create, Delete, Operation, Plan, Reencrypt, Update
from declarative_conns.core.planner import make_plan, state_after_apply
from declarative_conns.core.state import State
from declarative_conns.errors import (
    ApplyFailed,
    ApplyInterrupted,
    InputError,
    PlanIsStale,
    StateError,
    ValidationFailed,
)
from declarative_conns.files import backups
from declarative_conns.files.state import StateChanged, Version, version_of
from declarative_conns.files.store import (
    StateNotSaved,
    StateStore,
)
from declarative_conns.output.text import PlanContext
from declarative_conns.targets.base import Progress, Snapshot, Target, TargetInfo
from declarative_conns.workspace import Workspace

Resolver = Callable[[SecretRef], str]


@dataclass(repr=False)
class PlannedRun:
    """Hold a computed plan with everything needed to render it, apply it and record it."""

    plan: Plan
    context: PlanContext
    desired: DesiredState
    values: dict[Address, Values]
    snapshot: Snapshot
    #: The state the run read (what an apply's compare-and-swap expects) and the one it records.
    read_version: Version
    state: State
    info: TargetInfo
    digester: Digester
    workspace: Workspace
    warnings: list[str] = field(default_factory=list)
    #: Every declared secret is sent again (a target that never shows secrets).
    resend_secrets: bool = False
    #: Set once apply() has carried the run out (or committed it): a run applies once.
    applied: bool = False

    @property
    def target(self) -> Target:
        """Return the target the plan was made against."""
        return self.workspace.target

    def render(self, fmt: str = "text") -> str:
        """Return the plan as text, markdown or JSON; secrets never appear in any of them."""
        from declarative_conns.output import report
        from declarative_conns.output.text import render_text

        if fmt not in ("text", "json", "markdown"):
            raise InputError(f"the plan format must be text, json or markdown, not {fmt!r}")
        if fmt == "json":
            return report.render_json(self.plan, self.context)
        if fmt == "markdown":
            return report.render_markdown(self.plan, self.context)
        return render_text(self.plan, self.context)

    def close(self) -> None:
        """Release the target's connections."""
        self.workspace.target.close()

    def __enter__(self) -> PlannedRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.plan.summary
        return (
            f"PlannedRun(target={self.target.display!r}, add={s.add}, change={s.change}, destroy={s.destroy})"
        )


def load(config: Path | str) -> DesiredState:
    """Load and validate a desired-state file or folder, without resolving secrets."""
    return load_desired(Path(config))


def plan(
    config: Path | str | DesiredState,
    workspace: Workspace,
    *,
    resolver: Resolver = resolve_secret,
    verbose: bool = False,
    rotate: bool = False,
    refresh_state: bool = True,
    targets: Collection[Address] | None = None,
    resend_secrets: bool = False,
) -> PlannedRun:
    """Compute the plan for a configuration against the workspace's target.

    With `refresh_state` (and not read-only) the state's snapshot is rewritten when it changed,
    as `dconn plan` does; with `rotate`, rows encrypted with an older key of the ring are
    re-encrypted with the first. `targets` limits the plan to those objects (`--target`): the
    plan says it is partial. Through a target that never shows secrets (an API), a secret
    counts as unchanged when the state records that dconn sent its declared value; with
    `resend_secrets` every declared secret is sent again. The target stays open for `apply`;
    close the run when done.
    """
    desired = config if isinstance(config, DesiredState) else load(config)
    store, target = workspace.state, workspace.target
    if not workspace.read_only:
        store.check_writable()
    try:
        previous = store.load()  # a state in the database is read through the target's connection
        _check_state_target(previous, target, store)
    except BaseException:
        target.close()
        raise
    digester, same_key = run_digester(target.keyring, previous)
    info = target.open()
    try:
        kinds = _check_kinds(desired, info, target)
        values = resolve_desired(desired, resolver)
        snapshot = target.read(kinds, digester)
        problems = target.check_keys(sorted(values, key=address_order), snapshot.objects)
        if problems:
            raise ValidationFailed(problems)
        previous, settled = _settle_pending(store, previous, snapshot, digester, workspace.read_only)
        read_version = version_of(previous)
        # What the state held before the plan refreshes it (make_plan sets new members on it).
        recorded_before = copy.copy(previous)
        if targets is not None:
            _check_targets(targets, desired, snapshot, kinds)
        skipped = {address for address, _ in snapshot.skipped}
        declared = {a: v for a, v in values.items() if a not in skipped}
        snapshot, notes = _fill_hidden(
            snapshot, declared, previous, digester, same_key, info, target, resend_secrets
        )
        planned = make_plan(
            declared,
            [o for o in snapshot.objects if o.address not in skipped],
            desired.settings,
            kinds,
            {k: info.fields[k] for k in kinds},
            previous,
            target.keyring,
            digester,
            same_key,
            target={"url": target.display, "identity": dict(target.identity)},
            shape=info.shape,
            rotate=rotate,
            sees_secrets=target.capabilities.sees_secrets,
            ignore_changes={a: o.ignore_changes for a, o in desired.objects.items() if o.ignore_changes},
            targets=targets,
        )
        problems = target.check_writes(planned.plan.operations)
        if problems:
            raise ValidationFailed(problems)
    except BaseException:
        target.close()
        raise
    warnings = [*desired.warnings, *settled, *(why for _, why in snapshot.skipped), *planned.warnings]
    warnings += shadowing_warnings(values)
    if not target.keyring.enabled and target.capabilities.sees_secrets:
        warnings.append(
            "no Fernet key is set: passwords and extras are stored in clear, as Airflow does without one"
        )
    context = _context(info, target, snapshot, planned.plan, verbose, notes)
    if verbose:
        context = replace(context, origins=change_origins(planned.plan, desired))
    run = PlannedRun(
        planned.plan,
        context,
        desired,
        values,
        snapshot,
        read_version,
        planned.state,
        info,
        digester,
        workspace,
        warnings,
        resend_secrets,
    )
    if refresh_state and not workspace.read_only and not planned.state.same_content(recorded_before):
        _save_snapshot(store, run)
    return run


def _check_targets(
    targets: Collection[Address], desired: DesiredState, snapshot: Snapshot, kinds: tuple[str, ...]
) -> None:
    """Refuse a --target naming a kind the configuration does not manage, or an object found nowhere."""
    found = {o.address for o in snapshot.objects}
    problems = []
    for address in sorted(targets):
        if address.kind not in kinds:
            problems.append(
                f"--target {address.kind}.{address.key}: the configuration does not manage "
                f"{BY_NAME[address.kind].plural} (it has no [{BY_NAME[address.kind].plural}] table)"
            )
        elif address not in desired.objects and address not in found:
            problems.append(
                f"--target {address.kind}.{address.key}: no {address.kind} of that key is declared or on the target"
            )
    if problems:
        raise InputError("; ".join(problems))


def _check_state_target(state: State | None, target: Target, store: StateStore) -> None:
    """Refuse a state file recorded for another target; the file is left as it is.

    A state in the target database belongs to it whatever host name reached it (a tunnel, a
    restored copy): its next write records the identity it was reached by.
    """
    if state is None or store.inside_target or state.target.get("identity") == dict(target.identity):
        return
    from declarative_conns.targets.discovery import describe_identity

    raise StateError(
        f"state file {store.describe()} belongs to {describe_identity(state.target.get('identity') or {})}, "
        f"not to {describe_identity(target.identity)}; pass --state with this target's state file"
    )


def _check_kinds(desired: DesiredState, info: TargetInfo, target: Target) -> tuple[str, ...]:
    """Return the kinds the document manages; refuse fields (or kinds) the target has no place for."""
    problems = []
    for name in desired.kinds:
        if name not in info.fields:
            problems.append(
                f"{target.display} has no place for {BY_NAME[name].plural} (Airflow {info.shape})"
            )
    for address, obj in sorted(desired.objects.items(), key=by_address):
        have = info.fields.get(address.kind, ())
        kind = BY_NAME[address.kind]
        for name in obj.fields:
            if name in kind.fields and name not in have:
                since = f"; it needs Airflow {kind.since[name]}+" if name in kind.since else ""
                problems.append(
                    f"{obj.source}: {kind.plural}.{address.key}.{name}: the target's "
                    f"{address.kind} table (Airflow {info.shape}) has no {name} column{since}"
                )
    if problems:
        raise ValidationFailed(problems)
    return tuple(kind for kind in BY_NAME if kind in desired.kinds)


def _settle_pending(
    store: StateStore, previous: State | None, snapshot: Snapshot, digester: Digester, read_only: bool
) -> tuple[State | None, list[str]]:
    """Settle the state of an apply interrupted between its commit and its state write.

    The pending state is the state if the target holds what that apply wrote; otherwise the apply
    did not commit and the pending state is dropped. A read-only run decides without writing.
    """
    pending = store.load_pending()
    if pending is None:
        return previous, []
    if pending.lineage != (previous.lineage if previous else pending.lineage):
        return previous, [
            f"the pending state beside {store.describe()} belongs to another state (lineage {pending.lineage}); "
            "left as it is"
        ]
    committed = _holds_pending(pending, snapshot, digester)
    if not read_only:
        if committed:
            store.promote()
        else:
            store.discard_pending()
    if committed:
        return pending, [
            f"an earlier apply committed but could not record its state: {store.describe()} now records it"
        ]
    return previous, []


def _holds_pending(pending: State, snapshot: Snapshot, digester: Digester) -> bool:
    """Tell whether the target shows the pending apply's writes.

    A transaction shows all of them or none: when every object the apply touched is as it was
    before the apply, the apply did not commit.
    """
    if pending.digest_key.get("id") != digester.key_id or not pending.before_apply:
        return True  # nothing to compare with (another key): keep what the apply recorded
    now: dict[Address, set[tuple[Any, str]]] = {}
    for obj in snapshot.objects:
        if obj.address in pending.before_apply:
            now.setdefault(obj.address, set()).add((obj.row_id, obj.fingerprint))
    before = {a: {(seen[0], seen[1]) for seen in rows} for a, rows in pending.before_apply.items()}
    return any(now.get(a, set()) != rows for a, rows in before.items())


def _save_snapshot(store: StateStore, run: PlannedRun) -> None:
    """Write the refreshed snapshot, unless another run wrote the state meanwhile (then it is kept).

    A store that cannot take it (a database without the `dconn_state` table, which only an
    apply creates) leaves it in memory: the apply writes it.
    """
    from declarative_conns.files.atomic import now

    run.state.snapshot["taken_at"] = now()
    try:
        written = store.save(run.state, run.read_version)
    except StateChanged:
        run.warnings.append(
            f"{store.describe()} was written by another dconn run meanwhile; its snapshot was not refreshed"
        )
        return
    except StateNotSaved as error:
        run.warnings.append(str(error))
        return
    if written:
        run.read_version = version_of(run.state)


def _context(
    info: TargetInfo,
    target: Target,
    snapshot: Snapshot,
    plan: Plan,
    verbose: bool,
    notes: tuple[str, ...] = (),
) -> PlanContext:
    """Describe what the plan was computed against, for its heading."""
    counts: dict[str, tuple[int, int]] = {}
    for kind in plan.kinds:
        objects = [o for o in snapshot.objects if o.address.kind == kind]
        counts[kind] = (len({o.address for o in objects}), len(objects))
    if plan.targets is not None:
        listed = ", ".join(str(a) for a in plan.targets)
        notes = (
            *notes,
            f"this plan is partial (--target): only {listed}; every other object is neither planned nor changed",
        )
    duplicates = target.capabilities.duplicate_keys
    where = "the database" if target.capabilities.transactional else "Airflow"
    return PlanContext(
        target.display, info.description, info.shape, counts, verbose, notes, where, counts_rows=duplicates
    )


def change_origins(plan: Plan, desired: DesiredState) -> dict[tuple[Address, Any], str]:
    """Return the file that set each planned change's value (`-v`): the layer that wrote it last."""
    from declarative_conns.config.layers import origin_of

    origins: dict[tuple[Address, Any], str] = {}
    for op in plan.operations:
        declared = desired.objects.get(op.address)
        if declared is None or not isinstance(op, (Create, Update)):
            continue
        for change in op.changes:
            if change.kind != "remove":
                origins[(op.address, change.path)] = _shown_path(
                    origin_of(declared, [str(p) for p in change.path])
                )
    return origins


def _shown_path(path: Path) -> str:
    """Return a path relative to the current directory when inside it."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _fill_hidden(
    snapshot: Snapshot,
    declared: Mapping[Address, Values],
    previous: State | None,
    digester: Digester,
    same_key: bool,
    info: TargetInfo,
    target: Target,
    resend: bool,
) -> tuple[Snapshot, tuple[str, ...]]:
    """Fill in the secrets a target hides (core.write_only) and say what cannot be verified."""
    if target.capabilities.sees_secrets:
        return snapshot, ()
    from declarative_conns.core.write_only import fill_hidden

    applied = previous.applied if previous is not None else {}
    filled = fill_hidden(
        snapshot.objects, declared, applied, digester if same_key else None, resend=resend, unseen=info.unseen
    )
    notes = []
    if filled.unverified:
        n = filled.unverified
        notes.append(
            f"{target.display} does not show secrets: {n} secret value{'s are' if n != 1 else ' is'} taken to be "
            "what dconn last sent and cannot be verified (--resend-secrets sends every declared secret again)"
        )
    if filled.unknown:
        n = filled.unknown
        notes.append(
            f"Airflow 2's REST API does not say whether a connection has a password: {n} managed "
            f"connection{'s' if n != 1 else ''} without a declared password {'are' if n != 1 else 'is'} taken to have none"
        )
    return replace(snapshot, objects=filled.objects), tuple(notes)


def shadowing_warnings(
    values: Mapping[Address, Values], environ: Mapping[str, str] | None = None
) -> list[str]:
    """Warn about declared objects that an AIRFLOW_CONN_<ID> / AIRFLOW_VAR_<KEY> variable shadows in Airflow."""
    env = os.environ if environ is None else environ
    prefixes = {"connection": "AIRFLOW_CONN_", "variable": "AIRFLOW_VAR_"}
    warnings = []
    # Only the shadowed few are sorted (most runs have none), not every declared object.
    shadowed = [a for a in values if a.kind in prefixes and f"{prefixes[a.kind]}{a.key.upper()}" in env]
    for address in sorted(shadowed, key=address_order):
        name = f"{prefixes[address.kind]}{address.key.upper()}"
        warnings.append(
            f"{address}: {name} is set in this environment; where Airflow sees it too, Airflow reads "
            "that variable, not the database row"
        )
    return warnings


def apply(run: PlannedRun, progress: Progress | None = None) -> int:
    """Carry out a planned run (one transaction on a database) and record it; return rows changed.

    A plan without changes writes nothing to the target; the state then records the declared
    objects as managed (adopting them) and its refreshed snapshot.
    """
    workspace, target, plan = run.workspace, run.target, run.plan
    if workspace.read_only:
        raise InputError("this run is read-only: it cannot apply")
    if run.applied:
        raise PlanIsStale("this plan was applied already; run dconn plan again")
    store = workspace.state
    if not plan.summary.has_changes:
        state = _state_after(run, ())
        store.save(state, run.read_version, create=True)
        run.applied = True
        return 0
    staged = committed = False
    try:
        with target.session(workspace.lock_timeout) as session:
            store.prepare(session)  # before any write: MySQL commits a CREATE TABLE at once
            _check_fresh(run, session.fingerprints(plan.kinds, run.digester, sorted(plan.expected)), store)
            created = [op.address for op in plan.operations if isinstance(op, Create)]
            pre_images = session.pre_images(plan.operations, run.values, run.digester)
            backups.write_apply_backup(
                store.backups_dir,
                run.state,
                pre_images,
                created,
                sees_secrets=target.capabilities.sees_secrets,
            )
            result = session.write(plan.operations, run.digester, progress)
            state = _state_after(run, result.done, result.new_ids, result.fingerprints)
            state.before_apply = {
                op.address: [list(s) for s in plan.expected.get(op.address, ())] for op in plan.operations
            }
            store.stage(state, run.read_version, session)
            staged = True
        committed = run.applied = True
        store.promote()
        if result.failure is not None:
            raise _stopped(run, result.done, result.failure)
    except (KeyboardInterrupt, StateError) as error:
        if not staged:
            raise
        # The state's pending file records the apply; the next run settles it against the target.
        where = f"the next dconn run records them in {store.describe()}"
        if isinstance(error, StateError) and committed:
            raise StateError(
                f"the apply committed, but its state could not be written ({error}); {where}"
            ) from None
        if committed:
            raise ApplyInterrupted(
                f"interrupted after the apply committed: the changes are in {target.display}; {where}"
            ) from None
        raise ApplyInterrupted(
            f"interrupted while the apply was committing; the next dconn run finds out whether it did and records it "
            f"in {store.describe()}"
        ) from None
    return len(plan.operations)


def _stopped(run: PlannedRun, done: Sequence[Operation], failure: Exception) -> ApplyFailed:
    """Say where an apply without a transaction stopped: what it wrote, what it did not, and why."""
    written = {(op.address, type(op)) for op in done}
    left = [op for op in run.plan.operations if (op.address, type(op)) not in written]

    def listed(ops: Sequence[Operation]) -> str:
        names = [f"{_VERB[type(op)]} {op.address}" for op in ops]
        return (
            ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "") or "nothing"
        )

    return ApplyFailed(
        f"the apply stopped at a failure: {failure}. Written: {listed(done)}. Not written: {listed(left)}. "
        f"{run.workspace.state.describe()} records what was written; run dconn plan to see what remains"
    )


_VERB = {Create: "created", Update: "updated", Delete: "deleted", Reencrypt: "re-encrypted"}


def _state_after(
    run: PlannedRun,
    done: Any,
    new_ids: Mapping[Address, int | None] | None = None,
    fingerprints: Mapping[tuple[Address, int | None], str] | None = None,
) -> State:
    """Return the state after carrying out `done` of the run's plan."""
    from declarative_conns.files.atomic import now

    state = state_after_apply(
        replace(
            run.state,
            managed=set(run.state.managed),
            applied=dict(run.state.applied),
            snapshot=dict(run.state.snapshot),
        ),
        run.plan,
        run.values,
        [o for o in run.snapshot.objects if o.address.kind in run.plan.kinds],
        done,
        new_ids or {},
        fingerprints or {},
        run.digester,
        {k: run.info.fields[k] for k in run.plan.kinds},
    )
    state.snapshot["taken_at"] = now()
    return state


def _check_fresh(run: PlannedRun, current: Mapping[Address, Any], store: StateStore) -> None:
    """Refuse to go on when an object or the state the plan depends on changed since it was computed."""
    expected = run.plan.expected
    changed = sorted(str(a) for a, seen in expected.items() if tuple(current.get(a, ())) != tuple(seen))
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise PlanIsStale(
            f"the plan is stale: objects changed since it was made ({shown}); nothing was changed, run dconn plan again"
        )
    if version_of(store.load()) != run.read_version or store.load_pending() is not None:
        raise PlanIsStale(
            f"the plan is stale: {store.describe()} was written by another dconn run since the plan was made; "
            "nothing was changed, run dconn plan again"
        )
