"""A submitting resident's view of their own requests: the station, the public history and (merged) the
request they follow are read outside the resident's own transaction, which sees their request rows and
nothing around them. Each read runs in the context `services.reach.acting_on` opens on the request's own
scope, for the request's owner only; requests lying in one scope share one transaction."""

from __future__ import annotations

from collections import defaultdict

from strawberry.dataloader import DataLoader

from schema.context import Info
from services.reach import Target, acting_on
from services.requests.models import Request as RequestRow
from services.requests.models import RequestFollower
from services.requests.progress import SubmitterView, rateable, submitter_views
from tenants.roles import Role

VIEWS = "requests:submitter"


def is_resident(info: Info) -> bool:
    """A caller whose transaction is a resident's own (their rows, no territory)."""
    principal = info.context.principal
    return principal is not None and principal.roles == {Role.RESIDENT}


def _loader(info: Info) -> tuple[DataLoader[int, SubmitterView], dict[int, RequestRow]]:
    found = info.context.domain_loaders.get(VIEWS)
    if found is None:
        rows: dict[int, RequestRow] = {}
        caller = info.context.require_principal().context
        database = info.context.config.database

        async def load(ids: list[int]) -> list[SubmitterView]:
            by_scope: dict[str, list[RequestRow]] = defaultdict(list)
            for key in ids:
                by_scope[rows[key].scope].append(rows[key])
            views: dict[int, SubmitterView] = {}
            for scope, group in by_scope.items():
                contexts = {
                    acting_on(
                        caller,
                        Target(row.tenant_id, scope, owner=row.owner_principal),
                        what=f"request {row.id}",
                    )
                    for row in group
                }
                (context,) = contexts
                async with database.scoped(context) as session:
                    views.update(await submitter_views(session, context.tenant_id, group))
            return [views[key] for key in ids]

        found = info.context.domain_loaders[VIEWS] = (DataLoader(load_fn=load), rows)
    loader, known = found
    assert isinstance(loader, DataLoader) and isinstance(known, dict)
    return loader, known


async def submitter_view(info: Info, row: RequestRow) -> SubmitterView:
    loader, rows = _loader(info)
    rows[row.id] = row
    return await loader.load(row.id)


async def survivor_rateable(info: Info, follows: RequestFollower) -> bool:
    """Whether the request a merged one follows waits for a verdict: read on the survivor's scope, by the
    follower it names."""
    caller = info.context.require_principal().context
    target = Target(follows.tenant_id, follows.scope, participants=(follows.owner_principal or "",))
    context = acting_on(caller, target, what=f"request {follows.request_id}")
    async with info.context.config.database.scoped(context) as session:
        return await rateable(session, follows.tenant_id, follows.request_id)
