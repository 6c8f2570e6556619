"""Running a service call as a mutation: expected failures (domain errors) come back as the payload's
typed errors, whichever transaction the call runs in. Every mutation answers through one of these."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from schema.context import Info
from schema.errors import Error, from_domain
from schema.relay import BadGlobalId, decode_id
from services.errors import DomainError, InvalidInput
from services.unit_of_work import atomic, unit_of_work
from tenants.context import TenantContext

T = TypeVar("T")


async def as_payload(work: Callable[[], Awaitable[T]]) -> T | Error:
    """`work`'s answer, or the typed error of the domain error it raised."""
    try:
        return await work()
    except DomainError as error:
        return from_domain(error)


async def run_service(info: Info, work: Callable[[AsyncSession, TenantContext], Awaitable[T]]) -> T | Error:
    """In the request's own transaction, under the caller's context, inside a savepoint (a refused step
    leaves nothing behind, the rest of the request goes on)."""
    actor = info.context.require_principal().context

    async def run() -> T:
        async with info.context.db() as session, atomic(session):
            return await work(session, actor)

    return await as_payload(run)


async def run_apart(
    info: Info, context: TenantContext, work: Callable[[AsyncSession], Awaitable[T]]
) -> T | Error:
    """In a transaction of its own under `context` (one made by services.reach, or intake's), committed and
    its notices sent before the answer."""

    async def run() -> T:
        async with unit_of_work(info.context.config.database, context) as session, atomic(session):
            return await work(session)

    return await as_payload(run)


def parse_id(global_id: str, field: str, *types: str) -> tuple[str, int]:
    try:
        return decode_id(global_id, *types)
    except BadGlobalId as error:
        raise InvalidInput(str(error), field=field) from None
