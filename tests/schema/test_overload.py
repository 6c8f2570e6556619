"""Under load, fail fast: when a pool checkout, a statement or a lock wait runs out of time, the API answers
503 with Retry-After in its endpoint's shape, within the bound, and commits nothing.

Every case is forced for real: another connection holds a row, table or advisory lock, or the test checks out
every connection of a tiny pool."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from xml.etree import ElementTree

import httpx
import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from schema.app import create_app
from schema.overload import MESSAGE, RETRY_AFTER_SECONDS
from tenants.db import Database
from tests.helpers import Api, TenantInfo

RENAME = (
    "mutation($input: RenameNodeInput!) { renameNode(input: $input) { __typename "
    "... on Error { code message } ... on NodePayload { node { name } } } }"
)
# The bounds of these tests, in seconds: short, so a wait that is not bounded shows at once.
BOUND = 0.4
# A 503 must come well before the lock holder lets go (it never does while the request runs).
WITHIN = 3.0
ADVISORY_KEY = 4_240_917


@asynccontextmanager
async def bounded_api(
    api: Api,
    *,
    pool_timeout: float = BOUND,
    statement_timeout: float | None = None,
    lock_timeout: float | None = None,
    production: bool = False,
) -> AsyncIterator[Api]:
    """The real app over a pool of one connection (and one overflow) with the given bounds."""
    from schema.context import ApiConfig

    database = Database(
        str(api.config.database.engine.url.render_as_string(hide_password=False)),
        pool_size=1,
        pool_timeout=pool_timeout,
        statement_timeout=statement_timeout,
        lock_timeout=lock_timeout,
    )
    config = ApiConfig(
        database=database, tokens=api.config.tokens, production=production, introspection=not production
    )
    transport = httpx.ASGITransport(app=create_app(config))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bounded") as client:
            yield Api(client, config)
    finally:
        await database.dispose()


@contextmanager
def holding(owner_dsn: str, *statements: str, params: tuple[Any, ...] = ()) -> Iterator[None]:
    """Another connection runs `statements` in a transaction and keeps its locks until the block ends."""
    with psycopg.connect(owner_dsn) as connection:
        for statement in statements:
            connection.execute(statement, params if "%s" in statement else ())
        try:
            yield
        finally:
            connection.rollback()


@asynccontextmanager
async def pool_exhausted(database: Database) -> AsyncIterator[None]:
    """Check out every connection the pool may open (pool_size 1 + 1 overflow) and keep them busy."""
    held: list[AsyncConnection] = []
    try:
        for _ in range(2):
            connection = await database.engine.connect()
            held.append(connection)
        yield
    finally:
        for connection in held:
            await connection.close()


def assert_graphql_503(response: httpx.Response, began: float) -> None:
    assert time.monotonic() - began < WITHIN, "the wait was not bounded"
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"errors": [{"message": MESSAGE, "extensions": {"code": "UNAVAILABLE"}}]}


async def first_district(api: Api, token: str) -> dict[str, Any]:
    data = await api.gql("{ districts(first: 1) { edges { node { id name } } } }", token=token)
    node: dict[str, Any] = data["districts"]["edges"][0]["node"]
    return node


def district_key(global_id: str) -> int:
    from schema.relay import decode_id

    return int(decode_id(global_id)[1])


async def test_lock_timeout_in_a_resolver_is_503_and_commits_nothing(
    api: Api, alpha: TenantInfo, owner_dsn: str
) -> None:
    token = api.token(alpha, ["city_admin"])
    district = await first_district(api, token)
    lock_row = "SELECT 1 FROM districts WHERE tenant_id = %s AND id = %s FOR UPDATE"
    rename = {"input": {"id": district["id"], "name": "锁等待区"}}
    async with bounded_api(api, lock_timeout=BOUND) as bounded:
        with holding(owner_dsn, lock_row, params=(alpha.tenant_id, district_key(district["id"]))):
            began = time.monotonic()
            response = await bounded.post(RENAME, rename, token=token)
            assert_graphql_503(response, began)
        # Nothing of the refused mutation was kept, and once the lock is gone the same call works.
        assert (await first_district(api, token))["name"] == district["name"]
        done = await bounded.gql(RENAME, {"input": {"id": district["id"], "name": district["name"]}}, token)
        assert done["renameNode"]["node"]["name"] == district["name"]


async def test_statement_timeout_on_a_read_is_503(api: Api, alpha: TenantInfo, owner_dsn: str) -> None:
    token = api.token(alpha, ["city_admin"])
    query = "{ districts(first: 3) { totalCount edges { node { name } } } }"
    # lock_timeout 0 is "no limit": the statement timeout is what cancels the waiting query.
    async with bounded_api(api, statement_timeout=BOUND, lock_timeout=0) as bounded:
        await bounded.gql("{ me { tenant } }", token=token)  # the tenant is resolved before the lock
        with holding(owner_dsn, "LOCK TABLE districts IN ACCESS EXCLUSIVE MODE"):
            began = time.monotonic()
            response = await bounded.post(query, token=token)
            assert_graphql_503(response, began)
        assert (await bounded.gql(query, token=token))["districts"]["totalCount"] >= 3


async def test_lock_timeout_in_the_commit_is_503(api: Api, alpha: TenantInfo, owner_dsn: str) -> None:
    """A deferred constraint trigger runs at COMMIT and waits for an advisory lock another session holds:
    the lock timeout fires in the view's commit, outside GraphQL's execution."""
    token = api.token(alpha, ["city_admin"])
    district = await first_district(api, token)
    with psycopg.connect(owner_dsn, autocommit=True) as owner:
        owner.execute(
            "CREATE FUNCTION test_overload_wait() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_advisory_xact_lock({ADVISORY_KEY}); RETURN NULL; END $$"
        )
        owner.execute("GRANT EXECUTE ON FUNCTION test_overload_wait() TO PUBLIC")
        owner.execute(
            "CREATE CONSTRAINT TRIGGER test_overload_at_commit AFTER UPDATE ON districts "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_overload_wait()"
        )
        try:
            async with bounded_api(api, lock_timeout=BOUND) as bounded:
                with holding(owner_dsn, f"SELECT pg_advisory_lock({ADVISORY_KEY})"):
                    began = time.monotonic()
                    response = await bounded.post(
                        RENAME, {"input": {"id": district["id"], "name": "提交时等待"}}, token=token
                    )
                    assert_graphql_503(response, began)
        finally:
            owner.execute("DROP TRIGGER test_overload_at_commit ON districts")
            owner.execute("DROP FUNCTION test_overload_wait()")
    assert (await first_district(api, token))["name"] == district["name"]


async def test_pool_checkout_timeout_in_a_resolver_is_503(api: Api, alpha: TenantInfo) -> None:
    token = api.token(alpha, ["city_admin"])
    async with bounded_api(api) as bounded:
        assert (await bounded.gql("{ me { tenant } }", token=token))["me"]["tenant"] == "alpha"
        async with pool_exhausted(bounded.config.database):
            began = time.monotonic()
            response = await bounded.post("{ city { name } }", token=token)
            assert_graphql_503(response, began)
        assert (await bounded.gql("{ city { name } }", token=token))["city"]["name"]


async def test_pool_checkout_timeout_while_authenticating_is_503(api: Api, alpha: TenantInfo) -> None:
    """A fresh process resolves the token's tenant first: that checkout times out before GraphQL runs."""
    token = api.token(alpha, ["city_admin"])
    async with bounded_api(api) as bounded, pool_exhausted(bounded.config.database):
        began = time.monotonic()
        response = await bounded.post("{ city { name } }", token=token)
        assert_graphql_503(response, began)
        # Asking for graphql-response+json gets the 503 in that media type.
        accept = {"Accept": "application/graphql-response+json"}
        again = await bounded.post("{ city { name } }", token=token, headers=accept)
        assert again.status_code == 503
        assert again.headers["content-type"].startswith("application/graphql-response+json")


async def test_production_masks_nothing_it_needs_to_say(api: Api, alpha: TenantInfo, owner_dsn: str) -> None:
    token = api.token(alpha, ["city_admin"])
    district = await first_district(api, token)
    lock_row = "SELECT 1 FROM districts WHERE tenant_id = %s AND id = %s FOR UPDATE"
    async with bounded_api(api, lock_timeout=BOUND, production=True) as bounded:
        with holding(owner_dsn, lock_row, params=(alpha.tenant_id, district_key(district["id"]))):
            began = time.monotonic()
            response = await bounded.post(RENAME, {"input": {"id": district["id"], "name": "x"}}, token=token)
            assert_graphql_503(response, began)
            assert "districts" not in response.text and "lock" not in response.text.lower()


async def test_open311_answers_503_in_its_error_shape(api: Api, alpha: TenantInfo, owner_dsn: str) -> None:
    params = {"jurisdiction_id": "alpha"}
    async with bounded_api(api, statement_timeout=BOUND, lock_timeout=0) as bounded:
        ok = await bounded.client.get("/open311/v2/services.json", params=params)
        assert ok.status_code == 200, ok.text
        with holding(owner_dsn, "LOCK TABLE request_categories IN ACCESS EXCLUSIVE MODE"):
            began = time.monotonic()
            response = await bounded.client.get("/open311/v2/services.json", params=params)
        assert time.monotonic() - began < WITHIN
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
        assert response.json() == [{"code": 503, "description": MESSAGE}]

        async with pool_exhausted(bounded.config.database):
            xml = await bounded.client.get("/open311/v2/services.xml", params=params)
        assert xml.status_code == 503, xml.text
        assert xml.headers["content-type"].startswith("text/xml")
        error = ElementTree.fromstring(xml.text).find("error")
        assert error is not None and error.findtext("code") == "503"
        assert error.findtext("description") == MESSAGE


async def test_tiles_answer_a_plain_503(api: Api, alpha: TenantInfo) -> None:
    headers = {"Authorization": f"Bearer {api.token(alpha, ['city_admin'])}"}
    async with bounded_api(api) as bounded:
        assert (await bounded.client.get("/tiles/districts/0/0/0.mvt", headers=headers)).status_code == 200
        async with pool_exhausted(bounded.config.database):
            began = time.monotonic()
            response = await bounded.client.get("/tiles/districts/0/0/0.mvt", headers=headers)
        assert time.monotonic() - began < WITHIN
        assert response.status_code == 503
        assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text == MESSAGE


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("{ nope }", 200, "Cannot query field 'nope'"),
        ("{ districts(first: -1) { totalCount } }", 200, "first must be between"),
    ],
)
async def test_other_failures_keep_their_answers(
    api: Api, alpha: TenantInfo, query: str, status: int, says: str
) -> None:
    async with bounded_api(api, statement_timeout=BOUND, lock_timeout=BOUND) as bounded:
        response = await bounded.post(query, token=api.token(alpha, ["city_admin"]))
    assert response.status_code == status
    assert says in response.text
    assert "retry-after" not in response.headers


async def test_a_full_process_refuses_before_doing_any_work(
    api: Api, alpha: TenantInfo, owner_dsn: str
) -> None:
    """A pool of 1 + 1 admits two requests at once; here both wait for a row lock (no lock timeout), and a
    third request, even one that needs no database, waits its turn up to the pool timeout, then gets the
    503. The liveness probe still answers. Once the lock goes, the two admitted requests complete."""
    import asyncio

    token = api.token(alpha, ["city_admin"])
    district = await first_district(api, token)
    lock_row = "SELECT 1 FROM districts WHERE tenant_id = %s AND id = %s FOR UPDATE"
    names = ["排队一区", "排队二区"]
    async with bounded_api(api) as bounded:
        assert bounded.config.database.max_connections == 2
        await bounded.gql("{ me { tenant } }", token=token)
        with holding(owner_dsn, lock_row, params=(alpha.tenant_id, district_key(district["id"]))):
            renames = [{"input": {"id": district["id"], "name": name}} for name in names]
            admitted = [asyncio.create_task(bounded.post(RENAME, rename, token)) for rename in renames]
            await asyncio.sleep(0.3)  # both are in, waiting for the lock
            assert not any(task.done() for task in admitted)
            began = time.monotonic()
            refused = await bounded.post("{ __typename }", token=token)
            assert_graphql_503(refused, began)
            assert time.monotonic() - began >= BOUND * 0.9  # it waited its turn first
            assert (await bounded.client.get("/healthz")).status_code == 200
        done = await asyncio.gather(*admitted)
        for response, name in zip(done, names, strict=True):
            assert response.status_code == 200, response.text
            assert response.json()["data"]["renameNode"]["node"]["name"] == name
        back = await bounded.gql(RENAME, {"input": {"id": district["id"], "name": district["name"]}}, token)
        assert back["renameNode"]["node"]["name"] == district["name"]
