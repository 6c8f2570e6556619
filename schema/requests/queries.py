from __future__ import annotations

from datetime import datetime

import strawberry
from graphql import GraphQLError

from schema.context import Info
from schema.permissions import SIGNED_IN
from schema.relay import BadGlobalId, Connection, check_page_size, connection, decode_cursor, decode_id
from schema.requests.types import (
    PublicProgress,
    RequestCategory,
    RequestState,
    Supervision,
    WorkOrder,
    work_order,
)
from services.hierarchy import repository as hierarchy
from services.hierarchy.repository import Level
from services.requests import progress, repository
from services.requests.models import Request as RequestRow
from services.requests.repository import RequestFilter

NODE_LEVELS = {"District": Level.DISTRICT, "Street": Level.STREET, "Station": Level.STATION}


def _invalid(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "INVALID_INPUT"})


@strawberry.input(description="Every condition narrows the list; leave one out to not filter on it.")
class RequestFilterInput:
    states: list[RequestState] | None = None
    categories: list[str] | None = strawberry.field(default=None, description="Category codes.")
    node_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only requests inside this district, street or station."
    )
    overdue: bool | None = None
    supervision: list[Supervision] | None = None
    submitted_from: datetime | None = None
    submitted_to: datetime | None = strawberry.field(default=None, description="Exclusive.")
    text: str | None = strawberry.field(
        default=None, description="In the description or address, or a ticket."
    )
    unrouted: bool | None = strawberry.field(default=None, description="The manual-routing queue.")


async def _filter(info: Info, given: RequestFilterInput | None) -> RequestFilter:
    if given is None:
        return RequestFilter()
    within = None
    if given.node_id is not None:
        try:
            type_name, key = decode_id(given.node_id, *NODE_LEVELS)
        except BadGlobalId as error:
            raise _invalid(str(error)) from None
        async with info.context.db() as session:
            found = await hierarchy.by_ids(
                session, NODE_LEVELS[type_name], info.context.require_principal().tenant_id, [key]
            )
        if key not in found:
            raise GraphQLError(
                f"{given.node_id} does not exist or lies outside your scope", extensions={"code": "NOT_FOUND"}
            )
        within = found[key].scope
    if given.text is not None and len(given.text) > 200:
        raise _invalid("search text is at most 200 characters")
    if given.submitted_from and given.submitted_to and given.submitted_from >= given.submitted_to:
        raise _invalid("submittedFrom must be before submittedTo")
    return RequestFilter(
        states=tuple(s.value for s in given.states or ()),
        categories=tuple(given.categories or ()),
        within=within,
        overdue=given.overdue,
        supervision=tuple(s.value for s in given.supervision or ()),
        submitted_from=given.submitted_from,
        submitted_to=given.submitted_to,
        text=given.text.strip() if given.text else None,
        unrouted=given.unrouted,
    )


@strawberry.type
class RequestsQuery:
    @strawberry.field(permission_classes=SIGNED_IN, description="The city's categories of need.")
    async def request_categories(self, info: Info) -> list[RequestCategory]:
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            rows = await repository.categories(session, tenant_id)
        return [RequestCategory.of(row) for row in rows]

    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="Requests inside the caller's scope (a resident: their own), newest first.",
    )
    async def requests(
        self, info: Info, first: int = 20, after: str | None = None, filter: RequestFilterInput | None = None
    ) -> Connection[WorkOrder]:
        try:
            size = check_page_size(first)
            cursor = decode_cursor(after)
            before_id = int(cursor) if cursor is not None else None
        except ValueError as error:
            raise _invalid(str(error)) from None
        where = await _filter(info, filter)
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            rows, total, has_next = await repository.page(
                session, tenant_id, where, first=size, before_id=before_id
            )
        return connection(
            rows,
            work_order,
            total=total,
            has_next=has_next,
            has_previous=before_id is not None,
            cursor_of=lambda row: str(row.id),
        )

    @strawberry.field(permission_classes=SIGNED_IN, description="One request by its ticket code.")
    async def request(self, info: Info, ticket: str) -> WorkOrder | None:
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            row = await repository.by_ticket(session, tenant_id, ticket.strip())
        return work_order(row) if row is not None else None

    @strawberry.field(
        description="Public progress of a ticket, for the holder of its receipt: the ticket and its check "
        "code, both right (else null, as for a ticket that does not exist). No sign-in, no personal data."
    )
    async def request_progress(
        self, info: Info, tenant: str, ticket: str, check_code: str
    ) -> PublicProgress | None:
        tenant_id = await info.context.config.directory.tenant_id(tenant)
        if tenant_id is None:
            return None
        async with info.context.config.database.scoped(progress.public_context(tenant_id)) as session:
            found = await progress.by_receipt(session, tenant_id, ticket, check_code)
        return PublicProgress.of(found) if found is not None else None


async def load_request(info: Info, key: int) -> WorkOrder | None:
    tenant_id = info.context.require_principal().tenant_id
    async with info.context.db() as session:
        row = await session.get(RequestRow, (tenant_id, key))
    return work_order(row) if row is not None else None
