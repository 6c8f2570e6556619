"""City admins create, rename, move and retire nodes; everyone else gets a typed error, never a change."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.helpers import Api, TenantInfo

PAYLOADS = {
    "District": "... on DistrictPayload { district { id code name scope } }",
    "Street": "... on StreetPayload { street { id code name scope district { code } } }",
    "Station": "... on StationPayload { station { id code name scope street { code } } }",
    "Node": "... on NodePayload { node { id code name scope retiredAt } }",
}


def mutation(name: str, input_type: str, payload: str) -> str:
    selection = f"__typename ... on Error {{ code message field }} {PAYLOADS[payload]}"
    return f"mutation($input: {input_type}!) {{ {name}(input: $input) {{ {selection} }} }}"


CREATE_DISTRICT = mutation("createDistrict", "CreateDistrictInput", "District")
CREATE_STREET = mutation("createStreet", "CreateStreetInput", "Street")
CREATE_STATION = mutation("createStation", "CreateStationInput", "Station")
RENAME = mutation("renameNode", "RenameNodeInput", "Node")
MOVE_STREET = mutation("moveStreet", "MoveStreetInput", "Street")
MOVE_STATION = mutation("moveStation", "MoveStationInput", "Station")
RETIRE = mutation("retireNode", "RetireNodeInput", "Node")


@pytest.fixture(scope="module")
async def gamma(api: Api) -> TenantInfo:
    """A tenant of its own for tests that change the hierarchy."""
    from deploy.seed import seed_synthetic

    result = await seed_synthetic(api.config.database, "gamma", districts=2, streets=1, stations=1, seed=3)
    return TenantInfo("gamma", result.tenant_id)


async def run(api: Api, query: str, token: str, **input: Any) -> dict[str, Any]:
    data = await api.gql(query, {"input": input}, token=token)
    result: dict[str, Any] = next(iter(data.values()))
    return result


async def test_create_rename_move_retire(api: Api, gamma: TenantInfo, owner_dsn: str) -> None:
    admin = api.token(gamma, ["city_admin"])
    d1 = (await run(api, CREATE_DISTRICT, admin, code="M01", name="  新  区 "))["district"]
    assert d1["name"] == "新 区" and d1["scope"].startswith(gamma.scope + ".d")
    d2 = (await run(api, CREATE_DISTRICT, admin, code="M02", name="另一区"))["district"]
    street = (await run(api, CREATE_STREET, admin, districtId=d1["id"], code="M01S1", name="一街道"))[
        "street"
    ]
    assert street["scope"].startswith(d1["scope"] + ".s") and street["district"]["code"] == "M01"
    station = await run(api, CREATE_STATION, admin, streetId=street["id"], code="M01S1T1", name="一社区")
    station = station["station"]
    assert station["scope"].startswith(street["scope"] + ".t")

    renamed = await run(api, RENAME, admin, id=station["id"], name="更名社区")
    assert renamed["node"]["name"] == "更名社区"

    moved = (await run(api, MOVE_STREET, admin, id=street["id"], districtId=d2["id"]))["street"]
    assert moved["scope"].startswith(d2["scope"] + ".") and moved["district"]["code"] == "M02"
    after = await api.gql(
        "query($id: ID!) { node(id: $id) { ... on Station { scope street { district { code } } } } }",
        {"id": station["id"]},
        token=admin,
    )
    assert after["node"]["scope"].startswith(moved["scope"] + ".t")  # descendants follow
    assert after["node"]["street"]["district"]["code"] == "M02"

    blocked = await run(api, RETIRE, admin, id=street["id"])
    assert blocked["code"] == "CONFLICT"
    assert (await run(api, RETIRE, admin, id=station["id"]))["node"]["retiredAt"] is not None
    assert (await run(api, RETIRE, admin, id=street["id"]))["node"]["retiredAt"] is not None
    listed = await api.gql(
        "query($id: ID!) { node(id: $id) { ... on District { streets { totalCount }"
        " all: streets(includeRetired: true) { totalCount } } } }",
        {"id": d2["id"]},
        token=admin,
    )
    assert listed["node"] == {"streets": {"totalCount": 0}, "all": {"totalCount": 1}}
    again = await run(api, RETIRE, admin, id=street["id"])
    assert again["code"] == "CONFLICT"

    with psycopg.connect(owner_dsn) as conn:
        actions = [
            row[0]
            for row in conn.execute(
                "SELECT action FROM audit_log WHERE tenant_id = %s AND seq > 1 ORDER BY seq",
                (gamma.tenant_id,),
            )
        ]
    assert actions == [
        "district.created",
        "district.created",
        "street.created",
        "station.created",
        "station.renamed",
        "street.moved",
        "station.retired",
        "street.retired",
    ]


async def test_bad_input_gets_typed_errors_and_changes_nothing(
    api: Api, gamma: TenantInfo, owner_dsn: str
) -> None:
    admin = api.token(gamma, ["city_admin"])
    with psycopg.connect(owner_dsn) as conn:
        before = conn.execute(
            "SELECT count(*) FROM districts WHERE tenant_id = %s", (gamma.tenant_id,)
        ).fetchone()
    cases = [
        (CREATE_DISTRICT, {"code": "D001", "name": "重复"}, "DUPLICATE_CODE", "code"),
        (CREATE_DISTRICT, {"code": "bad code", "name": "x"}, "INVALID_INPUT", "code"),
        (CREATE_DISTRICT, {"code": "OK1", "name": "   "}, "INVALID_INPUT", "name"),
        (CREATE_DISTRICT, {"code": "OK2", "name": "x" * 201}, "INVALID_INPUT", "name"),
        (CREATE_STREET, {"districtId": "garbage", "code": "S", "name": "x"}, "INVALID_INPUT", "districtId"),
        (RENAME, {"id": "RGlzdHJpY3Q6OTk5OTk5", "name": "x"}, "NOT_FOUND", "id"),  # District:999999
        (MOVE_STREET, {"id": "RGlzdHJpY3Q6MQ", "districtId": "RGlzdHJpY3Q6MQ"}, "INVALID_INPUT", "id"),
    ]
    for query, input, code, field in cases:
        result = await run(api, query, admin, **input)
        assert (result["code"], result["field"]) == (code, field), (input, result)
        assert result["message"]
    with psycopg.connect(owner_dsn) as conn:
        after = conn.execute(
            "SELECT count(*) FROM districts WHERE tenant_id = %s", (gamma.tenant_id,)
        ).fetchone()
        leaked = conn.execute(
            "SELECT count(*) FROM outbox WHERE tenant_id = %s AND kwargs->>'node_id' IS NULL",
            (gamma.tenant_id,),
        ).fetchone()
    assert before == after and leaked == (0,)


async def test_only_city_admins_may_change_the_hierarchy(api: Api, gamma: TenantInfo) -> None:
    tree = await api.gql(
        "{ districts { edges { node { id scope } } } }", token=api.token(gamma, ["city_admin"])
    )
    district = tree["districts"]["edges"][0]["node"]
    staff = api.token(gamma, ["district_staff", "deputy"], [district["scope"]])
    result = await run(api, RENAME, staff, id=district["id"], name="偷改")
    assert result["code"] == "FORBIDDEN"
    anonymous = await api.post(RENAME, {"input": {"id": district["id"], "name": "x"}})
    assert anonymous.status_code == 401


async def test_an_admin_scoped_below_the_city_is_out_of_scope_above_it(api: Api, gamma: TenantInfo) -> None:
    tree = await api.gql(
        "{ districts { edges { node { id scope } } } }", token=api.token(gamma, ["city_admin"])
    )
    own, other = (edge["node"] for edge in tree["districts"]["edges"][:2])
    scoped_admin = api.token(gamma, ["city_admin"], [own["scope"]])
    city_level = await run(api, CREATE_DISTRICT, scoped_admin, code="NOPE", name="越权")
    assert city_level["code"] == "OUT_OF_SCOPE"
    sibling = await run(api, RENAME, scoped_admin, id=other["id"], name="越权")
    assert sibling["code"] == "NOT_FOUND"  # a sibling is not even visible


async def test_another_tenants_admin_cannot_touch_this_tenant(
    api: Api, gamma: TenantInfo, beta: TenantInfo
) -> None:
    tree = await api.gql(
        "{ districts { edges { node { id name } } } }", token=api.token(gamma, ["city_admin"])
    )
    target = tree["districts"]["edges"][0]["node"]
    intruder = api.token(beta, ["city_admin"])
    for query, input in [
        (RENAME, {"id": target["id"], "name": "入侵"}),
        (RETIRE, {"id": target["id"]}),
        (CREATE_STREET, {"districtId": target["id"], "code": "EVIL", "name": "入侵"}),
    ]:
        result = await run(api, query, intruder, **input)
        assert result["code"] == "NOT_FOUND"
    still = await api.gql(
        "query($id: ID!) { node(id: $id) { ... on District { name } } }",
        {"id": target["id"]},
        token=api.token(gamma, ["city_admin"]),
    )
    assert still["node"]["name"] == target["name"]
