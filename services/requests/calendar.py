"""Working days: Monday to Friday, minus the tenant's official holidays, plus its make-up working days (调休).

A deadline of N working days ends at midnight (local time) after the Nth working day following the day the
clock starts: a request submitted on Friday with one working day is due at the end of Monday.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.requests.models import Holiday

# Beyond this many calendar days a deadline search stops: a calendar with no working day is a mistake.
MAX_SEARCH_DAYS = 3660


@dataclass(frozen=True, slots=True)
class WorkingCalendar:
    timezone: ZoneInfo
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5

    def local_day(self, moment: datetime) -> date:
        return moment.astimezone(self.timezone).date()

    def nth_working_day_after(self, day: date, count: int) -> date:
        found, current = 0, day
        for _ in range(MAX_SEARCH_DAYS):
            current += timedelta(days=1)
            if self.is_working_day(current):
                found += 1
                if found >= count:
                    return current
        raise ValueError("the holiday calendar leaves no working day within ten years")

    def deadline(self, start: datetime, working_days: int) -> datetime:
        """The end of the `working_days`-th working day after the start's local day (0: the end of the start
        day if it is a working day, else of the next one)."""
        day = self.local_day(start)
        if working_days <= 0:
            end_day = day if self.is_working_day(day) else self.nth_working_day_after(day, 1)
        else:
            end_day = self.nth_working_day_after(day, working_days)
        return datetime.combine(end_day + timedelta(days=1), time(0), self.timezone)


async def load_calendar(session: AsyncSession, tenant_id: int, timezone: str) -> WorkingCalendar:
    rows = (
        await session.execute(select(Holiday.day, Holiday.kind).where(Holiday.tenant_id == tenant_id))
    ).all()
    return WorkingCalendar(
        ZoneInfo(timezone),
        holidays=frozenset(day for day, kind in rows if kind == "holiday"),
        workdays=frozenset(day for day, kind in rows if kind == "workday"),
    )
