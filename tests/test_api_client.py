"""targets.api.client: retries, and errors that name what failed without any secret.

A real Airflow cannot be made to answer 429 or 503 on demand, so these few tests use httpx's
MockTransport; everything else is tested against real servers (tests/test_api_target.py).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from declarative_conns.errors import InputError
from declarative_conns.targets.api.client import ApiClient, ApiError
from declarative_conns.targets.api.settings import ApiSettings, resolve_api_settings

CANARY = "canary-secret-19af"
VERSION = {"version": "3.3.2"}


def client_for(answer: Callable[[httpx.Request], httpx.Response]) -> tuple[ApiClient, list[float]]:
    """Return an opened client whose server answers with `answer` (the version endpoint answers itself)."""
    slept: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/version":
            return httpx.Response(200, json=VERSION)
        return answer(request)

    settings = ApiSettings("http://airflow.test", token=CANARY)
    client = ApiClient(settings, sleep=slept.append, transport=httpx.MockTransport(handler))
    client.open()
    return client, slept


def test_reads_are_retried_with_backoff_on_503_and_429() -> None:
    """A GET answered 503, then 429 with Retry-After, then 200 succeeds after two waits."""
    answers = iter(
        [httpx.Response(503), httpx.Response(429, headers={"Retry-After": "3"}), httpx.Response(200, json={})]
    )
    client, slept = client_for(lambda request: next(answers))
    assert client.request("GET", "/connections").status_code == 200
    assert slept == [0.5, 3.0]


def test_a_create_is_never_repeated() -> None:
    """A POST answered 503 is not sent again: the error says so in one line."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return httpx.Response(503, json={"detail": "busy"})

    client, slept = client_for(answer)
    with pytest.raises(ApiError) as raised:
        client.request("POST", "/connections", body={"connection_id": "x"})
    assert seen == ["POST"] and slept == []
    assert (
        str(raised.value)
        == "http://airflow.test failed with a server error (503 on POST /api/v2/connections: busy)"
    )


def test_retries_give_up_after_four_attempts() -> None:
    """A server that keeps answering 502 gets four attempts, then one error line."""
    client, slept = client_for(lambda request: httpx.Response(502))
    with pytest.raises(ApiError, match=r"server error \(502 on GET /api/v2/pools\)"):
        client.request("GET", "/pools")
    assert slept == [0.5, 1.0, 2.0]


def test_errors_never_echo_inputs_or_secrets() -> None:
    """A 422 shows FastAPI's messages, never the `input` it echoes; a secret sent is scrubbed from details."""
    client, _ = client_for(
        lambda request: httpx.Response(
            422, json={"detail": [{"loc": ["body", "password"], "msg": "too long", "input": CANARY}]}
        )
    )
    with pytest.raises(ApiError) as raised:
        client.request("PATCH", "/connections/x", body={"password": CANARY})
    assert (
        str(raised.value)
        == "http://airflow.test refused PATCH /api/v2/connections/x (422: password: too long)"
    )
    client, _ = client_for(lambda request: httpx.Response(500, json={"detail": f"bad value {CANARY}-sent"}))
    client.hide(CANARY + "-sent")
    with pytest.raises(ApiError) as raised:
        client.request("GET", "/variables")
    assert CANARY not in str(raised.value) and "bad value ***" in str(raised.value)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DCONN_API_URL": "ftp://x"}, "the API URL must start with http:// or https://"),
        (
            {"DCONN_API_URL": "http://x", "DCONN_API_TOKEN": "t", "DCONN_API_USERNAME": "u"},
            "set one kind of API credentials",
        ),
        ({"DCONN_API_URL": "http://x", "DCONN_API_USERNAME": "u"}, "DCONN_API_PASSWORD is not set"),
    ],
)
def test_settings_refuse_unclear_input(environ: dict[str, str], message: str) -> None:
    """An unusable URL or a mix of credentials is one clear error."""
    with pytest.raises(InputError, match=message):
        resolve_api_settings(None, environ=environ)


def test_settings_strip_the_api_prefix_and_userinfo() -> None:
    """A URL given with /api/v2 and userinfo becomes the base; the repr shows no credential."""
    settings = resolve_api_settings(
        f"https://u:{CANARY}@airflow.example.com:8443/base/api/v2/", environ={"DCONN_API_TOKEN": CANARY}
    )
    assert settings is not None and settings.url == "https://airflow.example.com:8443/base"
    assert CANARY not in repr(settings) and settings.credentials_kind == "token"
