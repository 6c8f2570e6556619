"""The transaction boundary used by requests, tasks and commands: one tenant-scoped transaction, then the
outbox messages it wrote are published once it has committed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from services.outbox.service import PENDING_KEY, Publisher, celery_publisher, publish_committed, take_pending
from tenants.context import TenantContext
from tenants.db import Database


class UnitOfWork:
    def __init__(
        self, database: Database, context: TenantContext, publisher: Publisher = celery_publisher
    ) -> None:
        self.database = database
        self.context = context
        self.publisher = publisher
        self._session: AsyncSession | None = None

    async def session(self) -> AsyncSession:
        """The transaction's session, opened on first use so requests that touch no data cost nothing."""
        if self._session is None:
            session = self.database.open()
            await session.begin()
            await self.database.apply(session, self.context)
            self._session = session
        return self._session

    async def commit(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        try:
            await session.commit()
            pending = take_pending(session)
        finally:
            await session.close()
        if pending:
            await publish_committed(self.database, self.context, pending, self.publisher)

    async def rollback(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            take_pending(session)
            await session.rollback()
            await session.close()


@asynccontextmanager
async def unit_of_work(database: Database, context: TenantContext) -> AsyncIterator[AsyncSession]:
    work = UnitOfWork(database, context)
    try:
        yield await work.session()
    except BaseException:
        await work.rollback()
        raise
    await work.commit()


@asynccontextmanager
async def atomic(session: AsyncSession) -> AsyncIterator[None]:
    """A savepoint: on an exception its writes, and the outbox messages it asked for, are undone."""
    pending: list[object] = session.info.setdefault(PENDING_KEY, [])
    pending_before = len(pending)
    nested = await session.begin_nested()
    try:
        yield
    except BaseException:
        await nested.rollback()
        del pending[pending_before:]
        raise
    await nested.commit()
