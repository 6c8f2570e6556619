"""Hostile input at every HTTP entry point (/graphql, Open311, tiles): never a 5xx, every GraphQL error with
an `extensions.code`, never SQL in a message, and nothing written when a write was refused. (The hotline
import's cases are in tests/deploy/test_import_requests.py.)"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import jwt
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy.seed import seed_synthetic
from schema.app import create_app
from schema.context import ApiConfig
from schema.relay import encode_id
from schema.schema import DATETIME
from services.requests import apikeys
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tests.helpers import TEST_SECRET, Api, TenantInfo

SQL = re.compile(r"\bSELECT\b|\bINSERT\b|\bUPDATE\b|FROM requests|psycopg|sqlalchemy|\[SQL:", re.IGNORECASE)
NUL = "\u0000"
V2 = "/open311/v2"
TOWN = "hostileville"
# Rows a refused write must leave as they were.
WRITTEN = ("requests", "workflow_events", "audit_log", "outbox", "request_ratings", "api_keys", "users")


def assert_clean(response: httpx.Response) -> None:
    """No 5xx, no SQL in the answer, and every GraphQL error with a message and a code."""
    assert response.status_code < 500, response.text
    assert not SQL.search(response.text), response.text
    if response.headers.get("content-type", "").startswith(("application/json", "application/graphql")):
        body = response.json()
        errors = body.get("errors", []) if isinstance(body, dict) else []
        for error in errors:
            assert error["message"], body
            assert error.get("extensions", {}).get("code"), body


def refused(response: httpx.Response, status: int, *mentions: str) -> None:
    assert response.status_code == status, response.text
    assert_clean(response)
    for mention in mentions:
        assert mention in response.text, response.text


def codes(response: httpx.Response) -> list[str]:
    assert_clean(response)
    return [error["extensions"]["code"] for error in response.json().get("errors", [])]


def snapshot(owner_dsn: str, tenant: TenantInfo) -> dict[str, int]:
    with psycopg.connect(owner_dsn) as conn:
        return {
            table: conn.execute(
                f"SELECT count(*) FROM {table} WHERE tenant_id = %s", (tenant.tenant_id,)
            ).fetchone()[0]  # type: ignore[index]
            for table in WRITTEN
        }


def signed(claims: dict[str, Any]) -> str:
    payload = {
        "sub": "user:1",
        "tenant": TOWN,
        "scopes": ["c1"],
        "roles": ["city_admin"],
        "exp": int((datetime.now(UTC) + timedelta(minutes=5)).timestamp()),
        "iss": "liaison-grid",
        **claims,
    }
    return jwt.encode(payload, TEST_SECRET, algorithm="HS256")


LOGIN = """mutation($t: String!, $u: String!, $p: String!) {
  login(tenant: $t, username: $u, password: $p) { __typename ... on Error { code message } } }"""
SUBMIT = """mutation($input: SubmitRequestInput!) {
  submitRequest(input: $input) { __typename ... on Error { code message } } }"""


@pytest.fixture(scope="module")
async def town(database: Database) -> TenantInfo:
    """A tenant of this module's own: the writes that go through touch no other test's data."""
    result = await seed_synthetic(database, TOWN, districts=2, streets=1, stations=1, seed=11)
    return TenantInfo(TOWN, result.tenant_id)


# ---- NUL characters and other strings PostgreSQL cannot store -------------------------------------------


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (LOGIN, {"t": f"{TOWN}{NUL}", "u": "admin", "p": "liaison-demo"}),
        ('mutation { login(tenant: "town\\u0000", username: "a", password: "b") { __typename } }', {}),
        ('mutation { login(tenant: "hostileville", username: "\\u{0}", password: "b") { __typename } }', {}),
        ("query($t: String!) { request(ticket: $t) { ticket } }", {"t": f"S2026{NUL}"}),
        ('{ requestProgress(tenant: "hostileville\\u0000", ticket: "x") { state } }', {}),
        ("query($t: String!) { requestProgress(tenant: $t, ticket: $t) { state } }", {"t": NUL}),
        ("query($t: JSON) { __typename }", {"t": {"deep": [{f"key{NUL}": 1}]}}),
        ("query($t: String) { __typename }", {"t": "\ud800 lone surrogate"}),
    ],
)
async def test_nul_anywhere_in_graphql_is_a_400(
    api: Api, town: TenantInfo, query: str, variables: dict[str, Any]
) -> None:
    token = api.token(town, ["city_admin"])
    # json.dumps escapes what httpx could not encode (a lone surrogate).
    response = await api.client.post(
        "/graphql",
        content=json.dumps({"query": query, "variables": variables}),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    refused(response, 400)
    assert "NUL" in response.text or "surrogate" in response.text
    assert codes(response) == ["INVALID_INPUT"]
    assert "data" not in response.json()


async def test_nul_in_the_operation_name_or_a_get_parameter_is_a_400(api: Api, town: TenantInfo) -> None:
    token = {"Authorization": f"Bearer {api.token(town, ['city_admin'])}"}
    body = {"query": "query A { __typename }", "operationName": f"A{NUL}"}
    refused(await api.client.post("/graphql", json=body, headers=token), 400, "NUL")
    by_get = await api.client.get("/graphql", params={"query": f"{{ me {{ sub }} }}{NUL}"}, headers=token)
    refused(by_get, 400, "NUL")
    get_variables = {"query": "query($t: String!) { request(ticket: $t) { ticket } }"}
    get_variables["variables"] = json.dumps({"t": f"x{NUL}"})
    refused(await api.client.get("/graphql", params=get_variables, headers=token), 400, "NUL")


async def test_a_refused_write_writes_nothing(api: Api, town: TenantInfo, owner_dsn: str) -> None:
    before = snapshot(owner_dsn, town)
    token = api.token(town, ["city_admin"])
    values = {"category": "environment", "description": f"路灯{NUL}不亮", "address": "幸福路 1 号"}
    refused(await api.post(SUBMIT, {"input": values}, token=token), 400, "NUL")
    values = {
        "category": "environment",
        "description": "路灯不亮",
        "address": f"幸福路{NUL}",
        "tenant": TOWN,
    }
    refused(await api.post(SUBMIT, {"input": values}), 400, "NUL")
    refused(await api.post(LOGIN, {"t": TOWN, "u": f"admin{NUL}", "p": "liaison-demo"}), 400, "NUL")
    assert snapshot(owner_dsn, town) == before
    # The same write without the NUL goes through: the refusal above was the NUL's.
    values = {"category": "environment", "description": "路灯不亮", "address": "幸福路 1 号"}
    ok = await api.post(SUBMIT, {"input": values}, token=token)
    assert not ok.json()["data"]["submitRequest"]["__typename"].endswith("Error"), ok.text
    assert snapshot(owner_dsn, town)["requests"] == before["requests"] + 1


# ---- tokens ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"tenant": f"{TOWN}{NUL}"}, "tenant"),
        ({"tenant": "ALPHA'; --"}, "tenant"),
        ({"exp": 10**30}, "exp"),
        ({"exp": 2**63}, "exp"),
        ({"exp": 253402300800}, "exp"),
        ({"exp": 4102444800.5}, "exp"),
        ({"exp": "4102444800"}, "exp"),
        ({"exp": True}, "exp"),
        ({"sub": "system:intake"}, "reserved"),
        ({"sub": "phone:13800000000"}, "reserved"),
        ({"sub": "channel:app"}, "reserved"),
        ({"sub": "apikey:1"}, "reserved"),
        ({"sub": f"user:1{NUL}"}, "subject"),
        ({"roles": []}, "no role"),
        ({"scopes": [f"c1{NUL}"]}, "scope"),
    ],
)
async def test_a_validly_signed_but_hostile_token_is_a_401(
    api: Api, town: TenantInfo, claims: dict[str, Any], reason: str
) -> None:
    token = signed({"scopes": [town.scope], **claims})
    for response in (
        await api.post("{ me { sub } }", token=token),
        await api.client.get("/tiles/grid/0/0/0.mvt", headers={"Authorization": f"Bearer {token}"}),
        await api.client.get(
            f"{V2}/services.json",
            headers={"Authorization": f"Bearer {token}"},
            params={"jurisdiction_id": TOWN},
        ),
    ):
        refused(response, 401, reason)


# ---- bodies ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"null", "JSON object"),
        (b'"hello"', "JSON object"),
        (b"5", "JSON object"),
        (b"[]", "JSON object"),
        (b"[1, 2]", "JSON object"),
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b'{"query": "{ __typename }", "variables": {"x": 1' + b"0" * 5000 + b"}}", "not valid JSON"),
        (b'{"query": "{ me { sub \xff } }"}', "not UTF-8"),
        (b'{"query": "query($t: String) { __typename }", "variables": {"t": "\xc3\x28"}}', "not UTF-8"),
        ('{"query": "{ __typename }"}'.encode("utf-16"), "not UTF-8"),
        ('{"query": "{ __typename }"}'.encode("utf-32"), "not UTF-8"),
        (
            b'{"query": "{ __typename }", "variables": {"v": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
            "nested",
        ),
        (b'{"query": "{ __typename }", "variables": {"v": ' + b"[" * 70 + b"]" * 70 + b"}}", "nested"),
        (b'{"query": "{ __typename }", "extensions": ' + b'{"a":' * 100 + b"1" + b"}" * 100 + b"}", "nested"),
    ],
)
async def test_malformed_bodies_are_a_400_with_the_reason(api: Api, body: bytes, reason: str) -> None:
    response = await api.client.post("/graphql", content=body, headers={"Content-Type": "application/json"})
    refused(response, 400, reason)
    assert codes(response) == ["BAD_REQUEST"]


async def test_a_utf8_byte_order_mark_is_read_past(api: Api) -> None:
    body = '{"query": "{ __typename }"}'.encode("utf-8-sig")
    response = await api.client.post("/graphql", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and response.json() == {"data": {"__typename": "Query"}}


async def test_deep_get_variables_are_a_400(api: Api) -> None:
    params = {
        "query": "query($v: JSON) { __typename }",
        "variables": '{"v": ' + "[" * 5000 + "]" * 5000 + "}",
    }
    refused(await api.client.get("/graphql", params=params), 400, "nested")


async def _chunks(size: int) -> AsyncIterator[bytes]:
    yield b'{"query": "{ __typename }", "variables": {"padding": "'
    for _ in range(size // 65536):
        yield b" " * 65536
    yield b'"}}'


@pytest.mark.parametrize(
    "content",
    [
        json.dumps({"query": "{" + " " * 5_000_000 + "__typename }"}).encode(),
        json.dumps({"query": "{ __typename }", "variables": {"v": ["x" * 100] * 50_000}}).encode(),
    ],
    ids=["5 MB of whitespace", "5 MB of variables"],
)
async def test_large_bodies_are_a_413(api: Api, content: bytes) -> None:
    response = await api.client.post(
        "/graphql", content=content, headers={"Content-Type": "application/json"}
    )
    refused(response, 413, "Too Large")


async def test_a_large_body_without_a_length_is_a_413_too(api: Api) -> None:
    # A generator is sent without Content-Length: the limit counts what arrives.
    response = await api.client.post(
        "/graphql", content=_chunks(2_000_000), headers={"Content-Type": "application/json"}
    )
    refused(response, 413)


async def test_the_body_limit_is_a_setting_of_the_api(api: Api) -> None:
    small = create_app(dataclasses.replace(api.config, max_body_bytes=100))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=small), base_url="http://small") as client:
        ok = await client.post("/graphql", json={"query": "{ __typename }"})
        assert ok.status_code == 200
        big = await client.post("/graphql", json={"query": "{ __typename }", "variables": {"x": "y" * 100}})
        refused(big, 413)


# ---- ids, unexpected failures, codes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["99999999999999999999999", str(2**63), "0", "-1", "+5", " 5", "5_0", "٥", "05", "1e3", ""]
)
async def test_a_node_id_outside_the_key_range_is_invalid_input(api: Api, town: TenantInfo, key: str) -> None:
    token = api.token(town, ["city_admin"])
    bad = base64.urlsafe_b64encode(f"Request:{key}".encode()).decode()
    query = (
        "query($bad: ID!, $city: ID!) { bad: node(id: $bad) { id } city: node(id: $city) { id } me { sub } }"
    )
    response = await api.post(query, {"bad": bad, "city": encode_id("City", town.tenant_id)}, token=token)
    assert codes(response) == ["INVALID_INPUT"]
    body = response.json()
    assert body["errors"][0]["path"] == ["bad"]
    # The other aliases of the same request still answer: the transaction was not aborted.
    assert body["data"]["city"] == {"id": encode_id("City", town.tenant_id)}
    assert body["data"]["me"] == {"sub": "operator:test"}


async def test_the_largest_key_is_simply_not_found(api: Api, town: TenantInfo) -> None:
    token = api.token(town, ["city_admin"])
    response = await api.post(
        "query($id: ID!) { node(id: $id) { id } }", {"id": encode_id("Request", 2**63 - 1)}, token=token
    )
    assert response.json() == {"data": {"node": None}}


@pytest.mark.parametrize("year", [0, -1, 10000, 2**31 - 1])
async def test_holiday_calendar_out_of_range_is_invalid_input(api: Api, town: TenantInfo, year: int) -> None:
    token = api.token(town, ["city_admin"])
    response = await api.post(
        "query($y: Int!) { holidayCalendar(year: $y) { day } }", {"y": year}, token=token
    )
    assert codes(response) == ["INVALID_INPUT"]
    assert "year" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    ("query", "variables", "code"),
    [
        ("{ me { sub ", {}, "GRAPHQL_PARSE_FAILED"),
        ("{ nothingHere }", {}, "GRAPHQL_VALIDATION_FAILED"),
        ("{ holidayCalendar(year: 2026) { day } }", None, None),
        ('{ holidayCalendar(year: "x") { day } }', {}, "GRAPHQL_VALIDATION_FAILED"),
        ("query($y: Int!) { holidayCalendar(year: $y) { day } }", {"y": "x"}, "INVALID_INPUT"),
        ("query($y: Int!) { holidayCalendar(year: $y) { day } }", {}, "INVALID_INPUT"),
        (
            "query($t: DateTime!) { heatmap(from: $t, to: $t) }",
            {"t": "0001-01-01T00:00:00+01:00"},
            "INVALID_INPUT",
        ),
        ("query($t: DateTime!) { heatmap(from: $t, to: $t) }", {"t": "yesterday"}, "INVALID_INPUT"),
        ("{ " + "a: __typename " * 40 + "}", {}, "GRAPHQL_VALIDATION_FAILED"),
        ("{ " + "__typename " * 6000 + "}", {}, "GRAPHQL_PARSE_FAILED"),
        ("{" + "a{" * 2400 + "b" + "}" * 2401, {}, "GRAPHQL_PARSE_FAILED"),
        ("{ me " * 20 + "}" * 20, {}, "GRAPHQL_VALIDATION_FAILED"),
    ],
)
async def test_every_error_has_a_code(
    api: Api, town: TenantInfo, query: str, variables: dict[str, Any] | None, code: str | None
) -> None:
    token = api.token(town, ["city_admin"])
    found = codes(await api.post(query, variables, token=token))
    assert set(found) == ({code} if code else set()), found
    assert bool(found) == bool(code)


async def test_a_signed_out_caller_gets_unauthenticated(api: Api) -> None:
    assert codes(await api.post("{ me { sub } }")) == ["UNAUTHENTICATED"]


def _client(config: ApiConfig, name: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(config)), base_url=f"http://{name}")


@pytest.fixture
async def unreachable(api: Api) -> AsyncIterator[tuple[Api, Api]]:
    """Apps (outside production, in production) whose queries go where nothing listens: real, unexpected
    failures raised by the driver, with the host and the password in their messages."""
    database = Database("postgresql://liaison_app:secret@127.0.0.1:9/liaison", pool_size=1)
    debug = ApiConfig(database=database, tokens=api.config.tokens, directory=api.config.directory)
    production = ApiConfig(
        database=database, tokens=api.config.tokens, directory=api.config.directory, production=True
    )
    async with _client(debug, "debug") as first, _client(production, "production") as second:
        yield Api(first, debug), Api(second, production)
    await database.dispose()


async def test_unexpected_failures_have_a_code_and_no_detail(
    unreachable: tuple[Api, Api], town: TenantInfo
) -> None:
    debug, production = unreachable
    token = debug.token(town, ["city_admin"])
    for api, message in ((debug, "Unexpected error (OperationalError)."), (production, "Unexpected error.")):
        response = await api.post("{ a: city { name } b: holidayCalendar(year: 2026) { day } }", token=token)
        assert response.status_code == 200
        errors = response.json()["errors"]
        assert {tuple(error["path"]) for error in errors} == {("a",), ("b",)}
        for error in errors:
            assert error["message"] == message
            assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
        assert "127.0.0.1" not in response.text and "secret" not in response.text
        assert_clean(response)


# ---- GraphQL over HTTP: application/graphql-response+json ---------------------------------------------


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{ me { ", {}),
        ("{ nothingHere }", {}),
        ("query($y: Int!) { holidayCalendar(year: $y) { day } }", {"y": "x"}),
    ],
    ids=["parse", "validation", "variables"],
)
async def test_a_request_error_has_no_data_entry(
    api: Api, town: TenantInfo, query: str, variables: dict[str, Any]
) -> None:
    headers = {"Accept": "application/graphql-response+json"}
    response = await api.post(query, variables, token=api.token(town, ["city_admin"]), headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/graphql-response+json")
    body = response.json()
    assert "data" not in body and body["errors"][0]["extensions"]["code"]
    assert int(response.headers["content-length"]) == len(response.content)
    # Plain application/json keeps the legacy shape: 200 with data null.
    legacy = await api.post(query, variables, token=api.token(town, ["city_admin"]))
    assert legacy.status_code == 200 and legacy.json()["data"] is None


async def test_a_field_error_keeps_its_data_entry(api: Api, town: TenantInfo) -> None:
    headers = {"Accept": "application/graphql-response+json"}
    query = "{ me { sub } holidayCalendar(year: 0) { day } }"
    response = await api.post(query, token=api.token(town, ["city_admin"]), headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert "data" in body and body["errors"][0]["path"] == ["holidayCalendar"]


# ---- one rule for times ----------------------------------------------------------------------------------


async def test_every_datetime_comes_back_in_utc(api: Api, town: TenantInfo) -> None:
    token = api.token(town, ["city_admin"])
    values = {"category": "environment", "description": "井盖松动", "address": "幸福路 2 号"}
    # The receipt holds the deadlines as intake computed them, in the city's time zone.
    receipt = await api.gql(
        "mutation($input: SubmitRequestInput!) { submitRequest(input: $input) {"
        " ... on SubmitRequestPayload { progress { submittedAt responseDueAt resolutionDueAt } } } }",
        {"input": values},
        token,
    )
    progress = receipt["submitRequest"]["progress"]
    found = await api.gql(
        "{ requests(first: 3) { edges { node {"
        " submittedAt responseDueAt resolutionDueAt history { at } } } }"
        " districts(first: 2) { edges { node { createdAt } } } }",
        token=token,
    )
    times = [edge["node"]["createdAt"] for edge in found["districts"]["edges"]]
    times += [progress["submittedAt"], progress["responseDueAt"], progress["resolutionDueAt"]]
    for edge in found["requests"]["edges"]:
        request = edge["node"]
        times += [request["submittedAt"], request["responseDueAt"], request["resolutionDueAt"]]
        times += [entry["at"] for entry in request["history"]]
    assert len(times) >= 6
    for value in times:
        assert value.endswith("+00:00"), value
        assert datetime.fromisoformat(value).utcoffset() == timedelta(0)


def test_the_datetime_scalar_answers_in_utc() -> None:
    serialize, parse = DATETIME.serialize, DATETIME.parse_value
    assert serialize is not None and parse is not None
    shanghai = datetime(2026, 11, 25, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert serialize(shanghai) == "2026-11-25T00:00:00+00:00"
    assert serialize(datetime(2026, 11, 25, 8, 0)) == "2026-11-25T08:00:00+00:00"  # naive: taken as UTC
    assert parse("2026-11-25T08:00:00+08:00") == shanghai
    assert parse("2026-11-25T00:00:00Z") == shanghai


# ---- Open311 -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def town_key(database: Database, town: TenantInfo) -> str:
    async with unit_of_work(database, TenantContext.whole_tenant(town.tenant_id, "system:test")) as session:
        _, key = await apikeys.create_api_key(session, town.tenant_id, "hostile input")
    return key


def open311_refused(response: httpx.Response, status: int, mention: str) -> None:
    assert response.status_code == status, response.text
    assert_clean(response)
    body = response.json()
    assert body[0]["code"] == status and mention in body[0]["description"], body


@pytest.mark.parametrize(
    ("path", "params", "mention"),
    [
        ("services.json", {"jurisdiction_id": f"{TOWN}{NUL}"}, "NUL"),
        ("services.json", {"jurisdiction_id": TOWN, f"x{NUL}": "1"}, "NUL"),
        ("services.json", {"jurisdiction_id": "ALPHA'; --"}, "unknown"),
        ("requests.json", {"jurisdiction_id": TOWN, "service_code": f"environment{NUL}"}, "NUL"),
        ("requests.json", {"jurisdiction_id": TOWN, "service_request_id": f"1{NUL}"}, "NUL"),
        ("requests.json", {"jurisdiction_id": TOWN, "start_date": "0001-01-01T00:00:00"}, "years"),
        ("requests.json", {"jurisdiction_id": TOWN, "end_date": "0001-01-02T00:00:00+14:00"}, "years"),
        ("requests.json", {"jurisdiction_id": TOWN, "end_date": "9999-12-31T23:59:59-12:00"}, "years"),
        ("tokens/x%00.json", {"jurisdiction_id": TOWN}, "NUL"),
        ("requests/x%00.json", {"jurisdiction_id": TOWN}, "NUL"),
        ("services/x%00.json", {"jurisdiction_id": TOWN}, "NUL"),
        ("services.js%00on", {"jurisdiction_id": TOWN}, "neither json nor xml"),
    ],
)
async def test_open311_reads_refuse_hostile_parameters(
    api: Api, town: TenantInfo, path: str, params: dict[str, str], mention: str
) -> None:
    open311_refused(await api.client.get(f"{V2}/{path}", params=params), 400, mention)


@pytest.mark.parametrize(
    ("content", "content_type", "mention"),
    [
        (b"service_code=environment%00&address_string=x", "application/x-www-form-urlencoded", "NUL"),
        (b"service_code=environment&address_string=x%00y", "application/x-www-form-urlencoded", "NUL"),
        (b"service_code=\xff", "application/x-www-form-urlencoded", "not valid"),
        (
            json.dumps({"service_code": "environment", "description": f"a{NUL}"}).encode(),
            "application/json",
            "NUL",
        ),
        (b'{"service_code": "environment", "description": "\\ud800"}', "application/json", "Unicode"),
        (b'{"service_code": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "application/json", "not valid"),
        (b'{"lat": 1' + b"0" * 5000 + b"}", "application/json", "not valid"),
        (b"null", "application/json", "object"),
        (b"x" * 70_000, "application/x-www-form-urlencoded", "larger than"),
    ],
)
async def test_open311_posts_refuse_hostile_bodies_and_write_nothing(
    api: Api,
    town: TenantInfo,
    town_key: str,
    owner_dsn: str,
    content: bytes,
    content_type: str,
    mention: str,
) -> None:
    before = snapshot(owner_dsn, town)
    params = {"jurisdiction_id": TOWN, "api_key": town_key, "address_string": "幸福路 3 号"}
    response = await api.client.post(
        f"{V2}/requests.json", params=params, content=content, headers={"Content-Type": content_type}
    )
    status = 413 if mention == "larger than" else 400
    open311_refused(response, status, mention)
    assert snapshot(owner_dsn, town) == before


async def test_open311_counts_a_body_without_a_length(api: Api, town: TenantInfo, town_key: str) -> None:
    response = await api.client.post(
        f"{V2}/requests.json",
        params={"jurisdiction_id": TOWN, "api_key": town_key},
        content=_chunks(200_000),
        headers={"Content-Type": "application/json"},
    )
    open311_refused(response, 413, "larger than")


# ---- tiles ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "status", "mention"),
    [
        ("/tiles/grid/0/0/0.mvt", {"x": NUL}, 400, "NUL"),
        ("/tiles/gr%00id/0/0/0.mvt", {}, 400, "NUL"),
        ("/tiles/gr%00id.json", {}, 400, "NUL"),
        ("/tiles/grid/0/0/0%00.mvt", {}, 400, "NUL"),
        ("/tiles/heat/10/843/388.mvt", {"category": f"environment{NUL}"}, 400, "NUL"),
        ("/tiles/heat/10/843/388.mvt", {"state": "SUBMITTED\u0000"}, 400, "NUL"),
        ("/tiles/heat/10/843/388.mvt", {"to": "0001-01-01T00:00:00+14:00"}, 400, "years"),
        ("/tiles/heat/10/843/388.mvt", {"from": "0001-01-01T00:00:00+00:00"}, 400, "years"),
        ("/tiles/heat.json", {"to": "9999-12-31T23:59:59-12:00"}, 400, "years"),
        ("/tiles/grid/99999999999999999999/0/0.mvt", {}, 400, "out of range"),
        ("/tiles/%F0%9F%92%A9/0/0/0.mvt", {}, 404, "no tile layer"),
    ],
)
async def test_tiles_refuse_hostile_paths_and_parameters(
    api: Api, town: TenantInfo, path: str, params: dict[str, str], status: int, mention: str
) -> None:
    token = api.token(town, ["city_admin"])
    response = await api.client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
    refused(response, status, mention)


# ---- a short fuzz: random bodies, strings and headers --------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_strings = st.text(max_size=40) | st.sampled_from(["", NUL, TOWN, "c1", "\\u0000", "' OR 1=1 --", "%00", "٥"])
_TEMPLATES = [
    "{ requestProgress(tenant: %s, ticket: %s) { state } }",
    'mutation { login(tenant: %s, username: %s, password: "x") { __typename } }',
    "{ request(ticket: %s) { ticket } node(id: %s) { id } }",
    "{ heatmap(from: %s, to: %s) }",
    "{ holidayCalendar(year: 2026) { day } districts(first: 2, after: %s, code: %s) { totalCount } }",
    "{ locate(lon: 116.4, lat: 39.9) { outsideScope } requests(first: 3, after: %s) { totalCount } %s }",
]


def _literal(value: str) -> str:
    return json.dumps(value)


_queries = st.one_of(
    st.builds(
        lambda t, a, b: t % (_literal(a), _literal(b)), st.sampled_from(_TEMPLATES), _strings, _strings
    ),
    st.text(max_size=80),
)
_bodies = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda query, variables, name: json.dumps(
            {"query": query, "variables": variables, "operationName": name}
        ),
        _queries,
        _json_values,
        _json_values,
    ).map(str.encode),
    st.builds(lambda v: json.dumps(v).encode(), _json_values),
)
_content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-16", "text/plain", "application/graphql", ""]
)
_header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60)


@pytest.fixture(scope="module")
def fuzz_tokens(api: Api, town: TenantInfo) -> list[str]:
    return ["", f"Bearer {api.token(town, ['city_admin'])}", f"Bearer {api.token(town, ['resident'])}"]


FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(
    body=_bodies,
    content_type=_content_types,
    authorization=st.one_of(st.sampled_from([0, 1, 2]), _header_text),
    accept=st.sampled_from(["application/json", "application/graphql-response+json", "*/*"]),
)
async def test_fuzz_graphql(
    api: Api, fuzz_tokens: list[str], body: bytes, content_type: str, authorization: int | str, accept: str
) -> None:
    headers = {"Content-Type": content_type, "Accept": accept}
    header = fuzz_tokens[authorization] if isinstance(authorization, int) else authorization
    if header:
        headers["Authorization"] = header.encode("latin-1")  # type: ignore[assignment]
    assert_clean(await api.client.post("/graphql", content=body, headers=headers))


@FUZZ
@given(
    path=st.sampled_from(
        [
            "services.json",
            "services.xml",
            "requests.json",
            "requests.xml",
            "services/%s.json",
            "requests/%s.json",
            "tokens/%s.xml",
            "%s.json",
        ]
    ),
    segment=_strings,
    params=st.dictionaries(
        st.sampled_from(
            [
                "jurisdiction_id",
                "service_code",
                "start_date",
                "end_date",
                "status",
                "lat",
                "long",
                "service_request_id",
                "api_key",
                "address_string",
                "description",
                "crs",
            ]
        ),
        _strings | st.sampled_from([TOWN, "environment", "2026-01-01T00:00:00+08:00", "nan", "1e400"]),
        max_size=6,
    ),
    post=st.booleans(),
    body=st.binary(max_size=120) | _json_values.map(lambda v: json.dumps(v).encode()),
    content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/xml", ""]),
)
async def test_fuzz_open311(
    api: Api,
    path: str,
    segment: str,
    params: dict[str, str],
    post: bool,
    body: bytes,
    content_type: str,
) -> None:
    url = f"{V2}/{path % quote(segment, safe='') if '%s' in path else path}"
    if post:
        response = await api.client.post(
            url, params=params, content=body, headers={"Content-Type": content_type}
        )
    else:
        response = await api.client.get(url, params=params)
    assert_clean(response)
    if response.status_code >= 400 and response.headers["content-type"].startswith("application/json"):
        assert response.json()[0]["description"]


@FUZZ
@given(
    layer=st.sampled_from(["grid", "stations", "districts", "heat", "nothing"]) | _strings,
    z=st.integers(-2, 30).map(str) | _strings,
    x=st.integers(-2, 2**31).map(str) | _strings,
    y=st.integers(-2, 2**31).map(str) | _strings,
    params=st.dictionaries(
        st.sampled_from(["from", "to", "category", "state"]),
        _strings | st.sampled_from(["2026-01-01T00:00:00+08:00", "SUBMITTED", "environment"]),
        max_size=3,
    ),
    authorization=st.sampled_from([0, 1, 2]),
    tilejson=st.booleans(),
)
async def test_fuzz_tiles(
    api: Api,
    fuzz_tokens: list[str],
    layer: str,
    z: str,
    x: str,
    y: str,
    params: dict[str, str],
    authorization: int,
    tilejson: bool,
) -> None:
    parts = [quote(part, safe="") or "_" for part in (layer, z, x, y)]
    url = f"/tiles/{parts[0]}.json" if tilejson else f"/tiles/{'/'.join(parts)}.mvt"
    headers = {"Authorization": fuzz_tokens[authorization]} if authorization else {}
    assert_clean(await api.client.get(url, params=params, headers=headers))
