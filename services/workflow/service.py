"""Recording a step: the history row and the audit link, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.service import append
from services.workflow.machine import StateMachine
from services.workflow.models import WorkflowEvent


async def record(
    session: AsyncSession,
    machine: StateMachine,
    *,
    tenant_id: int,
    subject_id: int,
    scope: str,
    step: str,
    from_state: str | None,
    to_state: str,
    actor: str,
    note: str | None = None,
    public: bool = True,
    payload: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> WorkflowEvent:
    event = WorkflowEvent(
        tenant_id=tenant_id,
        scope=scope,
        workflow=machine.name,
        subject_id=subject_id,
        step=step,
        from_state=from_state,
        to_state=to_state,
        actor=actor,
        note=note,
        public=public,
        payload=payload or {},
        at=at or datetime.now(UTC),
    )
    session.add(event)
    await session.flush()  # the event's id keys the notices its step asks for
    await append(
        session,
        tenant_id=tenant_id,
        actor=actor,
        action=f"{machine.name}.{step}",
        subject=f"{machine.name}:{subject_id}",
        scope=scope,
        payload={"from": from_state, "to": to_state, "note": note, **(payload or {})},
    )
    return event


async def history(
    session: AsyncSession, tenant_id: int, workflow: str, subject_id: int, *, public_only: bool = False
) -> list[WorkflowEvent]:
    statement = (
        select(WorkflowEvent)
        .where(
            WorkflowEvent.tenant_id == tenant_id,
            WorkflowEvent.workflow == workflow,
            WorkflowEvent.subject_id == subject_id,
        )
        .order_by(WorkflowEvent.id)
    )
    if public_only:
        statement = statement.where(WorkflowEvent.public.is_(True))
    return list((await session.scalars(statement)).all())


async def histories(
    session: AsyncSession, tenant_id: int, workflow: str, subject_ids: list[int]
) -> dict[int, list[WorkflowEvent]]:
    """The steps of several instances in one statement, each instance's in order."""
    found: dict[int, list[WorkflowEvent]] = {subject_id: [] for subject_id in subject_ids}
    events = await session.scalars(
        select(WorkflowEvent)
        .where(
            WorkflowEvent.tenant_id == tenant_id,
            WorkflowEvent.workflow == workflow,
            WorkflowEvent.subject_id.in_(subject_ids),
        )
        .order_by(WorkflowEvent.subject_id, WorkflowEvent.id)
    )
    for event in events:
        found[event.subject_id].append(event)
    return found


class WorkflowInstance(Protocol):
    """What `advance` needs of a workflow's row: where it lives and the state it is in."""

    tenant_id: int
    id: int
    scope: str
    state: str


async def advance(
    session: AsyncSession,
    machine: StateMachine,
    instance: WorkflowInstance,
    step: str,
    *,
    actor: str,
    actor_kinds: Iterable[str],
    note: str | None = None,
    public: bool = True,
    payload: dict[str, Any] | None = None,
    at: datetime | None = None,
    effects: Callable[[], Awaitable[dict[str, Any] | None]] | None = None,
) -> WorkflowEvent:
    """Take one declared step: check it against the machine (a typed error if the state or the actor does
    not allow it), move the instance to the step's target, and record it with its audit link.

    A step declared without sources starts an instance: pass the new row, with no state and not yet in
    the session; it is added and flushed (for its id) once it is in the step's target state.
    `effects` runs after the check and the move, before the record: the step's other changes, which may
    still refuse it with a typed error; what it returns joins the payload."""
    transition = machine.check(step, instance.state, actor_kinds, note)
    from_state = instance.state
    instance.state = transition.to(from_state)
    if from_state is None:
        session.add(instance)
        await session.flush()
    if effects is not None:
        payload = {**(payload or {}), **(await effects() or {})}
    return await record(
        session,
        machine,
        tenant_id=instance.tenant_id,
        subject_id=instance.id,
        scope=instance.scope,
        step=step,
        from_state=from_state,
        to_state=instance.state,
        actor=actor,
        note=note,
        public=public,
        payload=payload,
        at=at,
    )
