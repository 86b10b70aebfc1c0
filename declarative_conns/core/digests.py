"""Decide which key the run's digests are made with, and whether the state's digests compare.

Digests are keyed from the first Fernet key; without a key, from a random key the state keeps
(the target holds clear text then anyway). After a key rotation, the state's digests are
re-keyed where the previous key is still in the ring, so a rotation is not reported as drift.
"""

from __future__ import annotations

from declarative_conns.core.crypto import Digester, KeyRing, decode_stored_key
from declarative_conns.core.state import State


def run_digester(keyring: KeyRing, state: State | None) -> tuple[Digester, bool]:
    """Return the digester for this run, and whether the state's digests were made with it."""
    recorded = state.digest_key if state else {}
    if not keyring.enabled and recorded.get("source") == "state" and recorded.get("key"):
        digester = keyring.digester(decode_stored_key(recorded["key"]))
    else:
        digester = keyring.digester()
    return digester, recorded.get("id") == digester.key_id


def state_digester(keyring: KeyRing, state: State) -> Digester | None:
    """Return the digester the state's digests were made with, when its key is still at hand."""
    record = state.digest_key
    if record.get("source") == "state" and record.get("key"):
        candidates = [KeyRing().digester(decode_stored_key(record["key"]))]
    else:
        candidates = [KeyRing.from_setting(key.decode()).digester() for key in keyring.keys]
    return next((d for d in candidates if d.key_id == record.get("id")), None)


def digest_key_record(digester: Digester) -> dict[str, str]:
    """Return the state's record of the digest key (the random key itself when it is not Fernet's)."""
    record = {"id": digester.key_id, "source": digester.source}
    stored = digester.stored_key_text()
    if stored:
        record["key"] = stored
    return record
