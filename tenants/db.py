"""The one way to tenant data: a transaction whose tenant context is set with SET LOCAL.

The application connects as a role that is neither superuser, table owner nor BYPASSRLS, so the
row-level security policies see only what the context allows; an unset context sees nothing.

Waiting is bounded when the caller asks for it: a pool checkout timeout, and a statement and a lock timeout
sent to PostgreSQL with every connection. When one fires the failure is an overload (`is_overload`), and
`watch_overload()` collects every such failure raised in the current task and the tasks it starts, even
those some code caught afterwards (GraphQL puts resolver exceptions in `errors`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry

from tenants.context import TenantContext

# SQLSTATEs that mean "too busy now, try again": query_canceled (statement_timeout), lock_not_available
# (lock_timeout), too_many_connections (the server's max_connections).
OVERLOAD_SQLSTATES = frozenset({"57014", "55P03", "53300"})

NO_LIMIT = 365 * 24 * 3600.0  # a pool timeout that never fires

_overloads: ContextVar[list[BaseException] | None] = ContextVar("liaison_overloads", default=None)


def is_overload(error: BaseException) -> bool:
    """A pool checkout timeout, a statement or lock timeout, or a server out of connections, however
    wrapped (SQLAlchemy's DBAPIError keeps the driver's error in `orig`; chains and groups are followed)."""
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, PoolTimeout) or getattr(current, "sqlstate", None) in OVERLOAD_SQLSTATES:
            return True
        nested = [getattr(current, "orig", None), current.__cause__, current.__context__]
        if isinstance(current, BaseExceptionGroup):
            nested.extend(current.exceptions)
        pending.extend(item for item in nested if isinstance(item, BaseException))
    return False


@contextmanager
def watch_overload() -> Iterator[list[BaseException]]:
    """Collect the overload failures raised while the block runs, in this task and the tasks it starts."""
    seen: list[BaseException] = []
    token = _overloads.set(seen)
    try:
        yield seen
    finally:
        _overloads.reset(token)


def _note(error: BaseException) -> None:
    seen = _overloads.get()
    if seen is not None and is_overload(error):
        seen.append(error)


def _note_statement_error(context: ExceptionContext) -> None:
    _note(context.sqlalchemy_exception or context.original_exception)


class _WatchedPool(AsyncAdaptedQueuePool):
    """The async queue pool; a checkout that times out is noted for watch_overload()."""

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except PoolTimeout as error:
            _note(error)
            raise


def _milliseconds(seconds: float | None) -> int:
    if seconds is None or seconds <= 0:
        return 0  # PostgreSQL's "no limit"
    return max(1, round(seconds * 1000))


def _server_options(url: str, statement_timeout: float | None, lock_timeout: float | None) -> str | None:
    """libpq `options` for the bounds, after any the URL already carries."""
    if statement_timeout is None and lock_timeout is None:
        return None
    existing = make_url(url).query.get("options")
    parts = [existing] if isinstance(existing, str) and existing else []
    if statement_timeout is not None:
        parts.append(f"-c statement_timeout={_milliseconds(statement_timeout)}")
    if lock_timeout is not None:
        parts.append(f"-c lock_timeout={_milliseconds(lock_timeout)}")
    return " ".join(parts)


def async_url(url: str) -> str:
    """Accept postgresql:// URLs and use the psycopg 3 driver for them."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError("database URL must start with postgresql://")


class Database:
    """Engine plus tenant-scoped sessions for the application role.

    `pool_timeout`: seconds a checkout waits for a connection when all `2 * pool_size` are busy (0: no limit).
    `statement_timeout` / `lock_timeout`: seconds PostgreSQL lets one statement run / wait for one lock
    (None leaves the server's setting, 0 is no limit). Each raises an error `is_overload` recognises.
    """

    def __init__(
        self,
        url: str,
        *,
        tenant_role: str | None = "liaison_tenant",
        pool_size: int = 10,
        pool_timeout: float = 30.0,
        statement_timeout: float | None = None,
        lock_timeout: float | None = None,
        **engine_options: Any,
    ) -> None:
        # The role a whole-tenant transaction switches to (None: stay the app role, scope tests and all).
        self.tenant_role = tenant_role
        self.pool_size = pool_size
        self.pool_timeout = pool_timeout
        self.statement_timeout = statement_timeout
        self.lock_timeout = lock_timeout
        options = _server_options(url, statement_timeout, lock_timeout)
        if options is not None:
            engine_options["connect_args"] = {**engine_options.get("connect_args", {}), "options": options}
        self.engine: AsyncEngine = create_async_engine(
            async_url(url),
            poolclass=_WatchedPool,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=pool_timeout if pool_timeout > 0 else NO_LIMIT,
            pool_pre_ping=True,
            **engine_options,
        )
        event.listen(self.engine.sync_engine, "handle_error", _note_statement_error)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)

    @property
    def max_connections(self) -> int:
        """The most connections the pool opens at once: the pool and as many again as overflow."""
        return 2 * self.pool_size

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
