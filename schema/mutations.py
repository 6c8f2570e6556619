"""Running a service call as a mutation: expected failures (domain errors) come back as the payload's
typed errors, whichever transaction the call runs in. Every mutation answers through one of these."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from schema.context import Info
from schema.errors import Error, from_domain
from schema.relay import BadGlobalId, decode_id
from services.errors import DomainError, InvalidInput
from services.reach import Target, acting_on
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


class OwnedRow(Protocol):
    scope: str
    owner_principal: str | None


async def run_as_owner_or_staff(
    info: Info,
    global_id: str,
    type_name: str,
    find: Callable[[AsyncSession, int, int], Awaitable[OwnedRow | None]],
    work: Callable[[AsyncSession, TenantContext, int], Awaitable[T]],
) -> T | Error:
    """A step on a row its owner may take wherever they are (a match's resource owner, the deputy a
    warning is about): the owner in a context `acting_on` opens bounded to the row's scope, in a
    transaction of its own; anyone else (staff) in their own transaction, where the step checks them."""
    caller = info.context.require_principal().context

    async def owners_context() -> tuple[int, TenantContext | None]:
        key = parse_id(global_id, "id", type_name)[1]
        async with info.context.db() as session:
            row = await find(session, caller.tenant_id, key)
        if row is None or row.owner_principal != caller.principal:
            return key, None
        target = Target(caller.tenant_id, row.scope, owner=row.owner_principal)
        return key, acting_on(caller, target, what=type_name, field="id")

    found = await as_payload(owners_context)
    if isinstance(found, Error):
        return found
    key, context = found
    if context is None:

        async def own_transaction(session: AsyncSession, actor: TenantContext) -> T:
            return await work(session, actor, key)

        return await run_service(info, own_transaction)
    bounded = context

    async def apart(session: AsyncSession) -> T:
        return await work(session, bounded, key)

    return await run_apart(info, bounded, apart)
