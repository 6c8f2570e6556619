"""Production mode: unexpected failures are masked, GraphiQL and introspection are off."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from schema.app import create_app
from schema.context import ApiConfig
from tenants.db import Database
from tests.helpers import Api, TenantInfo


async def client_for(config: ApiConfig) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=create_app(config))
    async with httpx.AsyncClient(transport=transport, base_url="http://production") as client:
        yield Api(client, config)


@pytest.fixture
async def production(api: Api) -> AsyncIterator[Api]:
    config = ApiConfig(
        database=api.config.database, tokens=api.config.tokens, production=True, introspection=False
    )
    async for client in client_for(config):
        yield client


@pytest.fixture
async def unreachable_database(api: Api, alpha: TenantInfo) -> AsyncIterator[Api]:
    """Production mode whose queries go to a port where nothing listens: a real, unexpected failure."""
    unreachable = Database("postgresql://liaison_app:secret@127.0.0.1:9/liaison", pool_size=1)
    # Tokens are still checked against the real tenant directory; only the request's queries fail.
    config = ApiConfig(
        database=unreachable, tokens=api.config.tokens, production=True, directory=api.config.directory
    )
    async for client in client_for(config):
        yield client
    await unreachable.dispose()


async def test_introspection_and_graphiql_are_off(production: Api, alpha: TenantInfo) -> None:
    token = production.token(alpha, ["city_admin"])
    response = await production.post("{ __schema { types { name } } }", token=token)
    assert "introspection has been disabled" in response.text
    page = await production.client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 404
    assert (await production.gql("{ me { tenant } }", token=token)) == {"me": {"tenant": "alpha"}}


async def test_unexpected_failures_are_masked(unreachable_database: Api, alpha: TenantInfo) -> None:
    token = unreachable_database.token(alpha, ["city_admin"])
    response = await unreachable_database.post("{ city { name } }", token=token)
    assert response.json()["errors"][0]["message"] == "Unexpected error."
    assert "127.0.0.1" not in response.text and "secret" not in response.text
    # Errors raised on purpose keep their message.
    bad = await unreachable_database.post("{ districts(first: -1) { totalCount } }", token=token)
    assert "first must be between" in bad.text
