"""Open311 GeoReport v2 over HTTP, on the real database and the one intake pipeline, with a real worker."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from deploy.seed import seed_synthetic
from services.requests import apikeys, repository
from services.requests import service as requests_service
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tests.helpers import Api, TenantInfo

V2 = "/open311/v2"
SERVICE_FIELDS = ["service_code", "service_name", "description", "metadata", "type", "keywords", "group"]
REQUEST_FIELDS = [
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
]
PERSONAL = {
    "first_name": "Xiaoming",
    "last_name": "Wangxyz",
    "phone": "13912345678",
    "email": "xiaoming.private@example.com",
    "device_id": "device-4711-secret",
}


@dataclass
class City:
    tenant: TenantInfo
    # Per district: its scope and a point inside one of its grid cells.
    districts: list[tuple[str, float, float]]
    city_key: str
    district_key: str
    revoked_key: str


def _district_points(owner_dsn: str, code: str) -> list[tuple[str, float, float]]:
    with psycopg.connect(owner_dsn) as conn:
        rows = conn.execute(
            "SELECT b.scope::text, ST_X(ST_PointOnSurface(b.geom)), ST_Y(ST_PointOnSurface(b.geom)) "
            "FROM boundaries b JOIN cities c USING (tenant_id) "
            "WHERE c.code = %s AND b.level = 'grid' AND b.valid_to IS NULL ORDER BY b.id",
            (code,),
        ).fetchall()
    found: dict[str, tuple[str, float, float]] = {}
    for scope, lon, lat in rows:
        district = ".".join(scope.split(".")[:2])
        found.setdefault(district, (district, lon, lat))
    return list(found.values())


@pytest.fixture(scope="module")
async def city(database: Database, owner_dsn: str) -> City:
    result = await seed_synthetic(
        database, "openville", districts=2, streets=1, stations=1, seed=5, shapes=True
    )
    tenant = TenantInfo("openville", result.tenant_id)
    districts = _district_points(owner_dsn, "openville")
    assert len(districts) == 2
    async with unit_of_work(database, TenantContext.whole_tenant(tenant.tenant_id, "system:test")) as session:
        _, city_key = await apikeys.create_api_key(session, tenant.tenant_id, "city app")
        _, district_key = await apikeys.create_api_key(
            session, tenant.tenant_id, "district app", districts[0][0]
        )
        _, revoked_key = await apikeys.create_api_key(session, tenant.tenant_id, "old app")
        await apikeys.revoke(session, tenant.tenant_id, "old app")
    return City(tenant, districts, city_key, district_key, revoked_key)


def parse(response: httpx.Response, fmt: str) -> Any:
    """JSON as is; XML into the same shape (lists of dicts of text), checking the spec's element names."""
    if fmt == "json":
        assert response.headers["content-type"].startswith("application/json")
        return response.json()
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    root = ET.fromstring(response.content)
    items = {"services": "service", "service_requests": "request", "errors": "error"}
    if root.tag in items:
        assert all(child.tag == items[root.tag] for child in root), [c.tag for c in root]
        return [{field.tag: field.text for field in child} for child in root]
    assert root.tag == "service_definition"
    return {
        child.tag: (child.text if len(child) == 0 and child.tag != "attributes" else []) for child in root
    }


def assert_error(response: httpx.Response, fmt: str, status: int) -> str:
    assert response.status_code == status, response.text
    body = parse(response, fmt)
    assert len(body) == 1
    assert set(body[0]) == {"code", "description"}
    assert str(body[0]["code"]) == str(status)
    assert body[0]["description"]
    return str(body[0]["description"])


async def post_request(
    api: Api, city: City, fmt: str, district: int, *, key: str | None = None, **extra: str
) -> dict[str, Any]:
    _, lon, lat = city.districts[district]
    form = {
        "jurisdiction_id": "openville",
        "api_key": key or city.city_key,
        "service_code": "environment",
        "lat": f"{lat:.7f}",
        "long": f"{lon:.7f}",
        "address_string": "幸福路 12 号",
        "description": "垃圾桶满了三天没人清运",
        **extra,
    }
    response = await api.client.post(f"{V2}/requests.{fmt}", data=form)
    assert response.status_code == 201, response.text
    body = parse(response, fmt)
    assert len(body) == 1
    return dict(body[0])


async def staff_step(database: Database, city: City, ticket: str, *steps: tuple[str, dict[str, Any]]) -> None:
    tenant_id = city.tenant.tenant_id
    staff = requests_service.Actor("operator:test", frozenset({"city_admin"}), (city.tenant.scope,))
    async with unit_of_work(database, TenantContext.whole_tenant(tenant_id, "operator:test")) as session:
        request = await repository.by_ticket(session, tenant_id, ticket)
        assert request is not None
        for name, arguments in steps:
            await getattr(requests_service, name)(session, staff, tenant_id, request.id, **arguments)


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_round_trip(api: Api, city: City, database: Database, worker: object, fmt: str) -> None:
    response = await api.client.get(f"{V2}/services.{fmt}", params={"jurisdiction_id": "openville"})
    assert response.status_code == 200
    services = parse(response, fmt)
    assert all(list(service) == SERVICE_FIELDS for service in services)
    by_code = {service["service_code"]: service for service in services}
    environment = by_code["environment"]
    assert environment["service_name"] == "环境卫生"
    assert str(environment["metadata"]).lower() == "false"
    assert environment["type"] == "realtime"
    assert environment["group"] == "basic"
    assert {service["group"] for service in services} == {"basic", "personalised"}

    response = await api.client.get(
        f"{V2}/services/environment.{fmt}", params={"jurisdiction_id": "openville"}
    )
    assert response.status_code == 200
    assert parse(response, fmt) == {"service_code": "environment", "attributes": []}

    created = await post_request(api, city, fmt, 0, media_url="https://example.com/photo/1.jpg", **PERSONAL)
    assert set(created) == {"service_request_id", "service_notice", "account_id", "token"}
    ticket = created["service_request_id"]
    assert ticket in created["service_notice"]

    response = await api.client.get(
        f"{V2}/tokens/{created['token']}.{fmt}", params={"jurisdiction_id": "openville"}
    )
    assert response.status_code == 200
    assert parse(response, fmt) == [{"service_request_id": ticket, "token": created["token"]}]

    response = await api.client.get(f"{V2}/requests/{ticket}.{fmt}", params={"jurisdiction_id": "openville"})
    assert response.status_code == 200
    [found] = parse(response, fmt)
    assert list(found) == REQUEST_FIELDS
    assert found["service_request_id"] == ticket
    assert found["status"] == "open"
    assert found["status_notes"] == "已收到，等待受理"  # nobody has accepted it yet
    assert found["service_code"] == "environment"
    assert found["media_url"] == "https://example.com/photo/1.jpg"
    assert found["address"] == "幸福路 12 号"
    assert found["agency_responsible"]  # the station it was routed to
    assert found["requested_datetime"].endswith("+08:00")
    assert found["expected_datetime"] > found["requested_datetime"]
    _, lon, lat = city.districts[0]
    assert abs(float(found["lat"]) - lat) < 1e-6 and abs(float(found["long"]) - lon) < 1e-6

    if fmt == "json":
        await staff_step(database, city, ticket, ("reject", {"note": "不属于本平台受理范围，请致电物业"}))
        note = "不属于本平台受理范围，请致电物业"
    else:
        note = "垃圾已清运，桶已更换"
        await staff_step(
            database,
            city,
            ticket,
            ("accept", {}),
            ("assign", {"assignee": "user:42"}),
            ("resolve", {"note": note}),
        )
    response = await api.client.get(f"{V2}/requests/{ticket}.{fmt}", params={"jurisdiction_id": "openville"})
    [found] = parse(response, fmt)
    assert found["status"] == "closed"
    assert found["status_notes"] == note

    response = await api.client.get(
        f"{V2}/requests.{fmt}",
        params={"jurisdiction_id": "openville", "service_request_id": ticket, "status": "closed"},
    )
    assert [item["service_request_id"] for item in parse(response, fmt)] == [ticket]


async def test_post_as_json_and_personal_data_kept_but_never_shown(
    api: Api, city: City, owner_dsn: str, worker: object
) -> None:
    _, lon, lat = city.districts[1]
    response = await api.client.post(
        f"{V2}/requests.json",
        json={
            "jurisdiction_id": "openville",
            "api_key": city.city_key,
            "service_code": "parking",
            "lat": lat,
            "long": lon,
            "description": "消防通道被占用",
            **PERSONAL,
        },
    )
    assert response.status_code == 201, response.text
    [created] = response.json()
    ticket = created["service_request_id"]
    with psycopg.connect(owner_dsn) as conn:
        stored = conn.execute(
            "SELECT channel, contact_name, contact_phone, contact_email, external_id, check_code_hash "
            "FROM requests WHERE ticket = %s",
            (ticket,),
        ).fetchone()
    # The token is the receipt's check code: only its SHA-256 is kept.
    assert stored == (
        "open311",
        "Xiaoming Wangxyz",
        "13912345678",
        "xiaoming.private@example.com",
        None,
        hashlib.sha256(created["token"].replace("-", "").upper().encode()).hexdigest(),
    )

    params = {"jurisdiction_id": "openville"}
    bodies = [
        await api.client.get(f"{V2}/requests.json", params=params),
        await api.client.get(f"{V2}/requests.xml", params=params),
        await api.client.get(f"{V2}/requests/{ticket}.json", params=params),
        await api.client.get(f"{V2}/requests/{ticket}.xml", params=params),
        await api.client.get(f"{V2}/requests.json", params={**params, "api_key": city.city_key}),
    ]
    for response in bodies:
        assert response.status_code == 200
        assert ticket in response.text
        for value in PERSONAL.values():
            assert value not in response.text
        assert "Xiaoming" not in response.text and "private@" not in response.text


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_errors_in_the_spec_format(api: Api, city: City, fmt: str) -> None:
    _, lon, lat = city.districts[0]
    base = {"jurisdiction_id": "openville", "api_key": city.city_key, "description": "路灯不亮"}
    located = {**base, "service_code": "safety", "lat": str(lat), "long": str(lon)}
    cases: list[tuple[str, str, dict[str, str], int, str]] = [
        ("GET", "services", {}, 400, "jurisdiction_id"),
        ("GET", "services", {"jurisdiction_id": "atlantis"}, 400, "atlantis"),
        ("POST", "requests", {**base, "lat": str(lat), "long": str(lon)}, 400, "service_code"),
        ("POST", "requests", {**located, "service_code": "unicorns"}, 400, "unicorns"),
        ("POST", "requests", {**located, "lat": "north"}, 400, "lat"),
        ("POST", "requests", {**located, "long": "200"}, 400, "long"),
        ("POST", "requests", {**located, "lat": ""}, 400, "lat and long"),
        ("POST", "requests", {**base, "service_code": "safety"}, 400, "location"),
        ("POST", "requests", {**located, "api_key": "guessed"}, 403, "api_key"),
        ("POST", "requests", {k: v for k, v in located.items() if k != "api_key"}, 403, "api_key"),
        ("GET", "requests/19700101-000000", {"jurisdiction_id": "openville"}, 404, "19700101-000000"),
        ("GET", "tokens/no-such-token", {"jurisdiction_id": "openville"}, 404, "no-such-token"),
        ("GET", "services/unicorns", {"jurisdiction_id": "openville"}, 404, "unicorns"),
        ("GET", "requests", {"jurisdiction_id": "openville", "status": "pending"}, 400, "pending"),
        ("GET", "requests", {"jurisdiction_id": "openville", "start_date": "yesterday"}, 400, "start_date"),
        ("GET", "requests", {"jurisdiction_id": "openville", "api_key": "guessed"}, 403, "api_key"),
    ]
    for method, path, params, status, mentioned in cases:
        url = f"{V2}/{path}.{fmt}"
        if method == "GET":
            response = await api.client.get(url, params=params)
        else:
            response = await api.client.post(url, data=params)
        description = assert_error(response, fmt, status)
        assert mentioned in description, (path, params, description)


async def test_unknown_format_and_bad_token(api: Api, city: City) -> None:
    response = await api.client.get(f"{V2}/services.csv", params={"jurisdiction_id": "openville"})
    assert assert_error(response, "json", 400).startswith("the format 'csv'")
    response = await api.client.get(
        f"{V2}/requests.xml",
        params={"jurisdiction_id": "openville"},
        headers={"Authorization": "Bearer nope"},
    )
    assert_error(response, "xml", 401)


async def test_a_revoked_key_is_refused(api: Api, city: City) -> None:
    _, lon, lat = city.districts[0]
    form = {
        "jurisdiction_id": "openville",
        "api_key": city.revoked_key,
        "service_code": "safety",
        "lat": str(lat),
        "long": str(lon),
        "description": "井盖缺失",
    }
    assert "revoked" in assert_error(await api.client.post(f"{V2}/requests.json", data=form), "json", 403)
    response = await api.client.get(
        f"{V2}/requests.json", params={"jurisdiction_id": "openville", "api_key": city.revoked_key}
    )
    assert_error(response, "json", 403)


async def test_a_district_reads_only_its_own_requests(api: Api, city: City, worker: object) -> None:
    mine = (await post_request(api, city, "json", 0))["service_request_id"]
    theirs = (await post_request(api, city, "json", 1))["service_request_id"]
    district_scope = city.districts[0][0]
    token = api.token(city.tenant, ["district_staff"], [district_scope])
    readers: list[tuple[dict[str, str], dict[str, str]]] = [
        ({"Authorization": f"Bearer {token}"}, {}),
        ({}, {"jurisdiction_id": "openville", "api_key": city.district_key}),
    ]
    for headers, params in readers:
        response = await api.client.get(f"{V2}/requests/{theirs}.json", params=params, headers=headers)
        assert_error(response, "json", 404)
        response = await api.client.get(f"{V2}/requests/{mine}.json", params=params, headers=headers)
        assert response.status_code == 200, response.text
        listed = await api.client.get(f"{V2}/requests.json", params=params, headers=headers)
        tickets = {item["service_request_id"] for item in listed.json()}
        assert mine in tickets and theirs not in tickets
        response = await api.client.get(
            f"{V2}/requests.json",
            params={**params, "service_request_id": f"{mine},{theirs}"},
            headers=headers,
        )
        assert [item["service_request_id"] for item in response.json()] == [mine]
    # The whole city's key sees both.
    listed = await api.client.get(
        f"{V2}/requests.json", params={"jurisdiction_id": "openville", "api_key": city.city_key}
    )
    assert {mine, theirs} <= {item["service_request_id"] for item in listed.json()}
    # A token of another tenant is no key to this one.
    stranger = api.token("alpha", ["city_admin"])
    response = await api.client.get(
        f"{V2}/requests.json",
        params={"jurisdiction_id": "openville"},
        headers={"Authorization": f"Bearer {stranger}"},
    )
    assert response.status_code in (401, 403)


async def test_filters_dates_and_status(api: Api, city: City, worker: object) -> None:
    ticket = (await post_request(api, city, "json", 1, service_code="culture"))["service_request_id"]
    params = {"jurisdiction_id": "openville", "service_code": "culture"}
    listed = (await api.client.get(f"{V2}/requests.json", params=params)).json()
    assert ticket in {item["service_request_id"] for item in listed}
    assert {item["service_code"] for item in listed} == {"culture"}
    closed = (await api.client.get(f"{V2}/requests.json", params={**params, "status": "closed"})).json()
    assert ticket not in {item["service_request_id"] for item in closed}
    both = (await api.client.get(f"{V2}/requests.json", params={**params, "status": "open,closed"})).json()
    assert ticket in {item["service_request_id"] for item in both}
    old = {**params, "start_date": "2020-01-01T00:00:00+08:00", "end_date": "2020-02-01T00:00:00+08:00"}
    assert (await api.client.get(f"{V2}/requests.json", params=old)).json() == []


async def test_private_tenant_needs_credentials(api: Api, database: Database, owner_dsn: str) -> None:
    result = await seed_synthetic(database, "quietville", districts=1, streets=1, stations=1, seed=6)
    with psycopg.connect(owner_dsn) as conn:
        conn.execute(
            "UPDATE request_settings SET open311_public = false WHERE tenant_id = %s", (result.tenant_id,)
        )
    params = {"jurisdiction_id": "quietville"}
    for path in ("requests.json", "requests/20260101-000001.json", "tokens/abc.json", "services.json"):
        assert "not public" in assert_error(await api.client.get(f"{V2}/{path}", params=params), "json", 401)
    assert_error(await api.client.get(f"{V2}/requests.xml", params=params), "xml", 401)
    token = api.token(TenantInfo("quietville", result.tenant_id), ["city_admin"])
    response = await api.client.get(f"{V2}/requests.json", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert json.loads(response.text) == []


async def test_the_token_is_the_receipts_check_code_read_within_the_callers_scope(
    api: Api, city: City, worker: object
) -> None:
    created = await post_request(api, city, "json", 1)
    ticket, token = created["service_request_id"], created["token"]
    progress = await api.gql(
        "query($c: String!, $t: String!, $k: String!) "
        "{ requestProgress(tenant: $c, ticket: $t, checkCode: $k) { ticket } }",
        {"c": "openville", "t": ticket, "k": token},
    )
    assert progress["requestProgress"] == {"ticket": ticket}
    url = f"{V2}/tokens/{token}.json"
    public = await api.client.get(url, params={"jurisdiction_id": "openville"})
    assert public.json() == [{"service_request_id": ticket, "token": token}]
    # A key of the other district is answered as for a token that does not exist.
    other = await api.client.get(url, params={"jurisdiction_id": "openville", "api_key": city.district_key})
    unknown = await api.client.get(
        f"{V2}/tokens/NOPE-NOPE-NOPE.json",
        params={"jurisdiction_id": "openville", "api_key": city.district_key},
    )
    assert assert_error(other, "json", 404).replace(token, "X") == assert_error(unknown, "json", 404).replace(
        "NOPE-NOPE-NOPE", "X"
    )


async def test_a_retried_post_with_the_same_idempotency_key_is_the_first_request(
    api: Api, city: City, worker: object
) -> None:
    _, lon, lat = city.districts[0]
    form = {
        "jurisdiction_id": "openville",
        "api_key": city.city_key,
        "service_code": "parking",
        "lat": f"{lat:.7f}",
        "long": f"{lon:.7f}",
        "description": "车辆堵住消防通道",
    }
    headers = {"Idempotency-Key": "open311-retry-0001-aaaa-bbbb"}
    first = await api.client.post(f"{V2}/requests.json", data=form, headers=headers)
    retry = await api.client.post(f"{V2}/requests.json", data=form, headers=headers)
    assert (first.status_code, retry.status_code) == (201, 200)
    assert first.json() == retry.json()
    other = await api.client.post(
        f"{V2}/requests.json", data={**form, "description": "另一件事"}, headers=headers
    )
    assert "idempotency key" in assert_error(other, "json", 409)
    # Bound to the key that sent it: another api key's request under the same header is its own.
    theirs = await api.client.post(
        f"{V2}/requests.json", data={**form, "api_key": city.district_key}, headers=headers
    )
    assert theirs.status_code == 201
    assert theirs.json()[0]["service_request_id"] != first.json()[0]["service_request_id"]


async def test_a_point_far_outside_the_jurisdiction_is_refused(api: Api, city: City) -> None:
    form = {
        "jurisdiction_id": "openville",
        "api_key": city.city_key,
        "service_code": "parking",
        "lat": "30.0",
        "long": "100.0",
        "description": "定位错了",
    }
    response = await api.client.post(f"{V2}/requests.json", data=form)
    assert "outside the city" in assert_error(response, "json", 400)
