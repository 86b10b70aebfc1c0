"""One problem found in a configuration, as data: its file, its path, what, and how serious.

Schema problems, `extra_json` problems, conn_type findings and TOML syntax errors are all
`Finding`s, so `dconn validate` can print them as lines or as JSON (CONTRACT §13) and a report
can hold every problem of a document once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Severity = Literal["error", "warning", "note"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Finding:
    """One problem found in the configuration: its file, its path, what, and how serious.

    `file` is None for a problem that belongs to no file (a column limit found at plan time);
    `path` is the dotted TOML path (`connections."a.b".extra.key`), "" for the whole file.
    """

    file: Path | None
    path: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return ": ".join(str(part) for part in (self.file, self.path, self.message) if part)

    def to_json(self) -> dict[str, Any]:
        """Return the finding as `validate --format json` prints it (a note is a warning there)."""
        return {
            "file": str(self.file) if self.file is not None else "",
            "path": self.path,
            "message": self.message,
            "severity": "error" if self.severity == "error" else "warning",
        }


def dotted_path(parts: Iterable[str | int]) -> str:
    """Join path parts as TOML spells them: bare keys as they are, others quoted (`"a.b"`).

    Quoting keeps a conn_id with a dot or a control character one unambiguous, one-line part.
    """
    return ".".join(quote_key(p) if isinstance(p, str) else str(p) for p in parts)


def quote_key(key: str) -> str:
    """Quote a conn_id or key that is not a bare TOML key, as TOML would."""
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def is_within(path: str, other: str) -> bool:
    """Tell whether `path` is `other` or lies inside it (`connections.a.port` is in `connections.a`)."""
    return path == other or path.startswith(other + ".")


def errors_of(findings: Iterable[Finding]) -> list[Finding]:
    """Return the findings that are errors, in order."""
    return [f for f in findings if f.severity == "error"]
