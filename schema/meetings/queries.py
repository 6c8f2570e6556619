from __future__ import annotations

from collections import defaultdict

import strawberry
from graphql import GraphQLError

from schema.context import Info
from schema.meetings.types import Meeting, MeetingInvitation, MeetingState, meeting_of
from schema.permissions import SIGNED_IN
from schema.relay import MAX_PAGE_SIZE, BadGlobalId, decode_id
from services.meetings import repository


def _key(global_id: str, *types: str) -> int:
    try:
        return decode_id(global_id, *types)[1]
    except BadGlobalId as error:
        raise GraphQLError(str(error), extensions={"code": "INVALID_INPUT"}) from None


@strawberry.type
class MeetingsQuery:
    @strawberry.field(permission_classes=SIGNED_IN, description="A meeting the caller may see, by id.")
    async def meeting(self, info: Info, id: strawberry.ID) -> Meeting | None:
        key = _key(id, "Meeting")
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            row = await repository.meeting(session, tenant_id, key)
        return meeting_of(row) if row is not None else None

    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="Meetings the caller may see (its scope's, or those it is invited to), newest first.",
    )
    async def meetings(
        self,
        info: Info,
        state: MeetingState | None = None,
        first: int = 50,
        before: strawberry.ID | None = None,
    ) -> list[Meeting]:
        if not 0 <= first <= MAX_PAGE_SIZE:
            raise GraphQLError(
                f"first must be between 0 and {MAX_PAGE_SIZE}", extensions={"code": "INVALID_INPUT"}
            )
        tenant_id = info.context.require_principal().tenant_id
        before_key = _key(before, "Meeting") if before is not None else None
        async with info.context.db() as session:
            rows = await repository.meetings(
                session, tenant_id, state=state.value if state else None, limit=first, after_id=before_key
            )
            ids = [row.id for row in rows]
            invitations = await repository.invitations(session, tenant_id, ids) if ids else []
            actions = await repository.actions(session, tenant_id, ids) if ids else []
        by_meeting_inv: dict[int, list[object]] = defaultdict(list)
        by_meeting_act: dict[int, list[object]] = defaultdict(list)
        for invitation in invitations:
            by_meeting_inv[invitation.meeting_id].append(invitation)
        for action in actions:
            by_meeting_act[action.meeting_id].append(action)
        return [
            meeting_of(row, by_meeting_inv[row.id], by_meeting_act[row.id])  # type: ignore[arg-type]
            for row in rows
        ]

    @strawberry.field(permission_classes=SIGNED_IN, description="The caller's own invitations, newest first.")
    async def my_meeting_invitations(self, info: Info) -> list[MeetingInvitation]:
        principal = info.context.require_principal()
        async with info.context.db() as session:
            rows = await repository.invitations_of_principal(session, principal.tenant_id, principal.sub)
        return [MeetingInvitation(row=row) for row in rows]


async def load_meeting(info: Info, key: int) -> Meeting | None:
    """node(id:) for a meeting: the caller sees it if row-level security does."""
    tenant_id = info.context.require_principal().tenant_id
    async with info.context.db() as session:
        row = await repository.meeting(session, tenant_id, key)
    return meeting_of(row) if row is not None else None
