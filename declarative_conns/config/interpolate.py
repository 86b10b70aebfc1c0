"""`${vars.NAME}` in the strings of a layer: the one template dconn knows.

Hand-written rather than `string.Template`: a whole-string reference must keep the variable's
type (an integer port), `${` anything else must be an error rather than text left as it was, and
`$${` is the escape (Terraform's spelling), none of which Template does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: What a var may hold: TOML's plain scalars (vars are not secrets; plans show them).
VarValue = str | int | float | bool

VAR_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_WHOLE = re.compile(rf"\$\{{vars\.({VAR_NAME})\}}")
# `$${` (an escaped `${`), a `${...}` with its body, or a `${` that is never closed.
_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_BODY = re.compile(rf"vars\.({VAR_NAME})")
_ESCAPE_HINT = "write $${ for a literal ${"


class InterpolationError(ValueError):
    """Raise for a template dconn cannot fill; the caller adds the file and path."""


def interpolate(text: str, variables: Mapping[str, VarValue], defined_in: str = "") -> VarValue:
    """Return a string with every `${vars.NAME}` filled in.

    Exactly `"${vars.NAME}"` returns the var itself, of its own type; inside a longer string a
    var is written as TOML would (`true`, `5432`, `1.5`). `$${` gives a literal `${`. Raise
    InterpolationError for an undefined var or any other `${...}`; `defined_in` names where the
    vars come from (`environment "staging"`) for that message.
    """
    if "${" not in text:
        return text  # the common case, and the only one for every string without a template
    whole = _WHOLE.fullmatch(text)
    if whole is not None:
        return _lookup(whole.group(1), variables, defined_in)

    def fill(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        return as_text(_lookup(_var_name(match), variables, defined_in))

    return _TOKEN.sub(fill, text)


def unescape(text: str) -> str:
    """Return a var's own value with `$${` turned into `${`; refuse a var that uses a var.

    vars are plain values, not templates: letting them refer to each other would need an order
    and cycle checks for no gain a user has asked for, so `${vars.x}` inside a var is an error.
    """
    if "${" not in text:
        return text

    def plain(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name = _var_name(match)
        raise InterpolationError(
            f"a var cannot use another var (${{vars.{name}}}): vars are plain values; {_ESCAPE_HINT}"
        )

    return _TOKEN.sub(plain, text)


def whole_var(text: str) -> str | None:
    """Return the var a string names when it is exactly `${vars.NAME}` (the var's own type), else None."""
    found = _WHOLE.fullmatch(text)
    return found.group(1) if found else None


def has_template(text: str) -> bool:
    """Tell whether a string holds a `${` that is not escaped as `$${`."""
    return any(m.group(0) != "$${" for m in _TOKEN.finditer(text))


def as_text(value: VarValue) -> str:
    """Return a var as it reads inside a longer string: TOML's spelling of booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _var_name(match: re.Match[str]) -> str:
    """Return the var a `${...}` token names; raise for anything but `${vars.NAME}`."""
    body = match.group(1)
    if body is None:
        raise InterpolationError(f'unclosed "${{": write ${{vars.NAME}}, or {_ESCAPE_HINT}')
    found = _BODY.fullmatch(body)
    if found is None:
        raise InterpolationError(
            f'"${{{body}}}" is not a template dconn knows: write ${{vars.NAME}}, or {_ESCAPE_HINT}'
        )
    return found.group(1)


def _lookup(name: str, variables: Mapping[str, VarValue], defined_in: str) -> VarValue:
    """Return one var; an undefined one is an error listing those that are defined."""
    if name in variables:
        return variables[name]
    where = f"{defined_in} " if defined_in else ""
    known = ", ".join(sorted(variables))
    defines = f"defines {known}" if known else "defines no vars"
    raise InterpolationError(f'undefined var "{name}" in ${{vars.{name}}} ({where}{defines})')
