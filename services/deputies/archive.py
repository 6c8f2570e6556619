"""The deputy's archive (履职档案): activities, double-list matches of their resources, requests assigned to
them, meetings they were invited to, points and warnings, as one table, oldest first, and as CSV.

It reads in the caller's transaction, so it holds exactly the rows the caller may see: a deputy their own
record, staff what lies in their territory."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.deputies.models import Deputy

COLUMNS = ("section", "id", "at", "kind", "state", "title", "points", "detail")
HEADERS_ZH = ("类别", "编号", "时间", "类型", "状态", "标题", "积分", "说明")
MAX_ROWS = 50_000

ARCHIVE = """
SELECT 'activity' AS section, id, starts_at AS at, kind, state, title, NULL::integer AS points,
       coalesce(verification_note, '') AS detail
FROM activities WHERE tenant_id = :tenant_id AND deputy_id = :deputy_id
UNION ALL
SELECT 'match', m.id, m.created_at, 'match', m.state, d.title, NULL, coalesce(m.outcome, m.reason, '')
FROM matches m
JOIN resources r ON r.tenant_id = m.tenant_id AND r.id = m.resource_id
JOIN demands d ON d.tenant_id = m.tenant_id AND d.id = m.demand_id
WHERE m.tenant_id = :tenant_id AND r.deputy_id = :deputy_id
UNION ALL
SELECT 'request', id, submitted_at, responsible, state, ticket, NULL, left(description, 200)
FROM requests WHERE tenant_id = :tenant_id AND assignee = :principal
UNION ALL
SELECT 'meeting', id, starts_at, 'meeting', state, topic, NULL, ''
FROM meetings WHERE tenant_id = :tenant_id AND participant_principals @> ARRAY[CAST(:principal AS varchar)]
UNION ALL
SELECT 'points', id, earned_at, event, NULL, source_kind || ':' || source_id, points, coalesce(reason, '')
FROM point_entries WHERE tenant_id = :tenant_id AND deputy_id = :deputy_id
UNION ALL
SELECT 'warning', id, created_at, level, state, first_week::text || '/' || last_week::text, NULL,
       coalesce(rectification_note, '')
FROM deputy_warnings WHERE tenant_id = :tenant_id AND deputy_id = :deputy_id
ORDER BY at, section, id
LIMIT :limit
"""


@dataclass(frozen=True, slots=True)
class ArchiveRow:
    section: str
    id: int
    at: datetime
    kind: str
    state: str | None
    title: str
    points: int | None
    detail: str


async def rows_of(session: AsyncSession, deputy: Deputy) -> list[ArchiveRow]:
    found = await session.execute(
        text(ARCHIVE),
        {
            "tenant_id": deputy.tenant_id,
            "deputy_id": deputy.id,
            # A deputy without an account has no requests or meetings of their own.
            "principal": deputy.principal or "",
            "limit": MAX_ROWS,
        },
    )
    return [ArchiveRow(*row) for row in found]


def _cell(value: object) -> str:
    """A cell as text; one a spreadsheet would run as a formula is kept as text (CSV injection)."""
    if value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    shown = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + shown if shown[:1] in ("=", "+", "-", "@", "\t", "\r") else shown


def to_csv(rows: list[ArchiveRow]) -> str:
    """UTF-8 CSV with a BOM (spreadsheets then read the Chinese right), a Chinese and an English header."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADERS_ZH)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(
            [
                _cell(v)
                for v in (row.section, row.id, row.at, row.kind, row.state, row.title, row.points, row.detail)
            ]
        )
    return "\ufeff" + out.getvalue()
