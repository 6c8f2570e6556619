"""The hierarchy over GraphQL: scoped trees, connections, node(id:), and one statement per level."""

from __future__ import annotations

import base64

import pytest

from tests.helpers import Api, TenantInfo

TREE = """{ city { code name scope districts(first: 50) { totalCount edges { node { id code scope
  streets(first: 50) { totalCount edges { node { id code scope
    stations(first: 50) { totalCount edges { node { id code scope street { code district { code } } } } }
  } } } } } } } }"""


def district_scopes(data: dict[str, object]) -> list[str]:
    edges = data["city"]["districts"]["edges"]  # type: ignore[index]
    return [edge["node"]["scope"] for edge in edges]


async def test_the_city_admin_sees_the_whole_tree(api: Api, alpha: TenantInfo) -> None:
    data = await api.gql(TREE, token=api.token(alpha, ["city_admin"]))
    city = data["city"]
    assert (city["code"], city["scope"]) == ("alpha", alpha.scope)
    assert city["districts"]["totalCount"] == 3
    streets = [s["node"] for d in city["districts"]["edges"] for s in d["node"]["streets"]["edges"]]
    stations = [t["node"] for s in streets for t in s["stations"]["edges"]]
    assert (len(streets), len(stations)) == (9, 18)
    assert all(t["scope"].startswith(alpha.scope + ".") for t in stations)
    assert all(t["code"].startswith(t["street"]["code"]) for t in stations)


async def test_a_district_user_sees_the_city_and_their_district_only(api: Api, alpha: TenantInfo) -> None:
    admin = await api.gql(TREE, token=api.token(alpha, ["city_admin"]))
    own, sibling = district_scopes(admin)[:2]
    data = await api.gql(TREE, token=api.token(alpha, ["district_staff"], [own]))
    assert data["city"]["code"] == "alpha"  # an ancestor: visible
    assert district_scopes(data) == [own]
    flat = await api.gql(
        "{ districts { totalCount } streets(first: 200) { totalCount edges { node { scope } } } }",
        token=api.token(alpha, ["district_staff"], [own]),
    )
    assert flat["districts"]["totalCount"] == 1
    assert flat["streets"]["totalCount"] == 3
    assert all(e["node"]["scope"].startswith(own + ".") for e in flat["streets"]["edges"])
    sibling_id = admin["city"]["districts"]["edges"][1]["node"]["id"]
    found = await api.gql(
        "query($id: ID!) { node(id: $id) { id } }",
        {"id": sibling_id},
        token=api.token(alpha, ["district_staff"], [own]),
    )
    assert found == {"node": None}
    assert sibling not in str(found)


async def test_a_station_user_sees_its_ancestors_but_no_siblings(api: Api, alpha: TenantInfo) -> None:
    admin = await api.gql(TREE, token=api.token(alpha, ["city_admin"]))
    street = admin["city"]["districts"]["edges"][0]["node"]["streets"]["edges"][0]["node"]
    station = street["stations"]["edges"][0]["node"]
    data = await api.gql(TREE, token=api.token(alpha, ["station_liaison"], [station["scope"]]))
    (district,) = data["city"]["districts"]["edges"]
    (only_street,) = district["node"]["streets"]["edges"]
    (only_station,) = only_street["node"]["stations"]["edges"]
    assert only_station["node"]["id"] == station["id"]
    assert only_street["node"]["stations"]["totalCount"] == 1


async def test_another_tenant_is_invisible_through_every_query(
    api: Api, alpha: TenantInfo, beta: TenantInfo
) -> None:
    beta_tree = await api.gql(TREE, token=api.token(beta, ["city_admin"]))
    beta_ids = [
        beta_tree["city"]["districts"]["edges"][0]["node"]["id"],
        base64.urlsafe_b64encode(f"City:{beta.tenant_id}".encode()).decode().rstrip("="),
    ]
    alpha_token = api.token(alpha, ["city_admin"])
    for global_id in beta_ids:
        assert await api.gql(
            "query($id: ID!) { node(id: $id) { id } }", {"id": global_id}, token=alpha_token
        ) == {"node": None}
    flat = await api.gql("{ stations(first: 200) { edges { node { scope } } } }", token=alpha_token)
    assert all(e["node"]["scope"].startswith(alpha.scope + ".") for e in flat["stations"]["edges"])


async def test_node_resolves_every_type(api: Api, alpha: TenantInfo) -> None:
    token = api.token(alpha, ["city_admin"])
    tree = await api.gql(TREE, token=token)
    district = tree["city"]["districts"]["edges"][0]["node"]
    street = district["streets"]["edges"][0]["node"]
    station = street["stations"]["edges"][0]["node"]
    for node, typename in [(district, "District"), (street, "Street"), (station, "Station")]:
        found = await api.gql(
            "query($id: ID!) { node(id: $id) { __typename id ... on HierarchyNode { code } } }",
            {"id": node["id"]},
            token=token,
        )
        assert found["node"] == {"__typename": typename, "id": node["id"], "code": node["code"]}
    bad = await api.post('{ node(id: "garbage!") { id } }', token=token)
    assert bad.json()["errors"][0]["extensions"]["code"] == "INVALID_INPUT"


async def test_connections_paginate_with_cursors_and_filter(api: Api, alpha: TenantInfo) -> None:
    token = api.token(alpha, ["city_admin"])
    page = """query($after: String) { stations(first: 7, after: $after) { totalCount
        pageInfo { hasNextPage hasPreviousPage endCursor } edges { cursor node { code } } } }"""
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        data = (await api.gql(page, {"after": after}, token=token))["stations"]
        assert data["totalCount"] == 18
        assert data["pageInfo"]["hasPreviousPage"] == (after is not None)
        seen += [edge["node"]["code"] for edge in data["edges"]]
        pages += 1
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    assert pages == 3
    assert seen == sorted(seen) and len(set(seen)) == 18

    by_code = await api.gql('{ districts(code: "D002") { totalCount edges { node { code } } } }', token=token)
    assert by_code["districts"]["edges"] == [{"node": {"code": "D002"}}]
    names = await api.gql("{ districts { edges { node { name } } } }", token=token)
    fragment = names["districts"]["edges"][0]["node"]["name"][:1]
    filtered = await api.gql(
        "query($n: String) { districts(nameContains: $n) { edges { node { name } } } }",
        {"n": fragment},
        token=token,
    )
    assert filtered["districts"]["edges"] and all(
        fragment in e["node"]["name"] for e in filtered["districts"]["edges"]
    )
    nothing = await api.gql('{ districts(nameContains: "%") { totalCount } }', token=token)
    assert nothing["districts"]["totalCount"] == 0
    too_many = await api.post("{ districts(first: 100000) { totalCount } }", token=token)
    assert too_many.json()["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
    bad_cursor = await api.post('{ districts(after: "bm9wZQ==") { totalCount } }', token=token)
    assert bad_cursor.json()["errors"][0]["extensions"]["code"] == "INVALID_INPUT"


async def test_nested_lists_cost_one_statement_per_level(
    api: Api, alpha: TenantInfo, beta: TenantInfo
) -> None:
    """The resolvers' path (createdAt keeps the query off the compiled path): city, districts, streets,
    stations; the street and district parents come from the primed loaders."""
    resolved = TREE.replace("id code scope street", "id code scope createdAt street")
    for tenant in (alpha, beta):  # different breadths, same statement count
        token = api.token(tenant, ["city_admin"])
        with api.count_statements() as statements:
            await api.gql(resolved, token=token)
        business = [s for s in statements if not s.startswith("SET LOCAL")]
        assert len(statements) - len(business) == 1  # the context, once per transaction
        assert len(business) == 4, business


@pytest.mark.parametrize("extra", ["", " createdAt"], ids=["compiled", "resolvers"])
async def test_an_empty_page_still_knows_its_totals(api: Api, alpha: TenantInfo, extra: str) -> None:
    token = api.token(alpha, ["city_admin"])
    page = f"""query($first: Int!, $after: String) {{ stations(first: $first, after: $after) {{ totalCount
        pageInfo {{ hasNextPage hasPreviousPage startCursor }} edges {{ node {{ code{extra} }} }} }} }}"""
    none = (await api.gql(page, {"first": 0}, token=token))["stations"]
    assert none["totalCount"] == 18 and none["edges"] == []
    assert none["pageInfo"] == {"hasNextPage": True, "hasPreviousPage": False, "startCursor": None}
    past_the_end = base64.urlsafe_b64encode(b"after:ZZZZ").decode()
    beyond = (await api.gql(page, {"first": 5, "after": past_the_end}, token=token))["stations"]
    assert beyond["totalCount"] == 18 and beyond["edges"] == []
    assert beyond["pageInfo"] == {"hasNextPage": False, "hasPreviousPage": True, "startCursor": None}
