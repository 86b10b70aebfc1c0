"""Where the REST API is and how dconn signs in: `--api-url`, `DCONN_API_*` variables.

The first that is set wins: the flag, then `DCONN_API_URL`. Credentials: `DCONN_API_TOKEN` (a
bearer token sent as is), `DCONN_API_TOKEN_CMD` (a command whose stdout is the token, run again
once when the API refuses it), `DCONN_API_USERNAME` + `DCONN_API_PASSWORD` (a JWT from Airflow
3's `POST /auth/token`; HTTP basic auth on Airflow 2). Nothing here contacts the server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from declarative_conns.errors import InputError

DEFAULT_API_TIMEOUT = 30.0

URL_VARIABLE = "DCONN_API_URL"
TOKEN_VARIABLE = "DCONN_API_TOKEN"  # noqa: S105 - a variable's name
TOKEN_CMD_VARIABLE = "DCONN_API_TOKEN_CMD"  # noqa: S105 - a variable's name
USERNAME_VARIABLE = "DCONN_API_USERNAME"
PASSWORD_VARIABLE = "DCONN_API_PASSWORD"  # noqa: S105 - a variable's name
CA_BUNDLE_VARIABLES = ("DCONN_API_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


@dataclass(frozen=True, repr=False)
class ApiSettings:
    """Hold the API's base URL and the credentials to reach it; the repr shows neither secret."""

    #: The deployment's base URL, without userinfo nor /api/vN: `https://airflow.example.com`.
    url: str
    token: str | None = None
    token_command: str | None = None
    username: str | None = None
    password: str | None = None
    timeout: float = DEFAULT_API_TIMEOUT
    #: A CA bundle file to verify the server's certificate with (else the system's and certifi's).
    ca_bundle: str | None = None

    def __repr__(self) -> str:
        return f"ApiSettings({self.url!r}, credentials={self.credentials_kind})"

    @property
    def credentials_kind(self) -> str:
        """Name the kind of credentials: token, token command, username and password, or none."""
        if self.token is not None:
            return "token"
        if self.token_command is not None:
            return "token command"
        if self.username is not None:
            return "username and password"
        return "none"

    def secret_texts(self) -> tuple[str, ...]:
        """Return every credential text, to keep out of any message."""
        return tuple(s for s in (self.token, self.password) if s)


def base_url(url: str) -> str:
    """Return the deployment's base: userinfo, query and a trailing /api/v1 or /api/v2 removed."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError):
        raise InputError(
            "the API URL is not a URL: give the deployment's base, e.g. https://airflow.example.com"
        ) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InputError(
            f"the API URL must start with http:// or https:// and name a host, not {mask_api_url(url)!r}"
        )
    path = parsed.path.rstrip("/")
    for suffix in ("/api/v1", "/api/v2"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{path}"


def mask_api_url(url: str) -> str:
    """Return a URL with any userinfo masked, for messages."""
    if "@" not in url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***@" + url.rpartition("@")[2]
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


def resolve_api_settings(
    api_url: str | None,
    timeout: float = DEFAULT_API_TIMEOUT,
    environ: Mapping[str, str] | None = None,
) -> ApiSettings | None:
    """Return the API settings from the flag and the environment; None when no API URL is given."""
    env = os.environ if environ is None else environ
    url = api_url or env.get(URL_VARIABLE) or None
    if url is None:
        return None
    if timeout <= 0:
        raise InputError(f"--api-timeout must be a positive number of seconds, not {timeout:g}")
    token = env.get(TOKEN_VARIABLE) or None
    command = env.get(TOKEN_CMD_VARIABLE) or None
    username = env.get(USERNAME_VARIABLE) or None
    password = env.get(PASSWORD_VARIABLE) or None
    given = [name for name, value in ((TOKEN_VARIABLE, token), (TOKEN_CMD_VARIABLE, command)) if value]
    if username or password:
        given.append(f"{USERNAME_VARIABLE}/{PASSWORD_VARIABLE}")
    if len(given) > 1:
        raise InputError(f"set one kind of API credentials, not {' and '.join(given)}")
    if (username is None) != (password is None):
        missing = PASSWORD_VARIABLE if password is None else USERNAME_VARIABLE
        raise InputError(f"{USERNAME_VARIABLE} and {PASSWORD_VARIABLE} go together: {missing} is not set")
    ca_bundle = next((env[name] for name in CA_BUNDLE_VARIABLES if env.get(name)), None)
    return ApiSettings(base_url(url), token, command, username, password, timeout, ca_bundle)
