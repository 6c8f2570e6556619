"""Nothing outside the caller's scope: every requests mutation, called with the ids of a sibling scope's (or
another tenant's) request, answers NOT_FOUND worded as for an id that does not exist, and changes nothing.
Each system-context path of the requests domain is pinned here or next to its feature's tests."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from schema.relay import encode_id
from tenants.db import Database
from tests.helpers import Api, TenantInfo
from tests.requests_city import City, build_city

SUBMIT = """
mutation($input: SubmitRequestInput!) {
  submitRequest(input: $input) {
    __typename
    ... on SubmitRequestPayload {
      ticket checkCode routed progress { stationName } possibleDuplicates { ticket }
    }
    ... on Error { code message field }
  }
}"""
RATE = """
mutation($id: ID!) { rateRequest(id: $id, score: 100, solved: true, comment: "x") {
  __typename ... on RequestPayload { request { state contactPhone } }
  ... on Error { code message field } } }"""
MUTATIONS = """{ __schema { mutationType { fields {
  name type { name ofType { name } }
  args { name type { kind name ofType { kind name } } }
} } } }"""
NOWHERE = 999_999_999  # an id no request has


@pytest.fixture(scope="module")
async def city(database: Database) -> City:
    return await build_city(database, "isocity")


def _district(api: Api, city: City, k: int, role: str = "district_staff", sub: str = "user:9201") -> str:
    return api.token(city.tenant, [role], [city.stations[k].district_scope], sub=sub)


async def _submit(api: Api, city: City, k: int, token: str | None = None, **extra: Any) -> dict[str, Any]:
    lon, lat = city.point(k)
    values = {
        "category": "environment",
        "description": "楼道灯坏了",
        "location": {"longitude": lon, "latitude": lat},
        **extra,
    }
    if token is None:
        values["tenant"] = city.tenant.code
    result: dict[str, Any] = (await api.gql(SUBMIT, {"input": values}, token))["submitRequest"]
    assert result["__typename"] == "SubmitRequestPayload", result
    return result


async def _id(api: Api, city: City, ticket: str) -> str:
    admin = api.token(city.tenant, ["city_admin"])
    found = await api.gql("query($t: String!) { request(ticket: $t) { id } }", {"t": ticket}, admin)
    return str(found["request"]["id"])


async def _resolved_hotline_request(api: Api, city: City, k: int) -> tuple[str, str]:
    """A hotline call taken by the district's staff at station k, accepted, assigned and resolved."""
    operator = _district(api, city, k, sub="user:9202")
    submitted = await _submit(api, city, k, operator, channel="HOTLINE", contactPhone="13912340000")
    request_id = await _id(api, city, submitted["ticket"])
    for step in (
        "acceptRequest(id: $id)",
        'assignRequest(id: $id, assignee: "user:9203")',
        'resolveRequest(id: $id, note: "已修复")',
    ):
        done = await api.gql(
            f"mutation($id: ID!) {{ {step.split('(')[0]}: {step} {{ __typename }} }}",
            {"id": request_id},
            operator,
        )
        assert next(iter(done.values()))["__typename"] == "RequestPayload", done
    return submitted["ticket"], request_id


def _row(owner_dsn: str, ticket: str) -> tuple[Any, ...]:
    """What a step would change: the row, its history, its ratings, its followers."""
    with psycopg.connect(owner_dsn) as conn:
        row = conn.execute(
            "SELECT r.state, r.scope::text, r.assignee, r.level, r.rating, r.escalations, r.merged_into_id, "
            "r.supervision, r.updated_at, "
            "(SELECT count(*) FROM workflow_events e WHERE e.tenant_id = r.tenant_id "
            " AND e.workflow = 'request' AND e.subject_id = r.id), "
            "(SELECT count(*) FROM request_ratings g "
            " WHERE g.tenant_id = r.tenant_id AND g.request_id = r.id), "
            "(SELECT count(*) FROM request_followers f "
            " WHERE f.tenant_id = r.tenant_id AND f.request_id = r.id) "
            "FROM requests r WHERE r.ticket = %s",
            (ticket,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def _worded(message: str, key: int) -> str:
    return message.replace(str(key), "N")


def _key(global_id: str) -> int:
    import base64

    padded = global_id + "=" * (-len(global_id) % 4)
    return int(base64.urlsafe_b64decode(padded).decode().split(":")[1])


async def test_a_sibling_district_cannot_rate_a_request_nor_learn_the_callers_phone(
    api: Api, city: City, owner_dsn: str
) -> None:
    """Issue 9 §0 as reported: a token of one district rating a resolved request of another."""
    ticket, request_id = await _resolved_hotline_request(api, city, 0)
    before = _row(owner_dsn, ticket)
    nowhere = await api.gql(RATE, {"id": encode_id("Request", NOWHERE)}, _district(api, city, 2))
    intruders = [
        _district(api, city, 2),
        _district(api, city, 2, role="city_admin"),
        api.token(city.tenant, ["street_staff"], [city.stations[2].street_scope], sub="user:9204"),
        api.token(city.tenant, ["station_liaison"], [city.stations[1].scope], sub="user:9205"),
    ]
    for token in intruders:
        response = await api.post(RATE, {"id": request_id}, token)
        assert "13912340000" not in response.text and "CLOSED" not in response.text
        answer = response.json()["data"]["rateRequest"]
        assert answer["code"] == "NOT_FOUND", answer
        assert _worded(answer["message"], _key(request_id)) == _worded(
            nowhere["rateRequest"]["message"], NOWHERE
        )
    assert _row(owner_dsn, ticket) == before
    # The hotline operator of the request's own district may give the caller's verdict.
    closed = await api.gql(RATE, {"id": request_id}, _district(api, city, 0, sub="user:9206"))
    assert closed["rateRequest"]["request"] == {"state": "CLOSED", "contactPhone": "13912340000"}


async def _mutations(api: Api, token: str) -> list[dict[str, Any]]:
    data = await api.gql(MUTATIONS, token=token)
    fields: list[dict[str, Any]] = data["__schema"]["mutationType"]["fields"]
    # The requests domain's steps: every mutation answering a RequestResult.
    return [
        f for f in fields if "RequestResult" in (f["type"]["name"], (f["type"]["ofType"] or {}).get("name"))
    ]


def _arguments(field: dict[str, Any], request_id: str, own_id: str, own_station: str) -> dict[str, Any]:
    values: dict[str, Any] = {"id": request_id}
    for arg in field["args"]:
        name, kind = arg["name"], arg["type"]
        if name == "id" or kind["kind"] != "NON_NULL":
            continue
        named = kind["ofType"]["name"]
        if name == "intoId":
            values[name] = own_id
        elif name == "stationId":
            values[name] = own_station
        else:
            values[name] = {"String": "越权试探", "Int": 100, "Boolean": True}[named]
    return values


def _call(field: dict[str, Any], values: dict[str, Any]) -> str:
    types = {a["name"]: a["type"] for a in field["args"]}

    def spelled(kind: dict[str, Any]) -> str:
        return f"{kind['ofType']['name']}!" if kind["kind"] == "NON_NULL" else str(kind["name"])

    declared = ", ".join(f"${name}: {spelled(types[name])}" for name in values)
    passed = ", ".join(f"{name}: ${name}" for name in values)
    return (
        f"mutation({declared}) {{ {field['name']}({passed}) {{ __typename "
        "... on RequestPayload { request { state } } ... on Error { code message field } } }"
    )


async def test_every_request_mutation_with_a_sibling_scopes_id_changes_nothing(
    api: Api, city: City, owner_dsn: str, alpha: TenantInfo
) -> None:
    """Schema-driven: whatever mutation the schema has for requests, a district-one caller (any role that
    may step) gets NOT_FOUND for district two's requests, worded as for an id that does not exist."""
    foreign_tickets = [
        (await _submit(api, city, 2))["ticket"],
        (await _resolved_hotline_request(api, city, 3))[0],
    ]
    own = await _submit(api, city, 0)
    own_id = await _id(api, city, own["ticket"])
    own_station = encode_id("Station", city.stations[0].id)
    callers = {
        "district staff": _district(api, city, 0),
        "district-bound city admin": _district(api, city, 0, role="city_admin"),
        "a deputy of station 0": api.token(
            city.tenant, ["deputy"], [city.stations[0].scope], sub="user:9207"
        ),
        "another tenant's city admin": api.token(alpha, ["city_admin"], sub="user:9208"),
        "a resident": api.token(city.tenant, ["resident"], [city.tenant.scope], sub="user:9209"),
    }
    fields = await _mutations(api, callers["district staff"])
    names = {f["name"] for f in fields}
    assert {"acceptRequest", "mergeRequest", "rateRequest", "rerouteRequest", "escalateRequest"} <= names
    for ticket in foreign_tickets:
        foreign_id = await _id(api, city, ticket)
        before = _row(owner_dsn, ticket)
        for who, token in callers.items():
            for field in fields:
                values = _arguments(field, foreign_id, own_id, own_station)
                answer = (await api.gql(_call(field, values), values, token))[field["name"]]
                nowhere = (
                    await api.gql(
                        _call(field, {**values, "id": encode_id("Request", NOWHERE)}),
                        {**values, "id": encode_id("Request", NOWHERE)},
                        token,
                    )
                )[field["name"]]
                if answer["code"] == "FORBIDDEN":  # the role may not call it at all (a resident's steps)
                    assert nowhere["code"] == "FORBIDDEN", (who, field["name"])
                    continue
                assert answer["code"] == "NOT_FOUND", (who, field["name"], answer)
                assert answer["field"] == "id", (who, field["name"], answer)
                assert _worded(answer["message"], _key(foreign_id)) == _worded(nowhere["message"], NOWHERE), (
                    who,
                    field["name"],
                )
                assert ticket not in answer["message"]
        assert _row(owner_dsn, ticket) == before, ticket


async def test_a_merge_target_outside_the_scope_is_not_found_and_not_named(
    api: Api, city: City, owner_dsn: str
) -> None:
    own = await _submit(api, city, 0)
    foreign = await _submit(api, city, 2)
    merge = (
        'mutation($id: ID!, $into: ID!) { mergeRequest(id: $id, intoId: $into, note: "重复") '
        "{ __typename ... on Error { code message field } } }"
    )
    staff = _district(api, city, 0)
    own_id = await _id(api, city, own["ticket"])
    answer = await api.gql(merge, {"id": own_id, "into": await _id(api, city, foreign["ticket"])}, staff)
    nowhere = await api.gql(merge, {"id": own_id, "into": encode_id("Request", NOWHERE)}, staff)
    key = _key(await _id(api, city, foreign["ticket"]))
    assert answer["mergeRequest"]["code"] == "NOT_FOUND" and answer["mergeRequest"]["field"] == "intoId"
    assert _worded(answer["mergeRequest"]["message"], key) == _worded(
        nowhere["mergeRequest"]["message"], NOWHERE
    )
    assert foreign["ticket"] not in str(answer) and "SUBMITTED" not in str(answer).upper().replace("__", "")
    assert _row(owner_dsn, own["ticket"])[0] == "submitted"


async def test_a_resident_can_rate_only_their_own_request(api: Api, city: City, owner_dsn: str) -> None:
    """The submitter's rating runs in the context services.reach opens on their one request; a stranger is
    answered as for a request that does not exist, and nothing changes."""
    owner = api.token(city.tenant, ["resident"], [city.stations[1].scope], sub="user:9301")
    stranger = api.token(city.tenant, ["resident"], [city.stations[1].scope], sub="user:9302")
    submitted = await _submit(api, city, 1, owner)
    request_id = await _id(api, city, submitted["ticket"])
    liaison = api.token(city.tenant, ["station_liaison"], [city.stations[1].scope], sub="user:9303")
    for step in ("acceptRequest(id: $id)", 'assignRequest(id: $id, assignee: "user:9303")'):
        await api.gql(f"mutation($id: ID!) {{ x: {step} {{ __typename }} }}", {"id": request_id}, liaison)
    await api.gql(
        'mutation($id: ID!) { resolveRequest(id: $id, note: "好了") { __typename } }',
        {"id": request_id},
        liaison,
    )
    before = _row(owner_dsn, submitted["ticket"])
    refused = (await api.gql(RATE, {"id": request_id}, stranger))["rateRequest"]
    nowhere = (await api.gql(RATE, {"id": encode_id("Request", NOWHERE)}, stranger))["rateRequest"]
    assert refused["code"] == "NOT_FOUND"
    assert _worded(refused["message"], _key(request_id)) == _worded(nowhere["message"], NOWHERE)
    assert _row(owner_dsn, submitted["ticket"]) == before
    rated = (await api.gql(RATE, {"id": request_id}, owner))["rateRequest"]
    assert rated["request"]["state"] == "CLOSED"


async def test_public_progress_needs_the_receipts_check_code(api: Api, city: City, alpha: TenantInfo) -> None:
    """requestProgress is public by design to the holder of the receipt, and to no one else: a wrong code,
    another city's name or a ticket that does not exist all answer null."""
    submitted = await _submit(api, city, 0)
    query = (
        "query($c: String!, $t: String!, $k: String!) "
        "{ requestProgress(tenant: $c, ticket: $t, checkCode: $k) { ticket } }"
    )
    code = submitted["checkCode"]
    ticket = submitted["ticket"]
    right = await api.gql(query, {"c": city.tenant.code, "t": ticket, "k": code})
    assert right["requestProgress"] == {"ticket": ticket}
    # Typed as printed or without the hyphens, in either case.
    relaxed = await api.gql(query, {"c": city.tenant.code, "t": ticket, "k": code.replace("-", "").lower()})
    assert relaxed["requestProgress"] == {"ticket": ticket}
    other = await _submit(api, city, 1)
    for tenant, asked, check in [
        (city.tenant.code, ticket, "2345-6789-ABCD"),
        (city.tenant.code, ticket, other["checkCode"]),
        (city.tenant.code, other["ticket"], code),
        (alpha.code, ticket, code),
        (city.tenant.code, "20990101-999999", code),
    ]:
        assert (await api.gql(query, {"c": tenant, "t": asked, "k": check}))["requestProgress"] is None
