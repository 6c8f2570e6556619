"""The one way to tenant data: a transaction whose tenant context is set with SET LOCAL.

The application connects as a role that is neither superuser, table owner nor BYPASSRLS, so the
row-level security policies see only what the context allows; an unset context sees nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from tenants.context import TenantContext


def async_url(url: str) -> str:
    """Accept postgresql:// URLs and use the psycopg 3 driver for them."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError("database URL must start with postgresql://")


class Database:
    """Engine plus tenant-scoped sessions for the application role."""

    def __init__(
        self,
        url: str,
        *,
        tenant_role: str | None = "liaison_tenant",
        pool_size: int = 10,
        **engine_options: Any,
    ) -> None:
        # The role a whole-tenant transaction switches to (None: stay the app role, scope tests and all).
        self.tenant_role = tenant_role
        self.engine: AsyncEngine = create_async_engine(
            async_url(url), pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, **engine_options
        )
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)

    @asynccontextmanager
    async def scoped(self, context: TenantContext) -> AsyncIterator[AsyncSession]:
        """One transaction under `context`: commits when the block ends, rolls back on an exception."""
        async with self._sessions() as session, session.begin():
            await self.apply(session, context)
            yield session

    def open(self) -> AsyncSession:
        """A session whose transaction the caller drives; call apply() right after begin."""
        return self._sessions()

    async def tenant_id_for(self, code: str) -> int | None:
        """Resolve a tenant code before any context exists (a SECURITY DEFINER function, see migrations)."""
        async with self.engine.connect() as connection:
            found = await connection.scalar(text("SELECT liaison_tenant_id(:code)"), {"code": code})
            return int(found) if found is not None else None

    async def tenant_codes(self) -> list[str]:
        async with self.engine.connect() as connection:
            return [str(row[0]) for row in await connection.execute(text("SELECT liaison_tenant_codes()"))]

    async def apply(self, session: AsyncSession, context: TenantContext) -> None:
        """Set the transaction's tenant context (the first statement of every transaction)."""
        connection = await session.connection()
        await connection.exec_driver_sql(context.set_local_statement(self.tenant_role))

    async def dispose(self) -> None:
        await self.engine.dispose()
