"""Encrypt and decrypt as Airflow does, and digest secrets without keeping them.

Airflow encrypts `password` and `extra` with a MultiFernet over the comma-separated
`[core] fernet_key`: the first key encrypts, every key decrypts. Without a key it stores
clear text and sets `is_encrypted`/`is_extra_encrypted` to false.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from base64 import urlsafe_b64decode, urlsafe_b64encode
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from declarative_conns.core.model import canonical_json
from declarative_conns.errors import DecryptionError, TargetError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet


@dataclass(frozen=True, repr=False)
class KeyRing:
    """Hold the deployment's Fernet keys; an empty ring stores values in clear, as Airflow does."""

    keys: tuple[bytes, ...] = ()
    _fernets: tuple[Fernet, ...] = field(default=(), compare=False)

    def __repr__(self) -> str:
        return f"KeyRing(<{len(self.keys)} keys hidden>)"

    @classmethod
    def from_setting(cls, setting: str | None) -> KeyRing:
        """Build the ring from Airflow's `fernet_key` setting (comma-separated keys)."""
        parts = [p.strip() for p in (setting or "").split(",") if p.strip()]
        if not parts:
            return cls()
        from cryptography.fernet import Fernet

        fernets = []
        for position, part in enumerate(parts, start=1):
            try:
                fernets.append(Fernet(part.encode()))
            except (ValueError, TypeError):
                raise TargetError(
                    f"Fernet key #{position} is not a valid Fernet key "
                    "(32 url-safe base64-encoded bytes); check --fernet-key, DCONN_FERNET_KEY, "
                    "AIRFLOW__CORE__FERNET_KEY or [core] fernet_key in airflow.cfg"
                ) from None
        return cls(tuple(p.encode() for p in parts), tuple(fernets))

    @property
    def enabled(self) -> bool:
        """Tell whether values are encrypted (a key is set)."""
        return bool(self.keys)

    def encrypt(self, plaintext: str) -> str:
        """Encrypt with the first key, exactly as Airflow's `fernet.encrypt(...).decode()`."""
        return self._fernets[0].encrypt(plaintext.encode("utf-8")).decode()

    def decrypt(self, token: str, *, owner: str, what: str) -> tuple[str, int]:
        """Decrypt a token with the ring; return the text and the index of the key that worked.

        `owner` names the object in errors (`connection "warehouse"`), `what` the value.
        """
        if not self._fernets:
            raise DecryptionError(
                f"{owner}: the {what} is encrypted but no Fernet key is set; "
                "pass --fernet-key or set AIRFLOW__CORE__FERNET_KEY"
            )
        from cryptography.fernet import InvalidToken

        data = token.encode("utf-8")
        for index, fernet in enumerate(self._fernets):
            try:
                return fernet.decrypt(data).decode("utf-8"), index
            except InvalidToken:
                continue
        raise DecryptionError(
            f"{owner}: no key of the Fernet key ring decrypts its {what}; is this the deployment's fernet_key?"
        )

    def digester(self, state_key: bytes | None = None) -> Digester:
        """Return the digester keyed from the primary key, or from the state's random key."""
        if self.keys:
            return Digester.from_secret(b"fernet:" + self.keys[0], source="fernet")
        if state_key is None:
            state_key = secrets.token_bytes(32)
        return Digester.from_secret(b"state:" + state_key, source="state", stored_key=state_key)


@dataclass(frozen=True, repr=False)
class Digester:
    """Make keyed digests (HMAC-SHA256) of secrets and rows, so files hold no guessable value."""

    key: bytes
    key_id: str
    source: str
    stored_key: bytes | None = None

    def __repr__(self) -> str:
        return f"Digester(key_id={self.key_id!r})"

    @classmethod
    def from_secret(cls, secret: bytes, *, source: str, stored_key: bytes | None = None) -> Digester:
        """Derive the HMAC key and a public key id from a secret."""
        key = hashlib.sha256(b"dconn-digest-v1\0" + secret).digest()
        key_id = hashlib.sha256(b"dconn-key-id-v1\0" + secret).hexdigest()[:16]
        return cls(key, key_id, source, stored_key)

    def digest(self, value: Any) -> str:
        """Return the keyed digest of any JSON-compatible value."""
        # One shared encoder and the one-shot HMAC: called several times per row of a plan.
        text = canonical_json(value)
        return hmac.digest(self.key, text.encode("utf-8"), "sha256").hex()

    def stored_key_text(self) -> str | None:
        """Return the random key as text for the state file, when the key is not the Fernet key."""
        return None if self.stored_key is None else urlsafe_b64encode(self.stored_key).decode()


def decode_stored_key(text: str) -> bytes:
    """Read a random digest key back from the state file."""
    return urlsafe_b64decode(text.encode())
