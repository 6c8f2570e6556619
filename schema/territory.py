"""The territory a mutation or query names by a node id: its scope path, when it lies inside the caller's
scopes; else NOT_FOUND, worded as for a node that does not exist (row-level security also shows the
ancestors of a caller's scope, which are not theirs to act on)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from schema.mutations import parse_id
from services.hierarchy import repository as hierarchy
from services.hierarchy.repository import Level
from services.reach import Target, acting_on, not_found, reaches
from tenants.context import TenantContext, city_scope
from tenants.principals import Principal

NODE_LEVELS = {"District": Level.DISTRICT, "Street": Level.STREET, "Station": Level.STATION}


async def territory(
    session: AsyncSession,
    context: TenantContext,
    node_id: str | None,
    *,
    field: str = "nodeId",
    whole_city: str = "the city",
    levels: tuple[str, ...] = tuple(NODE_LEVELS),
) -> str:
    """The scope of `node_id` (one of `levels`), or the whole city's when it is None."""
    if node_id is None:
        scope = city_scope(context.tenant_id)
        if not reaches(context, Target(context.tenant_id, scope)):
            raise not_found(whole_city, field)
        return scope
    type_name, key = parse_id(node_id, field, *levels)
    found = await hierarchy.by_ids(session, NODE_LEVELS[type_name], context.tenant_id, [key])
    if key not in found or not reaches(context, Target(context.tenant_id, str(found[key].scope))):
        raise not_found(str(node_id)[:80], field)
    return str(found[key].scope)


def resident_homes(principal: Principal) -> list[TenantContext]:
    """The contexts a resident acts in at home (their token's scopes): what a station addresses to its
    residents (its grid, its reception days) is read there. Their own transaction sees no territory; each
    home is read in the context `acting_on` opens on it, from a view anchored one label below it."""
    view = TenantContext(principal.tenant_id, tuple(f"{home}.r0" for home in principal.scopes), principal.sub)
    return [
        acting_on(view, Target(principal.tenant_id, home, addressed_below=True), what=f"scope {home}")
        for home in principal.scopes
    ]
