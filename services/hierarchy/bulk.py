"""Loading a whole hierarchy tree at once (seeding, imports): set-based inserts, existing codes kept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.audit import service as audit
from services.hierarchy import repository
from services.hierarchy.repository import Level
from services.hierarchy.service import clean_code, clean_name
from tenants.context import TenantContext, city_scope

BATCH = 2000


@dataclass
class TreeNode:
    code: str
    name: str
    children: list[TreeNode] = field(default_factory=list)


@dataclass
class LoadReport:
    created: dict[str, int] = field(default_factory=lambda: {level.value: 0 for level in Level})
    kept: dict[str, int] = field(default_factory=lambda: {level.value: 0 for level in Level})


Progress = Callable[[int], None]


async def load_tree(
    session: AsyncSession,
    actor: TenantContext,
    districts: list[TreeNode],
    *,
    progress: Progress | None = None,
) -> LoadReport:
    """Create every node of the tree whose code does not exist yet; nodes already there are kept as they are.

    `progress` is called with the number of nodes handled since the last call.
    """
    report = LoadReport()
    tenant_id = actor.tenant_id
    parents: list[tuple[int | None, str, list[TreeNode]]] = [(None, city_scope(tenant_id), districts)]
    for level in Level:
        existing = await repository.codes_of(session, level, tenant_id)
        fresh = [
            (pid, pscope, node)
            for pid, pscope, nodes in parents
            for node in nodes
            if node.code not in existing
        ]
        ids = await repository.allocate_ids(session, level, len(fresh)) if fresh else []
        new_rows: list[dict[str, Any]] = []
        placed: dict[str, tuple[int, str]] = dict(existing)
        for node_id, (parent_id, parent_scope, node) in zip(ids, fresh, strict=True):
            scope = f"{parent_scope}.{level.scope_prefix}{node_id}"
            row: dict[str, Any] = {
                "tenant_id": tenant_id,
                "id": node_id,
                "code": clean_code(node.code),
                "name": clean_name(node.name),
                "scope": scope,
            }
            if level is not Level.DISTRICT:
                row[level.parent_column().key] = parent_id
            new_rows.append(row)
            placed[node.code] = (node_id, scope)
        for start in range(0, len(new_rows), BATCH):
            chunk = new_rows[start : start + BATCH]
            await repository.insert_many(session, level, chunk)
            if progress:
                progress(len(chunk))
        handled = sum(len(nodes) for _, _, nodes in parents)
        report.created[level.value] = len(new_rows)
        report.kept[level.value] = handled - len(new_rows)
        if progress and handled > len(new_rows):
            progress(handled - len(new_rows))
        parents = [
            (placed[node.code][0], placed[node.code][1], node.children)
            for _, _, nodes in parents
            for node in nodes
            if node.children
        ]
    await audit.append(
        session,
        tenant_id=tenant_id,
        actor=actor.principal,
        action="hierarchy.loaded",
        subject=f"city:{tenant_id}",
        scope=city_scope(tenant_id),
        payload={"created": report.created, "kept": report.kept},
    )
    return report


def count_nodes(districts: list[TreeNode]) -> int:
    total = 0
    stack = list(districts)
    while stack:
        node = stack.pop()
        total += 1
        stack.extend(node.children)
    return total
