"""Which names are secret: Airflow's sensitive words, as its secrets masker matches them.

Kept apart from `sensitive` (redaction, masked dicts), which builds on the kinds, so that the
kinds can ask about a name without an import cycle.
"""

from __future__ import annotations

import re
from functools import lru_cache

#: Airflow's secrets_masker DEFAULT_SENSITIVE_FIELDS (3.3.2), matched as substrings.
SENSITIVE_NAMES: tuple[str, ...] = (
    "access_key",
    "access_token",
    "api_key",
    "apikey",
    "auth_header",
    "authorization",
    "bearer",
    "connection_string",
    "dsn",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "proxy",
    "proxies",
    "secret",
    "service_account",
    "service_key",
    "token",
    "keyfile_dict",
    "webhook_url",
)

_NON_WORD = re.compile(r"\W+")
#: One search for every word at once.
_ANY_WORD = re.compile("|".join(map(re.escape, SENSITIVE_NAMES)))


#: Extras repeat a few keys in every connection; a variable's key is asked about three times in
#: a run (declared, resolved, read), so the cache holds as many keys as a large plan has.
@lru_cache(maxsize=1 << 16)
def is_sensitive_key(name: str) -> bool:
    """Tell whether an extra key or a variable's key names a secret, as Airflow's masker decides it."""
    return _ANY_WORD.search(_NON_WORD.sub("_", name.lower())) is not None
