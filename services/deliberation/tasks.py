"""The deliberation deadlines: registration closes and voting closes when their timer rows fall due
(fired exactly once by the beat job `timers.sweep`, in the sweep's transaction)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.deliberation import service
from services.timers.models import Timer
from services.timers.service import handles
from services.workflow.machine import SYSTEM

ACTOR = "system:timers"


@handles(service.REGISTRATION_TIMER)
async def registration_deadline(session: AsyncSession, timer: Timer, now: datetime) -> None:
    await service.close_registration(session, timer.tenant_id, ACTOR, [SYSTEM], timer.subject_id, now=now)


@handles(service.VOTING_TIMER)
async def voting_close(session: AsyncSession, timer: Timer, now: datetime) -> None:
    await service.close_voting(session, timer.tenant_id, ACTOR, [SYSTEM], timer.subject_id, now=now)
