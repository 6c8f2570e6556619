"""The mediation deadlines: a level whose timer row falls due with no outcome moves the case up (fired
exactly once by the beat job `timers.sweep`, in the sweep's transaction)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.mediation import service
from services.timers.models import Timer
from services.timers.service import handles


@handles(service.DEADLINE_TIMER)
async def level_deadline(session: AsyncSession, timer: Timer, now: datetime) -> None:
    await service.level_timed_out(
        session, timer.tenant_id, timer.subject_id, int(timer.payload["level"]), now
    )
