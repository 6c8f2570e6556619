"""A request's steps reach people through the outbox and the real worker: the resident's own inbox, the
station staff's inbox, and (for an anonymous caller who left a phone) a signed webhook for the SMS gateway;
each notice once."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from schema.relay import encode_id
from services.notifications import webhooks
from services.notifications.webhooks import EndpointSpec, verify_signature
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tests.helpers import Api, wait_for
from tests.requests_city import City, build_city, submit
from tests.services.test_notifications_channels import Receiver, serve

INBOX = "{ myNotifications(first: 50) { edges { node { kind title personal payload } } } }"


@pytest.fixture(scope="module")
async def city(database: Database) -> City:
    return await build_city(database, "noticecity")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    yield from serve(Receiver())


async def _inbox(api: Api, token: str, ticket: str) -> list[dict[str, Any]]:
    data = await api.gql(INBOX, token=token)
    return [
        edge["node"]
        for edge in data["myNotifications"]["edges"]
        if edge["node"]["payload"].get("ticket") == ticket
    ]


async def test_residents_and_staff_hear_of_each_step_once(
    api: Api, city: City, worker: subprocess.Popen[bytes]
) -> None:
    resident = api.token(city.tenant, ["resident"], sub="user:7501")
    submitted = await submit(api, city, 0, resident, category="parking", description="消防通道被占")
    ticket = submitted["ticket"]
    liaison = api.token(city.tenant, ["station_liaison"], [city.stations[0].scope], sub="user:7502")
    other_station = api.token(city.tenant, ["station_liaison"], [city.stations[1].scope], sub="user:7503")

    async def received() -> list[dict[str, Any]]:
        return await _inbox(api, resident, ticket)

    mine = await wait_for(received)
    assert [n["kind"] for n in mine] == ["request.progress"] and mine[0]["personal"]
    staff = await wait_for(lambda: _inbox(api, liaison, ticket))
    assert [n["kind"] for n in staff] == ["request.submitted"]
    assert await _inbox(api, other_station, ticket) == []

    admin = api.token(city.tenant, ["city_admin"])
    found = await api.gql("query($t: String!) { request(ticket: $t) { id } }", {"t": ticket}, admin)
    accept = "mutation($id: ID!) { acceptRequest(id: $id) { __typename } }"
    assert (await api.gql(accept, {"id": found["request"]["id"]}, liaison))["acceptRequest"][
        "__typename"
    ] == ("RequestPayload")

    async def accepted() -> list[dict[str, Any]]:
        notices = await _inbox(api, resident, ticket)
        return notices if len(notices) == 2 else []

    notices = await wait_for(accepted)
    assert sorted(n["title"].split("（")[0] for n in notices) == ["诉求已受理", "诉求已收到"]


async def test_an_anonymous_callers_phone_gets_a_signed_webhook(
    api: Api, city: City, database: Database, receiver: Receiver, worker: subprocess.Popen[bytes]
) -> None:
    system = TenantContext.whole_tenant(city.tenant.tenant_id, "system:test")
    async with unit_of_work(database, system) as session:
        _, secret = await webhooks.create_endpoint(
            session,
            system,
            EndpointSpec(
                name="sms",
                url=receiver.plan("/sms", 200),
                kinds=("request.progress",),
                backoff_seconds=1,
                personal_data=True,
            ),
        )
        await webhooks.create_endpoint(
            session,
            system,
            EndpointSpec(name="dashboard", url=receiver.plan("/dashboard", 200), backoff_seconds=1),
        )
    submitted = await submit(api, city, 1, description="污水外溢", contactPhone="139-0000-1234")
    ticket = submitted["ticket"]

    async def delivered() -> list[Any]:
        return [r for r in receiver.at("/sms") if r.json()["payload"].get("ticket") == ticket]

    hits = await wait_for(delivered)
    assert len(hits) == 1
    body = hits[0].json()
    assert body["kind"] == "request.progress" and body["recipient"] == "phone:13900001234"
    headers = {k.lower(): v for k, v in hits[0].headers.items()}
    assert verify_signature(
        secret, headers["x-liaison-timestamp"], hits[0].body, headers["x-liaison-signature"]
    )
    assert json.loads(hits[0].body)["tenant"] == city.tenant.code

    async def mirrored() -> list[Any]:
        return [
            r
            for r in receiver.at("/dashboard")
            if r.json()["payload"].get("ticket") == ticket and r.json()["kind"] == "request.progress"
        ]

    # An endpoint not allowed personal data learns a resident was told, not their number.
    copies = await wait_for(mirrored)
    assert copies[0].json()["recipient"] == "phone:withheld" and b"13900001234" not in copies[0].body


async def test_a_merged_requests_submitter_hears_of_the_survivors_resolution(
    api: Api, city: City, worker: subprocess.Popen[bytes]
) -> None:
    """Told of the merge (with the surviving ticket) and, once the survivor is resolved, asked to rate it;
    the notices lie in the survivor's scope and reach only that submitter."""
    follower = api.token(city.tenant, ["resident"], sub="user:7601")
    other = api.token(city.tenant, ["resident"], sub="user:7602")
    tickets = []
    for token in (other, follower):
        submitted = await submit(api, city, 2, token, category="public_toilets", description="厕所堵塞")
        tickets.append(submitted["ticket"])
    survivor, merged = tickets
    admin = api.token(city.tenant, ["city_admin"])
    ids = []
    for ticket in tickets:
        found = await api.gql("query($t: String!) { request(ticket: $t) { id } }", {"t": ticket}, admin)
        ids.append(found["request"]["id"])
    liaison = api.token(city.tenant, ["station_liaison"], [city.stations[2].scope], sub="user:7603")
    steps = [
        ("mergeRequest", f'(id: "{ids[1]}", intoId: "{ids[0]}", note: "同一处")'),
        ("acceptRequest", f'(id: "{ids[0]}")'),
        ("assignRequest", f'(id: "{ids[0]}", assignee: "user:7603")'),
        ("resolveRequest", f'(id: "{ids[0]}", note: "已疏通")'),
    ]
    for name, arguments in steps:
        done = await api.gql(f"mutation {{ {name}{arguments} {{ __typename }} }}", token=liaison)
        assert done[name]["__typename"] == "RequestPayload", done

    async def told() -> list[dict[str, Any]]:
        notices = await _inbox(api, follower, survivor)
        return notices if notices else []

    about_survivor = await wait_for(told)
    assert [n["title"] for n in about_survivor] == [f"诉求已办理完毕，请评价（{survivor}）"]
    merge_notice = await wait_for(lambda: _inbox(api, follower, merged))
    assert any(f"诉求已并入 {survivor}" in n["title"] for n in merge_notice)

    async def rate_me() -> list[dict[str, Any]]:
        return [n for n in await _inbox(api, other, survivor) if "请评价" in n["title"]]

    # The survivor's own submitter is told once, as its submitter (not as a follower).
    assert len(await wait_for(rate_me)) == 1


async def test_a_deputy_a_routing_rule_names_is_told_at_intake(
    api: Api, city: City, worker: subprocess.Popen[bytes]
) -> None:
    admin = api.token(city.tenant, ["city_admin"])
    rule = await api.gql(
        "mutation($n: ID!) "
        '{ setRoutingRule(input: {nodeId: $n, category: "ev_charging", responsible: DEPUTY}) '
        "{ __typename } }",
        {"n": encode_id("Station", city.stations[3].id)},
        admin,
    )
    assert rule["setRoutingRule"]["__typename"] == "RoutingRulePayload"
    submitted = await submit(api, city, 3, category="ev_charging", description="充电桩坏了")
    ticket = submitted["ticket"]
    deputy = api.token(city.tenant, ["deputy"], [city.stations[3].scope], sub=city.stations[3].deputy)

    async def personal() -> list[dict[str, Any]]:
        return [n for n in await _inbox(api, deputy, ticket) if n["personal"]]

    assert [n["kind"] for n in await wait_for(personal)] == ["request.assigned"]
    other_deputy = api.token(city.tenant, ["deputy"], [city.stations[2].scope], sub=city.stations[2].deputy)
    assert [n for n in await _inbox(api, other_deputy, ticket) if n["personal"]] == []
