"""Move a state between its stores: `dconn state pull` reads it, `dconn state push` replaces it.

The way from a state file to the target database (`--state db:`) and back. A push never
carries a state to another target, and replaces a state of another lineage, or a newer one,
only when forced; what it writes is the next serial of the store, so a run that read the
replaced state cannot write over it (compare-and-swap).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from declarative_conns.core.state import State
from declarative_conns.errors import InputError, StateError
from declarative_conns.files.state import parse_state, version_of
from declarative_conns.files.store import StateStore


def pull_state(store: StateStore) -> State:
    """Return the store's state; no state yet is an error (an apply writes the first)."""
    state = store.load()
    if state is None:
        raise StateError(f"there is no state in {store.describe()} yet: the first dconn apply writes it")
    return state


def read_state_file(path: Path) -> State:
    """Read and check a state document to push (a state file, or the output of `dconn state pull`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such state file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read ({type(exc).__name__})") from None
    return parse_state(text, str(path), "state file", hint="check that it is a dconn state document")


def push_state(
    store: StateStore, state: State, identity: Mapping[str, object], *, force: bool = False
) -> State:
    """Replace the store's state with `state`; return the state as written (its serial is the store's next).

    Refused, always, when `state` was recorded for another target than `identity`; refused
    without `force` when the store holds another lineage or a newer serial of this one.
    """
    from declarative_conns.targets.discovery import describe_identity

    recorded = state.target.get("identity") or {}
    if recorded != dict(identity):
        raise StateError(
            f"the state was recorded for {describe_identity(recorded)}, not for {describe_identity(identity)}: "
            "a state is never moved to another target (the same database under another host name counts as "
            "another: push it where the database is reached as recorded)"
        )
    if store.load_pending() is not None:
        raise StateError(
            f"an apply's state beside {store.describe()} is not settled yet: run dconn plan first, then push"
        )
    current = store.load()
    if current is not None and not force:
        if current.lineage != state.lineage:
            raise StateError(
                f"{store.describe()} holds another state (lineage {current.lineage}, not {state.lineage}); "
                "nothing was written: pass --force to replace it"
            )
        if current.serial > state.serial:
            raise StateError(
                f"{store.describe()} holds a newer serial of this state ({current.serial}, not {state.serial}); "
                "nothing was written: pass --force to replace it"
            )
    pushed = replace(state, before_apply={})
    # The next serial of both: a run that read either one cannot write over the pushed state.
    pushed.serial = max(state.serial, current.serial if current is not None else 0)
    store.save(pushed, version_of(current), create=True)
    return pushed
