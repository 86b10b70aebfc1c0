"""The real Airflow API servers of tests/airflow_servers.py: auth, writes, reads, pagination."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported by pytest_plugins, so that pytest rewrites its asserts
    from tests.airflow_servers import AirflowServer

if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    import httpx  # CI runs these tests, never skips them
else:
    httpx = pytest.importorskip("httpx", reason="the API server tests need httpx (pip install httpx)")

pytest_plugins = ("tests.airflow_servers",)


def _id(prefix: str) -> str:
    """Return a connection id no other test uses (the servers live for the whole session)."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _admin3(server: AirflowServer) -> httpx.Client:
    """Return a client for Airflow 3's API holding the admin's JWT."""
    token = httpx.post(
        server.base_url + "/auth/token",
        json={"username": server.admin_username, "password": server.admin_password},
    )
    assert token.status_code == 201, token.text
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    return httpx.Client(base_url=server.api_url, headers=headers, timeout=30)


def _admin2(server: AirflowServer) -> httpx.Client:
    """Return a client for Airflow 2's API with the admin's basic auth."""
    auth = (server.admin_username, server.admin_password)
    return httpx.Client(base_url=server.api_url, auth=auth, timeout=30)


def _read_back(server: AirflowServer, conn_id: str) -> dict[str, object]:
    """Return the connection as Airflow's own CLI decrypts it."""
    out = server.airflow("connections", "get", conn_id, "-o", "json").stdout
    [row] = json.loads(out)
    return dict(row)


# ---------------------------------------------------------------- Airflow 3


def test_airflow3_reports_its_version_and_refuses_v1(airflow3_api: AirflowServer) -> None:
    """Airflow 3 answers /api/v2/version without auth and 404 on /api/v1 (removed)."""
    version = httpx.get(airflow3_api.base_url + "/api/v2/version")
    assert version.status_code == 200
    assert version.json()["version"] == airflow3_api.version
    assert airflow3_api.version.startswith("3.3.")
    v1 = httpx.get(airflow3_api.base_url + "/api/v1/version")
    assert v1.status_code == 404
    assert "/api/v1 has been removed in Airflow 3" in v1.json()["error"]


def test_airflow3_token_auth(airflow3_api: AirflowServer) -> None:
    """Airflow 3 gives a JWT for the right password, 401 for a wrong one or none, 403 to a viewer."""
    url = airflow3_api.api_url + "/connections"
    wrong = httpx.post(
        airflow3_api.base_url + "/auth/token",
        json={"username": airflow3_api.admin_username, "password": "not-the-password"},
    )
    assert (wrong.status_code, wrong.json()) == (401, {"detail": "Invalid credentials"})
    assert httpx.get(url).status_code == 401
    with _admin3(airflow3_api) as admin:
        assert admin.get("/connections").status_code == 200
    viewer = airflow3_api.access_token(airflow3_api.viewer_username, airflow3_api.viewer_password)
    refused = httpx.get(url, headers={"Authorization": f"Bearer {viewer}"})
    assert (refused.status_code, refused.json()) == (403, {"detail": "Forbidden"})


def test_airflow3_expired_and_forged_tokens(airflow3_api: AirflowServer) -> None:
    """An expired JWT gets 401 "Token Expired"; one signed with another key 403 "Invalid JWT token"."""
    url = airflow3_api.api_url + "/connections"
    fresh = httpx.get(url, headers={"Authorization": f"Bearer {airflow3_api.signed_token(600)}"})
    assert fresh.status_code == 200
    expired = httpx.get(url, headers={"Authorization": f"Bearer {airflow3_api.signed_token(-60)}"})
    assert (expired.status_code, expired.json()) == (401, {"detail": "Token Expired"})
    forged = airflow3_api.signed_token(600, key="another-key-" + "x" * 64)
    invalid = httpx.get(url, headers={"Authorization": f"Bearer {forged}"})
    assert (invalid.status_code, invalid.json()) == (403, {"detail": "Invalid JWT token"})


def test_airflow3_created_connection_reads_back_decrypted(airflow3_api: AirflowServer) -> None:
    """A connection POSTed to Airflow 3 comes back masked from the API and decrypted from the CLI."""
    conn_id = _id("api3")
    body = {
        "connection_id": conn_id,
        "conn_type": "postgres",
        "host": "db.example.com",
        "port": 5432,
        "login": "etl",
        "password": "s3cret-pw",
        "schema": "warehouse",
        "extra": json.dumps({"sslmode": "require", "api_key": "k-123456"}),
    }
    with _admin3(airflow3_api) as api:
        created = api.post("/connections", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["password"] == "***"
        assert json.loads(created.json()["extra"]) == {"sslmode": "require", "api_key": "***"}
        again = api.post("/connections", json=body)
        assert again.status_code == 409
    row = _read_back(airflow3_api, conn_id)
    assert (row["password"], row["host"], row["login"]) == ("s3cret-pw", "db.example.com", "etl")
    assert row["extra_dejson"] == {"sslmode": "require", "api_key": "k-123456"}
    assert row["is_encrypted"] == "True"


def test_airflow3_lists_with_pagination_and_bulk(airflow3_api: AirflowServer) -> None:
    """Airflow 3 bulk-creates 120 connections; pages of at most 100 list each exactly once."""
    prefix = _id("page3")
    entities = [{"connection_id": f"{prefix}_{i:03}", "conn_type": "http"} for i in range(120)]
    with _admin3(airflow3_api) as api:
        bulk = api.patch("/connections", json={"actions": [{"action": "create", "entities": entities}]})
        assert bulk.status_code == 200, bulk.text
        assert len(bulk.json()["create"]["success"]) == 120
        seen: list[str] = []
        offset = 0
        while True:
            page = api.get(
                "/connections",
                params={"limit": 1000, "offset": offset, "order_by": "connection_id"},
            ).json()
            assert len(page["connections"]) <= 100
            seen += [c["connection_id"] for c in page["connections"]]
            offset += len(page["connections"])
            if not page["connections"] or offset >= page["total_entries"]:
                break
    mine = [c for c in seen if c.startswith(prefix)]
    assert mine == sorted(e["connection_id"] for e in entities)
    assert len(seen) == len(set(seen))


def test_airflow3_clear_empties_the_server(airflow3_api: AirflowServer) -> None:
    """clear() leaves Airflow 3 with no connection or variable and only a default default_pool."""
    with _admin3(airflow3_api) as api:
        api.post("/variables", json={"key": _id("var"), "value": "v"})
        api.post("/pools", json={"name": _id("pool"), "slots": 3})
        airflow3_api.clear()
        assert api.get("/connections").json()["total_entries"] == 0
        assert api.get("/variables").json()["total_entries"] == 0
        pools = api.get("/pools").json()["pools"]
    assert [(p["name"], p["slots"]) for p in pools] == [("default_pool", 128)]


def test_airflow3_teams_mode_takes_team_name(
    airflow3_api: AirflowServer, airflow3_teams_api: AirflowServer
) -> None:
    """In multi-team mode a known team_name is stored and returned; an unknown one is a 400."""
    body = {"connection_id": _id("team"), "conn_type": "http", "team_name": "team_a"}
    with _admin3(airflow3_teams_api) as api:
        created = api.post("/connections", json=body)
        assert (created.status_code, created.json()["team_name"]) == (201, "team_a")
        unknown = api.post("/connections", json={**body, "connection_id": _id("team"), "team_name": "nope"})
        assert (unknown.status_code, unknown.json()) == (400, {"detail": "Team 'nope' does not exist"})
    with _admin3(airflow3_api) as api:
        refused = api.post("/connections", json=body)
    assert refused.status_code == 422
    assert "multi_team mode is disabled" in refused.json()["detail"][0]["msg"]


# ---------------------------------------------------------------- Airflow 2


def test_airflow2_reports_its_version_and_has_no_v2(airflow2_api: AirflowServer) -> None:
    """Airflow 2 answers /api/v1/version without auth and an HTML 404 on /api/v2/version."""
    version = httpx.get(airflow2_api.base_url + "/api/v1/version")
    assert version.status_code == 200
    assert version.json()["version"] == airflow2_api.version
    assert airflow2_api.version.startswith("2.11.")
    v2 = httpx.get(airflow2_api.base_url + "/api/v2/version")
    assert v2.status_code == 404
    assert v2.headers["content-type"].startswith("text/html")


def test_airflow2_basic_auth(airflow2_api: AirflowServer) -> None:
    """Airflow 2 lets the admin in; wrong credentials, none, and the viewer on connections get 403."""
    url = airflow2_api.api_url + "/connections"
    assert httpx.get(url, auth=(airflow2_api.admin_username, airflow2_api.admin_password)).status_code == 200
    for auth in [(airflow2_api.admin_username, "wrong"), None]:
        refused = httpx.get(url, auth=auth)
        assert (refused.status_code, refused.json()["title"]) == (403, "Forbidden")
    viewer = (airflow2_api.viewer_username, airflow2_api.viewer_password)
    assert httpx.get(url, auth=viewer).status_code == 403
    assert httpx.get(airflow2_api.api_url + "/pools", auth=viewer).status_code == 200


def test_airflow2_created_connection_reads_back_decrypted(airflow2_api: AirflowServer) -> None:
    """A connection POSTed to Airflow 2 never returns its password; the CLI decrypts it."""
    conn_id = _id("api2")
    body = {
        "connection_id": conn_id,
        "conn_type": "postgres",
        "host": "db.example.com",
        "port": 5432,
        "login": "etl",
        "password": "s3cret-pw",
        "extra": json.dumps({"sslmode": "require", "token": "t-123456"}),
    }
    with _admin2(airflow2_api) as api:
        created = api.post("/connections", json=body)
        assert created.status_code == 200, created.text
        assert "password" not in created.json()
        assert json.loads(api.get(f"/connections/{conn_id}").json()["extra"]) == {
            "sslmode": "require",
            "token": "***",
        }
        again = api.post("/connections", json=body)
        assert (again.status_code, again.json()["detail"]) == (
            409,
            f"Connection already exist. ID: {conn_id}",
        )
    row = _read_back(airflow2_api, conn_id)
    assert (row["password"], row["host"], row["port"]) == ("s3cret-pw", "db.example.com", "5432")
    assert row["extra_dejson"] == {"sslmode": "require", "token": "t-123456"}


def test_airflow2_lists_with_pagination(airflow2_api: AirflowServer, tmp_path: Path) -> None:
    """Airflow 2 caps pages at 100 and lists 120 connections, without extra, each exactly once."""
    prefix = _id("page2")
    ids = [f"{prefix}_{i:03}" for i in range(120)]
    # One CLI import: each basic-auth request costs Airflow 2 a password hash (about 0.3 s).
    document = {conn_id: {"conn_type": "http", "extra": {"n": 1}} for conn_id in ids}
    (tmp_path / "conns.json").write_text(json.dumps(document), encoding="utf-8")
    airflow2_api.airflow("connections", "import", str(tmp_path / "conns.json"))
    with _admin2(airflow2_api) as api:
        seen: list[str] = []
        offset = 0
        while True:
            page = api.get(
                "/connections",
                params={"limit": 1000, "offset": offset, "order_by": "connection_id"},
            ).json()
            assert len(page["connections"]) <= 100
            assert all("extra" not in c for c in page["connections"])
            seen += [c["connection_id"] for c in page["connections"]]
            offset += len(page["connections"])
            if not page["connections"] or offset >= page["total_entries"]:
                break
    assert [c for c in seen if c.startswith(prefix)] == ids
    assert len(seen) == len(set(seen))


def test_airflow2_cli_shares_the_servers_database(airflow2_api: AirflowServer) -> None:
    """A variable set with Airflow 2's CLI is what the API returns, and the reverse."""
    key = _id("var")
    airflow2_api.airflow("variables", "set", key, "from-the-cli")
    with _admin2(airflow2_api) as api:
        assert api.get(f"/variables/{key}").json()["value"] == "from-the-cli"
        assert api.patch(f"/variables/{key}", json={"key": key, "value": "from-the-api"}).status_code == 200
    assert airflow2_api.airflow("variables", "get", key).stdout.strip() == "from-the-api"
