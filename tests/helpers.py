from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import httpx
from sqlalchemy import event

from schema.context import ApiConfig
from tenants.context import city_scope

T = TypeVar("T")
TEST_SECRET = "test-secret-for-hs256-tokens-only-in-tests-0123456789"


def process_env(database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    """The environment of a process a test starts (a worker, a command): the test database and broker,
    and nothing the shell exports about services (Celery reads CELERY_* itself, before its own settings)."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CELERY_") and key not in {"APP_DATABASE_URL", "DATABASE_URL"}
    }
    return {
        **inherited,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "LIAISON_JWT_SECRET": TEST_SECRET,
        **extra,
    }


@dataclass(frozen=True)
class TenantInfo:
    code: str
    tenant_id: int

    @property
    def scope(self) -> str:
        return city_scope(self.tenant_id)


class Api:
    def __init__(self, client: httpx.AsyncClient, config: ApiConfig) -> None:
        self.client = client
        self.config = config

    def token(
        self,
        tenant: TenantInfo | str,
        roles: list[str],
        scopes: list[str] | None = None,
        *,
        sub: str = "operator:test",
        ttl: timedelta = timedelta(minutes=10),
    ) -> str:
        code = tenant.code if isinstance(tenant, TenantInfo) else tenant
        default = [tenant.scope] if isinstance(tenant, TenantInfo) else ["c1"]
        return self.config.tokens.issue(sub=sub, tenant=code, scopes=scopes or default, roles=roles, ttl=ttl)

    async def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        all_headers = {**(headers or {})}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        return await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=all_headers
        )

    async def gql(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> Any:
        """Data of a query that must succeed."""
        response = await self.post(query, variables, token)
        assert response.status_code == 200, response.text
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    @contextmanager
    def count_statements(self) -> Iterator[list[str]]:
        statements: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        engine = self.config.database.engine.sync_engine
        event.listen(engine, "before_cursor_execute", record)
        try:
            yield statements
        finally:
            event.remove(engine, "before_cursor_execute", record)


async def wait_for(probe: Callable[[], Awaitable[T]], *, within: float = 30.0, interval: float = 0.2) -> T:
    """Poll until probe returns a truthy value (work done by another process)."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing happened within {within} s")
        await asyncio.sleep(interval)
