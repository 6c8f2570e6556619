"""Creating, renaming, moving and retiring districts, streets and stations.

Services only flush; the caller's unit of work commits. Each change is audited and announced through
the outbox, so its notification is sent only if the change commits.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit import service as audit
from services.errors import Conflict, DuplicateCode, InvalidInput, NotFound, OutOfScope
from services.hierarchy import repository
from services.hierarchy.repository import HierarchyModel, Level
from services.outbox.service import enqueue
from tenants.context import TenantContext, city_scope, scope_is_within

CODE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
NODE_CHANGED_TASK = "hierarchy.node_changed"


def clean_code(code: str) -> str:
    code = code.strip()
    if not CODE_PATTERN.fullmatch(code):
        raise InvalidInput("a code is 1 to 32 letters, digits, '-' or '_'", field="code")
    return code


def clean_name(name: str) -> str:
    name = " ".join(name.split())
    if not 1 <= len(name) <= 200:
        raise InvalidInput("a name is 1 to 200 characters", field="name")
    return name


def _require_inside(actor: TenantContext, scope: str, what: str) -> None:
    if not any(scope_is_within(scope, own) for own in actor.scopes):
        raise OutOfScope(f"{what} lies outside your scope")


async def _load(session: AsyncSession, actor: TenantContext, level: Level, node_id: int) -> Any:
    node = (await repository.by_ids(session, level, actor.tenant_id, [node_id])).get(node_id)
    if node is None:
        raise NotFound(f"no {level.value} {node_id} is visible to you", field="id")
    return node


async def _parent_scope(
    session: AsyncSession, actor: TenantContext, level: Level, parent_id: int | None
) -> str:
    parent_level = level.parent
    if parent_level is None:
        return city_scope(actor.tenant_id)
    if parent_id is None:
        raise InvalidInput(f"a {level.value} needs its {parent_level.value}", field="parentId")
    parent = await _load(session, actor, parent_level, parent_id)
    if parent.retired_at is not None:
        raise Conflict(f"{parent_level.value} {parent.code} is retired", field="parentId")
    scope: str = parent.scope
    return scope


async def _record(
    session: AsyncSession,
    actor: TenantContext,
    action: str,
    level: Level,
    node: HierarchyModel,
    **details: Any,
) -> None:
    payload = {"level": level.value, "id": node.id, "code": node.code, "name": node.name, **details}
    subject = f"{level.value}:{node.id}"
    await audit.append(
        session,
        tenant_id=actor.tenant_id,
        actor=actor.principal,
        action=action,
        subject=subject,
        scope=node.scope,
        payload=payload,
    )
    await enqueue(
        session,
        tenant_id=actor.tenant_id,
        scope=node.scope,
        task=NODE_CHANGED_TASK,
        kwargs={"action": action, "level": level.value, "node_id": node.id, "actor": actor.principal},
    )


async def create_node(
    session: AsyncSession, actor: TenantContext, level: Level, *, parent_id: int | None, code: str, name: str
) -> HierarchyModel:
    code, name = clean_code(code), clean_name(name)
    parent_scope = await _parent_scope(session, actor, level, parent_id)
    _require_inside(actor, parent_scope, "the parent")
    if await repository.by_code(session, level, actor.tenant_id, code) is not None:
        raise DuplicateCode(f"a {level.value} with code {code} already exists", field="code")
    node_id = await repository.next_id(session, level)
    values: dict[str, Any] = {
        "tenant_id": actor.tenant_id,
        "id": node_id,
        "code": code,
        "name": name,
        "scope": f"{parent_scope}.{level.scope_prefix}{node_id}",
    }
    if level is not Level.DISTRICT:
        values[level.parent_column().key] = parent_id
    node = level.model(**values)
    session.add(node)
    try:
        await session.flush()
    except IntegrityError as error:  # a row the caller cannot see holds the code
        raise DuplicateCode(f"a {level.value} with code {code} already exists", field="code") from error
    await _record(session, actor, f"{level.value}.created", level, node)
    return node


async def rename_node(
    session: AsyncSession, actor: TenantContext, level: Level, node_id: int, name: str
) -> Any:
    name = clean_name(name)
    node = await _load(session, actor, level, node_id)
    _require_inside(actor, node.scope, f"{level.value} {node.code}")
    previous = node.name
    node.name = name
    await session.flush()
    await _record(session, actor, f"{level.value}.renamed", level, node, previous_name=previous)
    return node


async def move_node(
    session: AsyncSession, actor: TenantContext, level: Level, node_id: int, new_parent_id: int
) -> Any:
    parent_level = level.parent
    if parent_level is None:
        raise InvalidInput("districts belong to the city and cannot move", field="id")
    node = await _load(session, actor, level, node_id)
    _require_inside(actor, node.scope, f"{level.value} {node.code}")
    new_parent_scope = await _parent_scope(session, actor, level, new_parent_id)
    _require_inside(actor, new_parent_scope, f"the new {parent_level.value}")
    old_scope: str = node.scope
    new_scope = f"{new_parent_scope}.{level.scope_prefix}{node.id}"
    previous_parent = getattr(node, level.parent_column().key)
    if previous_parent == new_parent_id:
        return node
    setattr(node, level.parent_column().key, new_parent_id)
    await session.flush()
    await repository.rewrite_scopes(session, actor.tenant_id, old_scope, new_scope)
    await session.refresh(node)
    await _record(
        session, actor, f"{level.value}.moved", level, node, from_parent=previous_parent, from_scope=old_scope
    )
    return node


async def retire_node(session: AsyncSession, actor: TenantContext, level: Level, node_id: int) -> Any:
    node = await _load(session, actor, level, node_id)
    _require_inside(actor, node.scope, f"{level.value} {node.code}")
    if node.retired_at is not None:
        raise Conflict(f"{level.value} {node.code} is already retired")
    children = await repository.active_children(session, level, actor.tenant_id, node.id)
    if children:
        raise Conflict(
            f"{level.value} {node.code} still has {children} active children; retire or move them first"
        )
    node.retired_at = func.now()
    await session.flush()
    await session.refresh(node)
    await _record(session, actor, f"{level.value}.retired", level, node)
    return node
