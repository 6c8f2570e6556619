"""Recording a step: the history row and the audit link, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol, TypedDict, Unpack

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.service import append
from services.workflow.machine import StateMachine
from services.workflow.models import WorkflowEvent


class WorkflowInstance(Protocol):
    """What a step needs of a workflow's row: where it lives and the state it is in."""

    tenant_id: int
    id: int
    scope: str
    state: str


class StepDetails(TypedDict, total=False):
    """What a step records besides who took it: its note, whether the public history shows it, what else
    it says (its audit link says it too), and when it was taken (now, unless given)."""

    note: str | None
    public: bool
    payload: dict[str, Any] | None
    at: datetime | None


async def record(
    session: AsyncSession,
    machine: StateMachine,
    instance: WorkflowInstance,
    step: str,
    *,
    from_state: str | None,
    actor: str,
    **details: Unpack[StepDetails],
) -> WorkflowEvent:
    """Record a step that left `instance` in its present state: the history row and its audit link."""
    note, payload = details.get("note"), details.get("payload") or {}
    event = WorkflowEvent(
        tenant_id=instance.tenant_id,
        scope=instance.scope,
        workflow=machine.name,
        subject_id=instance.id,
        step=step,
        from_state=from_state,
        to_state=instance.state,
        actor=actor,
        note=note,
        public=details.get("public", True),
        payload=payload,
        at=details.get("at") or datetime.now(UTC),
    )
    session.add(event)
    await session.flush()  # the event's id keys the notices its step asks for
    await append(
        session,
        tenant_id=instance.tenant_id,
        actor=actor,
        action=f"{machine.name}.{step}",
        subject=f"{machine.name}:{instance.id}",
        scope=instance.scope,
        payload={"from": from_state, "to": instance.state, "note": note, **payload},
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


async def advance(
    session: AsyncSession,
    machine: StateMachine,
    instance: WorkflowInstance,
    step: str,
    *,
    actor: str,
    actor_kinds: Iterable[str],
    effects: Callable[[], Awaitable[dict[str, Any] | None]] | None = None,
    **details: Unpack[StepDetails],
) -> WorkflowEvent:
    """Take one declared step: check it against the machine (a typed error if the state or the actor does
    not allow it), move the instance to the step's target, and record it with its audit link.

    A step declared without sources starts an instance: pass the new row, with no state and not yet in
    the session; it is added and flushed (for its id) once it is in the step's target state.
    `effects` runs after the check and the move, before the record: the step's other changes, which may
    still refuse it with a typed error; what it returns joins the payload."""
    transition = machine.check(step, instance.state, actor_kinds, details.get("note"))
    from_state = instance.state
    instance.state = transition.to(from_state)
    if from_state is None:
        session.add(instance)
        await session.flush()
    if effects is not None:
        details["payload"] = {**(details.get("payload") or {}), **(await effects() or {})}
    return await record(session, machine, instance, step, from_state=from_state, actor=actor, **details)
