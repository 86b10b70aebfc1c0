"""HTTP to Airflow's REST API: one httpx client, sign-in, retries, and errors a person can act on.

The client finds which API the deployment speaks (`/api/v2` on Airflow 3, `/api/v1` on Airflow
2.7+), signs in as the settings say, reuses one connection, and turns every failure into one
`ApiError` line that names the URL and never a credential or a value sent.

Retries: reads, and writes that are safe to repeat, are retried with backoff when the server
answers 429, 502, 503 or 504 (or cannot be connected to); a request that creates objects is
never repeated blindly. The loop is written here, not taken from a retry library, because the
policy depends on each request (its method, whether it creates) and on `Retry-After`.
"""

from __future__ import annotations

import re
import shlex
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from declarative_conns.core.model import SecretRef
from declarative_conns.errors import DconnError, SecretError
from declarative_conns.targets.api.settings import ApiSettings, mask_api_url

RETRY_STATUSES = frozenset({429, 502, 503, 504})
ATTEMPTS = 4
#: The longest wait between attempts, whatever Retry-After asks.
MAX_BACKOFF = 10.0
#: Airflow 2.7 is the first Airflow 2 whose API dconn supports.
MIN_AIRFLOW2 = (2, 7)
#: What an Airflow 3 server answers for a token it no longer takes.
EXPIRED_TOKEN_DETAILS = ("Token Expired", "Invalid JWT token")


class ApiError(DconnError):
    """Raise when the REST API cannot be reached, refuses the credentials or a request, or fails."""

    def __init__(self, message: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class ServerInfo:
    """Say which API the deployment answered on: its prefix (`/api/v2`) and Airflow's version."""

    prefix: str
    version: str

    @property
    def major(self) -> int:
        """Return Airflow's major version."""
        return version_tuple(self.version)[0]


def version_tuple(version: str) -> tuple[int, ...]:
    """Return `3.2.1` as (3, 2, 1); letters after the digits of a part are dropped (`3.1.0rc1`)."""
    parts = []
    for part in version.split(".")[:3]:
        digits = re.match(r"\d*", part)
        parts.append(int(digits.group()) if digits and digits.group() else 0)
    return tuple(parts)


class ApiClient:
    """Talk to one deployment's REST API over one reused connection."""

    def __init__(
        self, settings: ApiSettings, sleep: Any = time.sleep, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.settings = settings
        self._transport = transport
        self.display = mask_api_url(settings.url)
        self.server: ServerInfo | None = None
        self._http: httpx.Client | None = None
        self._token: str | None = settings.token
        self._sleep = sleep
        #: Texts that never appear in a message: credentials, and secret values sent.
        self._hidden: set[str] = set(settings.secret_texts())

    def __repr__(self) -> str:
        return f"ApiClient({self.display!r})"

    # -- connecting ------------------------------------------------------------------------

    def open(self) -> ServerInfo:
        """Find the API the deployment speaks and its Airflow version (nothing is written)."""
        if self.server is not None:
            return self.server
        self._http = httpx.Client(
            timeout=httpx.Timeout(self.settings.timeout),
            verify=self._verify(),
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "dconn"},
            trust_env=True,
            transport=self._transport,
        )
        for prefix in ("/api/v2", "/api/v1"):
            answer = self._send("GET", self.settings.url + prefix + "/version", retry=True, auth=None)
            if answer.status_code in (401, 403):
                self.server = ServerInfo(prefix, "")  # the credentials are needed to go on
                answer = self._authorized("GET", prefix + "/version", retry=True)
            if answer.status_code == 200 and _json(answer).get("version"):
                info = ServerInfo(prefix, str(_json(answer)["version"]))
                if info.major == 2 and version_tuple(info.version)[:2] < MIN_AIRFLOW2:
                    raise ApiError(
                        f"{self.display} runs Airflow {info.version}: dconn's API target needs Airflow 2.7 or later "
                        "(or target the metadata database with --db-url)"
                    )
                self.server = info
                return info
            self.server = None
            if answer.status_code >= 500:
                raise self._status_error(answer, "GET", prefix + "/version")
        raise ApiError(
            f"{self.display} does not answer as an Airflow REST API (neither /api/v2/version nor "
            "/api/v1/version): give the deployment's base URL, e.g. https://airflow.example.com"
        )

    def _verify(self) -> ssl.SSLContext | bool:
        """Return how to verify TLS: the CA bundle named, else the defaults."""
        bundle = self.settings.ca_bundle
        if not bundle:
            return True
        try:
            return ssl.create_default_context(cafile=bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ApiError(f"cannot read the CA bundle {bundle}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Close the connection."""
        if self._http is not None:
            self._http.close()
            self._http = None
        self.server = None

    def hide(self, *texts: str) -> None:
        """Keep these texts (secret values about to be sent) out of every message."""
        self._hidden.update(t for t in texts if t and len(t) >= 3)

    # -- requests --------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        body: Any = None,
        retry: bool | None = None,
        allow: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send a request to the API (`path` under its prefix); raise ApiError unless it succeeded or is allowed.

        `retry` defaults to: yes for GET, PATCH and DELETE; never for POST (a create).
        """
        assert self.server is not None, "open() first"
        safe = method != "POST" if retry is None else retry
        answer = self._authorized(method, self.server.prefix + path, params=params, body=body, retry=safe)
        if answer.is_success or answer.status_code in allow:
            return answer
        raise self._status_error(answer, method, path)

    def _authorized(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send with the credentials; fetch a new token once when the server refuses the one held."""
        prefix = self.server.prefix if self.server else "/api/v2"
        url = self.settings.url + path
        answer = self._send(method, url, auth=prefix, **kwargs)
        if self._refused_token(answer) and self._can_renew():
            self._token = None
            answer = self._send(method, url, auth=prefix, **kwargs)
        return answer

    def _refused_token(self, answer: httpx.Response) -> bool:
        """Tell whether the server refused the bearer token (401, or Airflow 3's 403 for an invalid one)."""
        if answer.status_code == 401:
            return True
        return answer.status_code == 403 and _detail(answer) in EXPIRED_TOKEN_DETAILS

    def _can_renew(self) -> bool:
        """Tell whether a new token can be had: from the command, or by signing in again on Airflow 3."""
        settings = self.settings
        if settings.token_command is not None:
            return True
        return settings.username is not None and self._uses_jwt()

    def _uses_jwt(self) -> bool:
        """Tell whether username and password are exchanged for a JWT (Airflow 3) rather than sent (Airflow 2)."""
        return self.server is None or self.server.prefix == "/api/v2"

    def _send(
        self,
        method: str,
        url: str,
        *,
        auth: str | None,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        body: Any = None,
        retry: bool,
    ) -> httpx.Response:
        """Send one request, retrying with backoff when it is safe and the server asks for patience."""
        http = self._http
        assert http is not None
        for attempt in range(ATTEMPTS):
            headers, basic = self._credentials(auth) if auth is not None else ({}, None)
            try:
                answer = http.request(method, url, params=params, json=body, headers=headers, auth=basic)
            except httpx.TimeoutException:
                raise ApiError(
                    f"{self.display} did not answer {method} {_path(url)} within {self.settings.timeout:g} s "
                    "(--api-timeout)"
                ) from None
            except httpx.TransportError as exc:
                if retry and isinstance(exc, httpx.ConnectError) and attempt + 1 < ATTEMPTS and not _tls(exc):
                    self._sleep(_backoff(attempt, None))
                    continue
                raise self._transport_error(exc) from None
            if not (retry and answer.status_code in RETRY_STATUSES and attempt + 1 < ATTEMPTS):
                return answer
            self._sleep(_backoff(attempt, answer.headers.get("Retry-After")))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _credentials(self, prefix: str) -> tuple[dict[str, str], httpx.BasicAuth | None]:
        """Return the headers and basic auth that carry the credentials."""
        settings = self.settings
        if settings.username is not None and settings.password is not None:
            if prefix == "/api/v1":
                return {}, httpx.BasicAuth(settings.username, settings.password)
            if self._token is None:
                self._token = self._sign_in()
        elif settings.token_command is not None and self._token is None:
            self._token = self._run_token_command()
        if self._token is None:
            return {}, None
        return {"Authorization": f"Bearer {self._token}"}, None

    def _sign_in(self) -> str:
        """Exchange the username and password for a JWT at Airflow 3's POST /auth/token."""
        http = self._http
        assert http is not None and self.settings.username is not None
        url = self.settings.url + "/auth/token"
        body = {"username": self.settings.username, "password": self.settings.password}
        try:
            answer = http.post(url, json=body)
        except httpx.TimeoutException:
            raise ApiError(
                f"{self.display} did not answer POST /auth/token within {self.settings.timeout:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from None
        token = _json(answer).get("access_token") if answer.status_code in (200, 201) else None
        if isinstance(token, str) and token:
            self.hide(token)
            return token
        if answer.status_code in (401, 403):
            raise ApiError(
                f"{self.display} refused the username and password ({answer.status_code} from POST /auth/token): "
                "check DCONN_API_USERNAME and DCONN_API_PASSWORD",
                answer.status_code,
            )
        raise ApiError(
            f"{self.display} gave no token for the username and password (POST /auth/token answered "
            f"{answer.status_code}{self._detail_text(answer)}): this deployment may need a token "
            "(DCONN_API_TOKEN or DCONN_API_TOKEN_CMD)",
            answer.status_code,
        )

    def _run_token_command(self) -> str:
        """Run DCONN_API_TOKEN_CMD (no shell, bounded) and return its output."""
        command = self.settings.token_command
        assert command is not None
        try:
            argv = tuple(shlex.split(command))
        except ValueError as exc:
            raise ApiError(f"DCONN_API_TOKEN_CMD cannot be split into words: {exc}") from None
        if not argv:
            raise ApiError("DCONN_API_TOKEN_CMD is empty")
        from declarative_conns.config.secrets import resolve_secret

        try:
            token = resolve_secret(SecretRef("command", argv))
        except SecretError as exc:
            raise ApiError(f"DCONN_API_TOKEN_CMD: {exc}") from None
        if not token.strip():
            raise ApiError(f"DCONN_API_TOKEN_CMD (`{command}`) printed no token")
        self.hide(token.strip())
        return token.strip()

    # -- errors ----------------------------------------------------------------------------

    def _transport_error(self, exc: httpx.TransportError) -> ApiError:
        """Describe a failure below HTTP: TLS, an unreachable host, a dropped connection."""
        if _tls(exc):
            return ApiError(
                f"TLS failure talking to {self.display}: {self._scrub(_reason(exc))}; to trust a private CA set "
                "DCONN_API_CA_BUNDLE (or SSL_CERT_FILE) to its certificate bundle"
            )
        if isinstance(exc, httpx.ConnectError):
            return ApiError(f"cannot reach {self.display}: {self._scrub(_reason(exc))}")
        return ApiError(f"the connection to {self.display} failed: {self._scrub(_reason(exc))}")

    def _status_error(self, answer: httpx.Response, method: str, path: str) -> ApiError:
        """Describe an HTTP error answer: refused credentials, a missing permission, a server error."""
        status = answer.status_code
        where = f"{method} {self.server.prefix if self.server else ''}{path}"
        detail = self._detail_text(answer)
        if status == 401 or (status == 403 and _detail(answer) in EXPIRED_TOKEN_DETAILS):
            return ApiError(
                f"{self.display} refused the credentials ({status} on {where}{detail}): {self._credentials_hint()}",
                status,
                detail,
            )
        if status == 403:
            if self._credentials_refused():
                return ApiError(
                    f"{self.display} refused the credentials (403 on {where}): {self._credentials_hint()}",
                    status,
                    detail,
                )
            return ApiError(
                f"the API user lacks the permission to {_action(method, path)} on {self.display} "
                f"(403 on {where}): grant it to the user or token dconn signs in with",
                status,
                detail,
            )
        if status >= 500:
            return ApiError(
                f"{self.display} failed with a server error ({status} on {where}{detail})", status, detail
            )
        return ApiError(f"{self.display} refused {where} ({status}{detail})", status, detail)

    def _credentials_refused(self) -> bool:
        """Tell an Airflow 2 403 for wrong credentials from one for a missing permission.

        Airflow 2 answers both with 403; every signed-in user may read the pools list.
        """
        if self.server is None or self.server.prefix != "/api/v1":
            return False
        probe = self._send(
            "GET", self.settings.url + "/api/v1/pools", auth="/api/v1", params={"limit": 1}, retry=True
        )
        return probe.status_code in (401, 403)

    def _credentials_hint(self) -> str:
        """Say which credentials were sent and how to fix them."""
        kind = self.settings.credentials_kind
        if kind == "token":
            return "check DCONN_API_TOKEN (is the token expired?)"
        if kind == "token command":
            return "the token of DCONN_API_TOKEN_CMD was refused, also after running it again"
        if kind == "username and password":
            return "check DCONN_API_USERNAME and DCONN_API_PASSWORD"
        return "set DCONN_API_TOKEN, DCONN_API_TOKEN_CMD or DCONN_API_USERNAME and DCONN_API_PASSWORD"

    def _detail_text(self, answer: httpx.Response) -> str:
        """Return `: <the server's detail>` (never an input it echoes), or ''."""
        detail = _detail(answer)
        return f": {self._scrub(detail)}" if detail else ""

    def _scrub(self, text: str) -> str:
        """Replace every hidden text inside a message by ***."""
        for secret in sorted(self._hidden, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def _json(answer: httpx.Response) -> dict[str, Any]:
    """Return an answer's JSON object, {} when it has none."""
    try:
        data = answer.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _detail(answer: httpx.Response) -> str:
    """Return the server's explanation: FastAPI's `detail` (messages only, never the input it echoes), connexion's."""
    data = _json(answer)
    detail = data.get("detail")
    if isinstance(detail, list):
        parts = []
        for item in detail[:3]:
            if isinstance(item, dict):
                location = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{location}: {item.get('msg', '')}" if location else str(item.get("msg", "")))
        return "; ".join(parts)[:300]
    if isinstance(detail, str) and detail:
        return detail[:300]
    title = data.get("title")
    return str(title)[:300] if title else ""


def _tls(exc: Exception) -> bool:
    """Tell whether a transport error is a TLS failure."""
    seen: BaseException | None = exc
    while seen is not None:
        if (
            isinstance(seen, ssl.SSLError)
            or "CERTIFICATE_VERIFY_FAILED" in str(seen)
            or "SSL" in type(seen).__name__
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return "certificate" in str(exc).lower() or "ssl" in str(exc).lower()


def _reason(exc: Exception) -> str:
    """Return the innermost reason of a transport error, short."""
    reason = str(exc) or type(exc).__name__
    return reason.splitlines()[0][:200]


def _path(url: str) -> str:
    """Return the path of a URL, for messages."""
    return httpx.URL(url).path


def _backoff(attempt: int, retry_after: str | None) -> float:
    """Return how long to wait before the next attempt: Retry-After when the server says, else 0.5, 1, 2 s."""
    if retry_after is not None:
        try:
            return min(max(float(retry_after), 0.0), MAX_BACKOFF)
        except ValueError:
            pass
    return float(min(0.5 * 2**attempt, MAX_BACKOFF))


_VERBS = {"GET": "read", "POST": "create", "PATCH": "change", "DELETE": "delete", "PUT": "change"}


def _action(method: str, path: str) -> str:
    """Say what a request does, for a missing permission: `read connections`."""
    parts = [p for p in path.split("/") if p]
    what = parts[0] if parts else "this resource"
    verb = _VERBS.get(method, method)
    if method == "PATCH" and len(parts) == 1:
        verb = "create, change and delete"  # a bulk request
    return f"{verb} {what}"
