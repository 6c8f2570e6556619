"""The compiled fast path for hierarchy reads: exactly the answers of the normal execution, in one
statement, under the same row-level security; anything it does not support falls back unchanged."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from deploy.seed import seed_synthetic
from schema.hierarchy import compiled
from schema.relay import encode_cursor
from services.hierarchy import tree_sql
from tests.helpers import Api, TenantInfo

BUSINESS = "SELECT json_build_object("
LONG_CODE = "D001S001T003~?>~?>社区编码很长的代码名字测试"


class FastPath:
    """Switches the fast path; monkeypatch puts it back after the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch

    def enable(self, enabled: bool) -> None:
        self._monkeypatch.setattr(compiled, "ENABLED", enabled)


@pytest.fixture
def fast_path(monkeypatch: pytest.MonkeyPatch) -> FastPath:
    return FastPath(monkeypatch)


@dataclass(frozen=True)
class Tokens:
    by_name: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.by_name[name]


@pytest.fixture(scope="module")
async def kappa(api: Api, owner_dsn: str) -> TenantInfo:
    """A tenant of this module's own, with names full of LIKE wildcards and retired nodes."""
    result = await seed_synthetic(api.config.database, "kappa", districts=3, streets=2, stations=3, seed=11)
    tenant_id = result.tenant_id
    names = {
        ("streets", "D001S001"): "50%_off\\街",
        ("stations", "D001S001T001"): "百分之百%社区",
        ("stations", "D001S001T002"): "under_score社区",
        ("stations", "D001S001T003"): "back\\slash社区",
    }
    with psycopg.connect(owner_dsn) as conn:
        for (table, code), name in names.items():
            conn.execute(
                f"UPDATE {table} SET name = %s WHERE tenant_id = %s AND code = %s", (name, tenant_id, code)
            )
        # Its cursor has + and / in base64, and is longer than the 76 characters PostgreSQL wraps at.
        conn.execute(
            "UPDATE stations SET code = %s WHERE tenant_id = %s AND code = 'D001S001T003'",
            (LONG_CODE, tenant_id),
        )
        for table, code in [("stations", "D001S002T002"), ("streets", "D002S002"), ("districts", "D003")]:
            conn.execute(
                f"UPDATE {table} SET retired_at = now() WHERE tenant_id = %s AND code = %s", (tenant_id, code)
            )
    return TenantInfo("kappa", tenant_id)


def _scope(owner_dsn: str, table: str, tenant_id: int, offset: int = 0) -> str:
    with psycopg.connect(owner_dsn) as conn:
        row = conn.execute(
            f"SELECT scope::text FROM {table} WHERE tenant_id = %s ORDER BY code OFFSET %s LIMIT 1",
            (tenant_id, offset),
        ).fetchone()
    assert row is not None
    return str(row[0])


@pytest.fixture(scope="module")
async def callers(api: Api, alpha: TenantInfo, beta: TenantInfo, kappa: TenantInfo, owner_dsn: str) -> Tokens:
    for tenant in (alpha, beta, kappa):  # resolved once, so statement counts hold only the request's
        await api.config.directory.tenant_id(tenant.code)
    district = _scope(owner_dsn, "districts", alpha.tenant_id)
    other_station = _scope(owner_dsn, "stations", alpha.tenant_id, offset=7)  # in the second district
    return Tokens(
        {
            "admin": api.token(alpha, ["city_admin"]),
            "district": api.token(alpha, ["district_staff"], [district]),
            "street": api.token(alpha, ["street_staff"], [_scope(owner_dsn, "streets", alpha.tenant_id, 4)]),
            "station": api.token(
                alpha, ["station_liaison"], [_scope(owner_dsn, "stations", alpha.tenant_id)]
            ),
            "two_scopes": api.token(alpha, ["district_staff"], [district, other_station]),
            "beta": api.token(beta, ["city_admin"]),
            "kappa": api.token(kappa, ["city_admin"]),
        }
    )


async def both_ways(
    api: Api, fast_path: FastPath, send: Callable[[], Awaitable[httpx.Response]]
) -> tuple[httpx.Response, httpx.Response, list[str]]:
    """The answer with the fast path (and the statements it ran), then the reference answer."""
    with api.count_statements() as statements:
        fast = await send()
    fast_path.enable(False)
    try:
        reference = await send()
    finally:
        fast_path.enable(True)
    return fast, reference, list(statements)


def assert_same(fast: httpx.Response, reference: httpx.Response) -> None:
    assert fast.status_code == reference.status_code
    assert fast.headers["content-type"] == reference.headers["content-type"]
    if "json" in reference.headers["content-type"]:
        assert fast.json() == reference.json()
        assert json.dumps(fast.json()) == json.dumps(reference.json())  # keys in the same order too
    else:
        assert fast.text == reference.text


def assert_compiled(statements: list[str]) -> None:
    business = [s for s in statements if not s.startswith("SET LOCAL")]
    assert len(statements) - len(business) == 1
    assert len(business) == 1 and business[0].startswith(BUSINESS), business


NODE = "id code name scope __typename"
TREE = f"""{{ __typename city {{ {NODE} districts(first: 50) {{ __typename totalCount
  pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor __typename }}
  edges {{ __typename cursor node {{ {NODE} streets {{ totalCount edges {{ cursor node {{ {NODE}
    stations(first: 50) {{ totalCount pageInfo {{ hasNextPage endCursor }}
      edges {{ node {{ {NODE} street {{ code district {{ code city {{ code }} }} }} }} }} }}
  }} }} }} }} }} }} }} }}"""
DISTRICT_PAGE = """query($code: String!) { districts(code: $code, first: 1) { edges { node {
  id code name scope streets(first: 20) { totalCount edges { node { id code name scope
  stations(first: 10) { totalCount edges { node { id code name scope } } } } } } } } } }"""
PAGE = """query($first: Int!, $after: String) { stations(first: $first, after: $after) { totalCount
  pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { code } } } }"""
FILTERED = """query($name: String, $retired: Boolean!) {
  districts(nameContains: $name, includeRetired: $retired) { totalCount edges { node { code name } } }
  streets(first: 200, nameContains: $name, includeRetired: $retired) {
    totalCount edges { node { code name } } }
  stations(first: 200, nameContains: $name, includeRetired: $retired) {
    totalCount pageInfo { hasNextPage startCursor endCursor } edges { node { code name } } } }"""
FRAGMENTS = """query Fragments { ...Root city { ...CityFields ... on Node { id } } }
fragment Root on Query { __typename districts(first: 2) { ...Conn } }
fragment Conn on DistrictConnection {
  totalCount edges { node { ...Hier ... on District { city { code } } } } }
fragment Hier on HierarchyNode { code name ... on Node { id } }
fragment CityFields on City { code ... { name } districts(first: 1) { edges { node { code } } } }"""
ALIASES = """{ c: city { n: name k: code kind: __typename first: districts(first: 1) { tc: totalCount }
  second: districts(first: 2, code: "D003") { e: edges { n: node { c: code up: city { x: code } } } } }
  a: stations(first: 2) { edges { node { code } } } b: stations(first: 3, after: "YWZ0ZXI6RDAwMQ==") {
  p: pageInfo { s: startCursor e: endCursor prev: hasPreviousPage } } }"""
MERGED = """{ city { code code districts { edges { node { code } } } districts { totalCount
  edges { cursor node { name code } } } } districts { edges { node { streets(first: 1) { totalCount } } } }
  districts { edges { node { streets(first: 1) { edges { node { code } } } } } } }"""
UP_AND_DOWN = """{ stations(first: 4) { edges { node { code street { code district { code
  city { code districts(first: 1) { edges { node { code streets(first: 1) { edges { node { code
  district { name } } } } } } } } } } } } } }"""

# (name, token, query, variables)
CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("full tree, city admin", "admin", TREE, {}),
    ("full tree, district staff", "district", TREE, {}),
    ("full tree, street staff", "street", TREE, {}),
    ("full tree, station liaison", "station", TREE, {}),
    ("full tree, two scopes", "two_scopes", TREE, {}),
    ("full tree, another tenant", "beta", TREE, {}),
    ("full tree with retired nodes", "kappa", TREE, {}),
    ("district page", "admin", DISTRICT_PAGE, {"code": "D002"}),
    ("district page, no such district", "admin", DISTRICT_PAGE, {"code": "D999"}),
    ("district page of a sibling", "district", DISTRICT_PAGE, {"code": "D002"}),
    ("first page", "admin", PAGE, {"first": 7}),
    ("middle page", "admin", PAGE, {"first": 7, "after": encode_cursor("D001S003T002")}),
    ("after a code not in the list", "admin", PAGE, {"first": 5, "after": encode_cursor("D002")}),
    ("past the end", "admin", PAGE, {"first": 7, "after": encode_cursor("ZZZ")}),
    ("first: 0", "admin", PAGE, {"first": 0}),
    ("first: 0 after a cursor", "admin", PAGE, {"first": 0, "after": encode_cursor("D001")}),
    ("first: 200, station scope", "station", PAGE, {"first": 200}),
    ("names with %", "kappa", FILTERED, {"name": "%", "retired": False}),
    ("names with _", "kappa", FILTERED, {"name": "_", "retired": True}),
    ("names with a backslash", "kappa", FILTERED, {"name": "\\", "retired": False}),
    ("names with %_", "kappa", FILTERED, {"name": "%_o", "retired": False}),
    ("an empty name filter", "kappa", FILTERED, {"name": "", "retired": False}),
    ("a name filter on CJK", "kappa", FILTERED, {"name": "社区", "retired": False}),
    ("include retired", "kappa", FILTERED, {"name": None, "retired": True}),
    ("after a long cursor", "kappa", PAGE, {"first": 2, "after": encode_cursor(LONG_CODE)}),
    ("exclude retired", "kappa", FILTERED, {"name": None, "retired": False}),
    (
        "code filters",
        "admin",
        '{ districts(code: "D002") { totalCount edges { node { code '
        'streets(code: "D002S003") { totalCount edges { node { code } } } } } } '
        'streets(code: "") { totalCount } stations(code: "D001S001T002") { edges { node { code } } } }',
        {},
    ),
    (
        "a retired node by code",
        "kappa",
        '{ districts(code: "D003") { totalCount } '
        'all: districts(code: "D003", includeRetired: true) { totalCount edges { node { code } } } }',
        {},
    ),
    ("fragments", "admin", FRAGMENTS, {}),
    ("aliases", "admin", ALIASES, {}),
    ("merged fields", "admin", MERGED, {}),
    ("parents up and down", "admin", UP_AND_DOWN, {}),
    ("parents up and down, station scope", "station", UP_AND_DOWN, {}),
    (
        "flat lists, district staff",
        "district",
        "{ districts { totalCount } streets(first: 200) { totalCount edges { node { scope } } } "
        "stations(first: 3) { pageInfo { hasNextPage } edges { node { code } } } }",
        {},
    ),
    (
        "only __typename",
        "admin",
        "{ __typename city { __typename } districts { __typename "
        "pageInfo { __typename } edges { __typename node { __typename } } } }",
        {},
    ),
    (
        "empty connections",
        "admin",
        '{ stations(nameContains: "nothing like this") { totalCount '
        "pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor } } }",
        {},
    ),
    (
        "variable defaults",
        "admin",
        "query($n: Int = 2, $m: Int) { a: stations(first: $n) { edges { node { code } } } "
        "b: districts(first: $m) { edges { node { code } } } }",
        {},
    ),
    ("an explicit null after", "admin", PAGE, {"first": 3, "after": None}),
]


@pytest.mark.parametrize(
    ("token", "query", "variables"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
async def test_the_fast_path_answers_exactly_as_the_normal_execution(
    api: Api, fast_path: FastPath, callers: Tokens, token: str, query: str, variables: dict[str, Any]
) -> None:
    fast, reference, statements = await both_ways(
        api, fast_path, lambda: api.post(query, variables, token=callers[token])
    )
    assert reference.status_code == 200 and not reference.json().get("errors"), reference.text
    assert_same(fast, reference)
    assert_compiled(statements)


async def test_get_operation_name_and_graphql_response_json(
    api: Api, fast_path: FastPath, callers: Tokens
) -> None:
    auth = {"Authorization": f"Bearer {callers['admin']}"}
    two = "query A { city { code } } query B($first: Int!) { stations(first: $first) { totalCount } }"
    sends = [
        lambda: api.client.get(
            "/graphql", params={"query": PAGE, "variables": json.dumps({"first": 2})}, headers=auth
        ),
        lambda: api.client.post(
            "/graphql", json={"query": two, "operationName": "B", "variables": {"first": 1}}, headers=auth
        ),
        lambda: api.client.post(
            "/graphql",
            json={"query": TREE},
            headers={**auth, "Accept": "application/graphql-response+json"},
        ),
    ]
    for send in sends:
        fast, reference, statements = await both_ways(api, fast_path, send)
        assert reference.status_code == 200 and not reference.json().get("errors"), reference.text
        assert_same(fast, reference)
        assert_compiled(statements)


DEEP = (
    "{ stations { edges { node { "
    + "street { district { streets { edges { node { stations { edges { node { " * 2
    + "code"
    + " } } } } } } } }" * 2
    + " } } } }"
)
MANY_ALIASES = "{ " + " ".join(f"a{i}: city {{ code }}" for i in range(31)) + " }"
FALLBACKS: list[tuple[str, str | None, Any]] = [
    ("me", "admin", "{ me { sub } }"),
    ("node", "admin", '{ node(id: "RGlzdHJpY3Q6MQ") { id } }'),
    ("a root field among supported ones", "admin", "{ city { code } me { sub } }"),
    ("createdAt", "admin", "{ districts { edges { node { code createdAt } } } }"),
    ("retiredAt", "kappa", "{ districts(includeRetired: true) { edges { node { retiredAt } } } }"),
    ("@include", "admin", "{ city { code @include(if: true) } }"),
    ("@skip on a fragment", "admin", "{ city { ... on City @skip(if: false) { code } } }"),
    ("first: 201", "admin", "{ districts(first: 201) { totalCount } }"),
    ("first: -1", "admin", "{ city { districts(first: -1) { totalCount } } }"),
    ("a bad cursor", "admin", '{ districts(after: "bm9wZQ==") { totalCount } }'),
    ("an empty cursor", "admin", '{ districts(after: "") { totalCount } }'),
    ("an unknown field", "admin", "{ city { population } }"),
    ("a syntax error", "admin", "{ city { code }"),
    ("an undefined variable", "admin", "{ districts(first: $n) { totalCount } }"),
    ("a missing variable", "admin", "query($code: String!) { districts(code: $code) { totalCount } }"),
    ("too deep", "admin", DEEP),
    ("too many aliases", "admin", MANY_ALIASES),
    ("introspection", "admin", "{ __schema { queryType { name } } }"),
    ("a mutation", "admin", 'mutation { retireNode(input: {id: "x"}) { __typename } }'),
    ("no token", None, "{ city { code } }"),
]


@pytest.mark.parametrize(("token", "query"), [case[1:] for case in FALLBACKS], ids=[c[0] for c in FALLBACKS])
async def test_unsupported_queries_fall_back_and_answer_as_before(
    api: Api, fast_path: FastPath, callers: Tokens, token: str | None, query: str
) -> None:
    fast, reference, statements = await both_ways(
        api, fast_path, lambda: api.post(query, token=callers[token] if token else None)
    )
    assert_same(fast, reference)
    assert not any(statement.startswith(BUSINESS) for statement in statements)


async def test_wrong_variables_and_bodies_fall_back(api: Api, fast_path: FastPath, callers: Tokens) -> None:
    auth = {"Authorization": f"Bearer {callers['admin']}"}
    sends = [
        lambda: api.post(PAGE, {"first": "7"}, token=callers["admin"]),
        lambda: api.post(PAGE, {"first": 7, "after": None, "extra": 1}, token=callers["admin"]),
        lambda: api.post(DISTRICT_PAGE, {"code": None}, token=callers["admin"]),
        lambda: api.client.post(
            "/graphql", content=b"{not json", headers={**auth, "Content-Type": "application/json"}
        ),
        lambda: api.client.post("/graphql", json=[{"query": "{ city { code } }"}], headers=auth),
        lambda: api.client.post(
            "/graphql", json={"query": "{ city { code } }", "extensions": 0}, headers=auth
        ),
        lambda: api.client.post(
            "/graphql", json={"query": "{ city { code } }", "variables": []}, headers=auth
        ),
        lambda: api.client.post(
            "/graphql", json={"query": "query A { city { code } } query B { city { name } }"}, headers=auth
        ),
        lambda: api.client.get(
            "/graphql", params={"query": "{ city { code } }", "variables": "{"}, headers=auth
        ),
    ]
    for send in sends:
        fast, reference, statements = await both_ways(api, fast_path, send)
        assert_same(fast, reference)
        assert not any(statement.startswith(BUSINESS) for statement in statements)


@pytest.mark.parametrize("name", ["a\x00b", "\ud800"], ids=["NUL", "lone surrogate"])
async def test_values_the_database_refuses_answer_as_before(
    api: Api, fast_path: FastPath, callers: Tokens, name: str
) -> None:
    body = json.dumps({"query": FILTERED, "variables": {"name": name, "retired": False}})
    headers = {"Authorization": f"Bearer {callers['kappa']}", "Content-Type": "application/json"}
    fast, reference, _ = await both_ways(
        api, fast_path, lambda: api.client.post("/graphql", content=body, headers=headers)
    )
    assert reference.json()["errors"]
    assert_same(fast, reference)


async def test_a_failing_statement_falls_back(
    api: Api, fast_path: FastPath, callers: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the fast path build a statement PostgreSQL refuses, the client still gets its answer."""
    read_json = tree_sql.read_json

    async def refused(session: AsyncSession, statement: tree_sql.TreeStatement, tenant_id: int) -> str:
        return await read_json(session, tree_sql.TreeStatement("SELECT no_such_column", {}), tenant_id)

    monkeypatch.setattr(tree_sql, "read_json", refused)
    fast, reference, statements = await both_ways(
        api, fast_path, lambda: api.post(TREE, token=callers["admin"])
    )
    assert reference.status_code == 200 and not reference.json().get("errors"), reference.text
    assert_same(fast, reference)
    assert "SELECT no_such_column" in statements


async def test_the_full_tree_is_one_statement(api: Api, callers: Tokens) -> None:
    with api.count_statements() as statements:
        data = await api.gql(TREE, token=callers["admin"])
    assert_compiled(statements)
    assert data["city"]["districts"]["totalCount"] == 3


async def test_the_normal_path_still_costs_one_statement_per_level(api: Api, callers: Tokens) -> None:
    """What falls back (createdAt here) is still batched: city, districts, streets, stations, parents."""
    query = TREE.replace("street { code", "createdAt street { code")
    for name in ("admin", "beta"):
        with api.count_statements() as statements:
            await api.gql(query, token=callers[name])
        business = [s for s in statements if not s.startswith("SET LOCAL")]
        assert len(statements) - len(business) == 1
        assert len(business) == 4, business


async def test_a_district_user_never_sees_a_sibling_through_the_fast_path(
    api: Api, alpha: TenantInfo, owner_dsn: str
) -> None:
    own = _scope(owner_dsn, "districts", alpha.tenant_id)
    sibling = _scope(owner_dsn, "districts", alpha.tenant_id, offset=1)
    token = api.token(alpha, ["district_staff"], [own])
    query = """{ city { districts { totalCount edges { node { scope } } } }
      sibling: districts(code: "D002") { totalCount edges { node { scope } } }
      streets(first: 200) { totalCount edges { node { scope district { scope } } } }
      stations(first: 200) { totalCount edges { node { scope } } } }"""
    with api.count_statements() as statements:
        response = await api.post(query, token=token)
    assert_compiled(statements)
    assert sibling not in response.text
    data = response.json()["data"]
    assert [edge["node"]["scope"] for edge in data["city"]["districts"]["edges"]] == [own]
    assert data["sibling"] == {"totalCount": 0, "edges": []}
    assert (data["streets"]["totalCount"], data["stations"]["totalCount"]) == (3, 6)
    scopes = [edge["node"]["scope"] for edge in data["streets"]["edges"] + data["stations"]["edges"]]
    assert all(scope.startswith(own + ".") for scope in scopes)


async def test_one_tenant_never_sees_another(
    api: Api, callers: Tokens, alpha: TenantInfo, beta: TenantInfo
) -> None:
    for name, tenant, other in [("admin", alpha, beta), ("beta", beta, alpha)]:
        with api.count_statements() as statements:
            response = await api.post(TREE + " ", token=callers[name])
        assert_compiled(statements)
        assert f'"{other.scope}.' not in response.text and f'"{other.scope}"' not in response.text
        city = response.json()["data"]["city"]
        assert (city["code"], city["scope"]) == (tenant.code, tenant.scope)
        flat = await api.gql("{ stations(first: 200) { edges { node { scope } } } }", token=callers[name])
        assert all(e["node"]["scope"].startswith(tenant.scope + ".") for e in flat["stations"]["edges"])
