"""Setting the shape of a district, street, station or grid cell: checked, versioned, audited."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from geo.boundaries import (
    BoundaryLevel,
    Overlap,
    find_node,
    outside_parent,
    overlapping_siblings,
    set_boundary,
)
from geo.validation import ValidatedGeometry
from services.audit import service as audit
from services.errors import NotFound, OutOfScope
from tenants.context import TenantContext, scope_is_within


@dataclass
class BoundaryReport:
    level: BoundaryLevel
    node_id: int
    code: str
    boundary_id: int
    replaced_previous: bool
    repairs: list[str] = field(default_factory=list)
    outside_parent_square_meters: float | None = None
    overlaps: list[Overlap] = field(default_factory=list)


async def set_node_boundary(
    session: AsyncSession,
    actor: TenantContext,
    level: BoundaryLevel,
    validated: ValidatedGeometry,
    *,
    node_id: int | None = None,
    code: str | None = None,
    source: str = "",
    synthetic: bool = False,
) -> BoundaryReport:
    """Make the validated shape the node's current boundary; the old version is kept for "as of" lookups.

    The report says how far the shape sticks out of its parent and which siblings it overlaps."""
    node = await find_node(session, actor.tenant_id, level, node_id=node_id, code=code)
    if node is None:
        wanted = f"code {code}" if code is not None else f"id {node_id}"
        raise NotFound(
            f"no {level.value} with {wanted} is visible to you", field="id" if code is None else "code"
        )
    if not any(scope_is_within(node.scope, own) for own in actor.scopes):
        raise OutOfScope(f"{level.value} {node.code} lies outside your scope")
    stored = await set_boundary(
        session,
        tenant_id=actor.tenant_id,
        level=level,
        node_id=node.id,
        scope=node.scope,
        geometry=validated.geometry,
        synthetic=synthetic,
        source=source,
    )
    repairs = [str(repair) for repair in validated.repairs]
    await audit.append(
        session,
        tenant_id=actor.tenant_id,
        actor=actor.principal,
        action=f"{level.value}.boundary_set",
        subject=f"{level.value}:{node.id}",
        scope=node.scope,
        payload={"boundary_id": stored.id, "source": source, "synthetic": synthetic, "repairs": repairs},
    )
    return BoundaryReport(
        level=level,
        node_id=node.id,
        code=node.code,
        boundary_id=stored.id,
        replaced_previous=stored.closed_previous,
        repairs=repairs,
        outside_parent_square_meters=await outside_parent(session, actor.tenant_id, level, node.id),
        overlaps=await overlapping_siblings(session, actor.tenant_id, level, node.id),
    )
