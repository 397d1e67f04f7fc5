"""Log in, tokens, expiry, revocation, rate limits, people, seeding."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from switchboard.gateway.app import GatewayRuntime, GatewaySettings, build

from .conftest import PEOPLE, login


async def test_login_answers_a_token_and_only_its_hash_is_kept(
    gateway: GatewayRuntime, client: httpx.AsyncClient
) -> None:
    answer = await client.post(
        "/auth/login", json={"login": "agent-1", "password": PEOPLE["agent-1"][1]}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    token = body["token"]
    assert body["person"] == {"id": "agent-1", "name": "Agent-1", "role": "agent"}
    assert len(token) >= 40
    stored = await gateway.db["sessions"].find_one({"person_id": "agent-1"})
    assert stored is not None
    assert stored["_id"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(stored)
    person = await gateway.db["people"].find_one({"_id": "agent-1"})
    assert person is not None and person["password_hash"].startswith("$argon2id$")
    assert PEOPLE["agent-1"][1] not in str(person)

    me = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["id"] == "agent-1"


@pytest.mark.parametrize(
    ("login_name", "password"), [("agent-1", "wrong-password"), ("nobody", "whatever")]
)
async def test_a_bad_login_is_401_and_says_nothing_more(
    client: httpx.AsyncClient, login_name: str, password: str
) -> None:
    answer = await client.post("/auth/login", json={"login": login_name, "password": password})
    assert answer.status_code == 401
    assert answer.json()["code"] == "bad_credentials"


async def test_no_token_unknown_token_and_expired_token_are_401(
    gateway: GatewayRuntime, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/me")).status_code == 401
    unknown = await client.get("/me", headers={"Authorization": "Bearer made-up"})
    assert unknown.status_code == 401
    assert unknown.json()["code"] == "invalid_token"
    assert "Bearer" in unknown.headers["www-authenticate"]

    headers = await login(client, "agent-1")
    await gateway.db["sessions"].update_many(
        {"person_id": "agent-1"},
        {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}},
    )
    expired = await client.get("/me", headers=headers)
    assert expired.status_code == 401
    assert expired.json()["code"] == "token_expired"


async def test_logout_revokes_the_token(client: httpx.AsyncClient) -> None:
    headers = await login(client, "agent-1")
    other = await login(client, "agent-1")
    assert (await client.post("/auth/logout", headers=headers)).status_code == 204
    assert (await client.get("/me", headers=headers)).status_code == 401
    assert (await client.get("/me", headers=other)).status_code == 200


async def test_a_supervisor_revokes_an_agents_sessions_but_an_agent_may_not(
    client: httpx.AsyncClient,
) -> None:
    agent = await login(client, "agent-1")
    other_agent = await login(client, "agent-2")
    boss = await login(client, "supervisor-1")
    refused = await client.post("/people/agent-1/revoke", headers=other_agent)
    assert refused.status_code == 403
    assert (await client.get("/me", headers=agent)).status_code == 200
    done = await client.post("/people/agent-1/revoke", headers=boss)
    assert done.status_code == 200
    assert done.json() == {"revoked": 1}
    assert (await client.get("/me", headers=agent)).status_code == 401


async def test_login_attempts_are_limited_per_account_and_client_across_replicas(
    gateway_settings: GatewaySettings, client: httpx.AsyncClient
) -> None:
    for _ in range(3):
        answer = await client.post("/auth/login", json={"login": "agent-2", "password": "guess"})
        assert answer.status_code == 401
    right = {"login": "agent-2", "password": PEOPLE["agent-2"][1]}
    # the same client, through another replica (same database), must wait now
    replica = build(gateway_settings)
    same = httpx.ASGITransport(app=replica.api, client=("10.0.0.1", 50001))
    async with httpx.AsyncClient(transport=same, base_url="http://replica") as again:
        blocked = await again.post("/auth/login", json=right)
        assert blocked.status_code == 429
        assert blocked.json()["code"] == "too_many_attempts"
        assert int(blocked.headers["retry-after"]) > 0
    # the owner, from a client that did not fail, logs in
    other = httpx.ASGITransport(app=replica.api, client=("10.0.0.2", 1))
    async with httpx.AsyncClient(transport=other, base_url="http://replica") as owner:
        assert (await owner.post("/auth/login", json=right)).status_code == 200
    await replica.mongo.close()


async def test_login_attempts_are_limited_per_client_address(
    client: httpx.AsyncClient,
) -> None:
    statuses = []
    for n in range(9):
        answer = await client.post(
            "/auth/login", json={"login": f"someone-{n}", "password": "guess"}
        )
        statuses.append(answer.status_code)
    assert statuses[:8] == [401] * 8
    assert statuses[8] == 429


async def test_a_supervisor_adds_a_person_who_can_then_log_in(
    gateway: GatewayRuntime, client: httpx.AsyncClient
) -> None:
    boss = await login(client, "supervisor-1")
    bad = await client.put("/people/agent-9", json={"name": "Nine"}, headers=boss)
    assert bad.status_code == 422
    assert bad.json()["field"] == "password"
    made = await client.put(
        "/people/agent-9",
        json={"name": "Nine", "role": "agent", "password": "nine-password"},
        headers=boss,
    )
    assert made.status_code == 201, made.text
    answer = await client.post(
        "/auth/login", json={"login": "agent-9", "password": "nine-password"}
    )
    assert answer.status_code == 200
    token = {"Authorization": f"Bearer {answer.json()['token']}"}
    listed = await client.get("/people", headers=boss)
    assert {p["id"] for p in listed.json()} >= {"agent-1", "agent-9", "supervisor-1"}
    assert "password_hash" not in str(listed.json())
    # deactivating ends the sessions at once
    off = await client.put("/people/agent-9", json={"name": "Nine", "active": False}, headers=boss)
    assert off.status_code == 200
    assert (await client.get("/me", headers=token)).status_code == 401


async def test_the_users_file_seeds_an_empty_collection_once(
    gateway_settings: GatewaySettings, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = build(gateway_settings)
    async with runtime.app:
        pass
    printed = capsys.readouterr().out
    assert "agent-1" in printed and str(gateway_settings.gateway_users_file) in printed
    assert not any(password in printed for _, password in PEOPLE.values())
    again = build(gateway_settings)
    async with again.app:
        assert await again.db["people"].count_documents({}) == len(PEOPLE)
    assert "agent-1" not in capsys.readouterr().out


async def test_validation_errors_name_the_field(client: httpx.AsyncClient) -> None:
    answer = await client.post("/auth/login", json={"login": "agent-1"})
    assert answer.status_code == 422
    assert answer.json()["field"] == "password"
