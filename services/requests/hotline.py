"""Importing a 12345 hotline export (CSV) through the one intake pipeline, as channel "hotline".

- Headers in Chinese or English (COLUMNS); UTF-8 with or without BOM, or GB18030, told apart by decoding.
- Every row is checked on its own: a bad row is reported with its line number and reason, the good ones
  are kept. Rows are written in batches (one transaction each), every row in its own savepoint, so one
  row the database refuses costs nothing but itself.
- The hotline's ticket number is the request's external id: importing the same file again writes nothing
  new (the intake answers `created=False` for what it has seen).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from geo.crs import parse_crs
from services.csv_table import CsvFileError, CsvRow, decode, read_rows
from services.errors import InvalidInput
from services.requests import repository
from services.requests.intake import MAX_DESCRIPTION, Submission, intake_context, submit
from services.unit_of_work import UnitOfWork, atomic
from tenants.db import Database

CHANNEL = "hotline"
BATCH_SIZE = 200
MAX_EXTERNAL_ID = 100
# A call cannot come from the future; a little slack for clocks that disagree.
CLOCK_SLACK = timedelta(minutes=5)
# Nor from before there were hotlines (year 1 would also overflow the deadline arithmetic).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)

# Column -> the headers accepted for it (English, then the 12345 export's Chinese).
COLUMNS: dict[str, tuple[str, ...]] = {
    "external_id": ("external_id", "工单编号"),
    "submitted_at": ("submitted_at", "来电时间"),
    "category": ("category", "诉求类别"),
    "description": ("description", "诉求内容"),
    "address": ("address", "地址"),
    "lon": ("lon", "经度"),
    "lat": ("lat", "纬度"),
    "crs": ("crs", "坐标系"),
    "contact_name": ("contact_name", "联系人"),
    "contact_phone": ("contact_phone", "联系电话"),
}
REQUIRED = ("external_id", "submitted_at", "category", "description")
TIME_FORMATS = (
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y年%m月%d日 %H:%M:%S",
    "%Y年%m月%d日 %H:%M",
    "%Y年%m月%d日%H:%M:%S",
    "%Y年%m月%d日%H:%M",
    "%Y%m%d%H%M%S",
)


# The file as a whole cannot be read: its encoding, or a column it must have.
HotlineFileError = CsvFileError


@dataclass(frozen=True, slots=True)
class RowOutcome:
    line: int
    external_id: str | None
    status: str  # imported | present | refused
    reason: str | None = None
    ticket: str | None = None


@dataclass
class HotlineReport:
    encoding: str
    outcomes: list[RowOutcome] = field(default_factory=list)
    dry_run: bool = False

    def _count(self, status: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def imported(self) -> int:
        return self._count("imported")

    @property
    def present(self) -> int:
        return self._count("present")

    @property
    def refused(self) -> list[RowOutcome]:
        return sorted((o for o in self.outcomes if o.status == "refused"), key=lambda o: o.line)


@dataclass(frozen=True, slots=True)
class _Good:
    line: int
    submission: Submission


class _Refused(Exception):
    pass


def _time(raw: str, zone: ZoneInfo, now: datetime) -> datetime:
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        for pattern in TIME_FORMATS:
            try:
                parsed = datetime.strptime(raw, pattern)
                break
            except ValueError:
                continue
    if parsed is None:
        raise _Refused(f"bad time {raw!r} (use e.g. 2026-11-25 09:30:00)")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    if parsed > now + CLOCK_SLACK:
        raise _Refused(f"bad time {raw!r}: it lies in the future")
    if parsed < EARLIEST:
        raise _Refused(f"bad time {raw!r}: it lies before 1970")
    return parsed


def _number(raw: str, name: str, bound: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise _Refused(f"bad coordinates: {name} {raw!r} is not a number") from None
    if not math.isfinite(value) or not -bound <= value <= bound:
        raise _Refused(f"bad coordinates: {name} {raw} is out of range")
    return value


def check_row(
    row: CsvRow, categories: dict[str, str], zone: ZoneInfo, now: datetime
) -> tuple[str, Submission]:
    """The row's external id and submission, or _Refused with the reason."""
    if row.problem is not None:
        raise _Refused(row.problem)
    values = row.values
    for column, value in values.items():
        if "\x00" in value:
            raise _Refused(f"the {column} cell holds a NUL character, which cannot be stored")
    for column in REQUIRED:
        if not values.get(column):
            raise _Refused(f"missing {column} ({COLUMNS[column][1]})")
    external_id = values["external_id"]
    if len(external_id) > MAX_EXTERNAL_ID:
        raise _Refused(f"the external id is longer than {MAX_EXTERNAL_ID} characters")
    category = categories.get(values["category"]) or categories.get(values["category"].casefold())
    if category is None:
        raise _Refused(f"unknown category {values['category']!r}")
    submitted_at = _time(values["submitted_at"], zone, now)
    description = values["description"]
    if len(description) > MAX_DESCRIPTION:
        raise _Refused(f"the description is too long ({len(description)} > {MAX_DESCRIPTION} characters)")
    lon_raw, lat_raw = values.get("lon", ""), values.get("lat", "")
    lon = lat = None
    if lon_raw or lat_raw:
        if not (lon_raw and lat_raw):
            raise _Refused("bad coordinates: give both longitude and latitude, or neither")
        lon, lat = _number(lon_raw, "longitude", 180), _number(lat_raw, "latitude", 90)
    try:
        crs = parse_crs(values.get("crs") or "WGS84").value
    except ValueError:
        raise _Refused(f"bad coordinates: unknown coordinate system {values.get('crs')!r}") from None
    address = values.get("address") or None
    if lon is None and address is None:
        raise _Refused("missing location: give longitude and latitude, or an address")
    submission = Submission(
        category=category,
        description=description,
        channel=CHANNEL,
        lon=lon,
        lat=lat,
        crs=crs,
        address=address,
        contact_name=values.get("contact_name") or None,
        contact_phone=values.get("contact_phone") or None,
        external_id=external_id,
        submitted_at=submitted_at,
    )
    return external_id, submission


def _batches(items: Sequence[_Good], size: int) -> Iterator[Sequence[_Good]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def import_hotline(
    database: Database,
    tenant_id: int,
    data: bytes,
    *,
    encoding: str = "auto",
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int], Callable[[int], None]] | None = None,
    now: datetime | None = None,
) -> HotlineReport:
    """Import the rows of a hotline export; `progress(total)` returns the function told of each row.

    A dry run does all the work, intake included, and rolls it back: the report says what would happen.
    Raises HotlineFileError when the file as a whole is unreadable."""
    text, used = decode(data, encoding)
    rows = read_rows(text, COLUMNS, REQUIRED)
    report = HotlineReport(encoding=used, dry_run=dry_run)
    moment = now or datetime.now(UTC)
    context = intake_context(tenant_id)
    async with database.scoped(context) as session:
        known = await repository.categories(session, tenant_id)
        zone = ZoneInfo((await repository.settings_of(session, tenant_id)).timezone)
    categories: dict[str, str] = {}
    for category in known:
        categories[category.name] = category.code
        categories[category.code] = category.code
        categories[category.code.casefold()] = category.code

    advance = progress(len(rows)) if progress is not None else (lambda count: None)
    good: list[_Good] = []
    first_line: dict[str, int] = {}
    for row in rows:
        # As reported (a refused id may hold a NUL, which a terminal would swallow).
        external_id = (row.values.get("external_id") or "").replace("\x00", "\\x00") or None
        try:
            external_id, submission = check_row(row, categories, zone, moment)
            if external_id in first_line:
                raise _Refused(
                    f"duplicate external id {external_id!r} (first on line {first_line[external_id]})"
                )
            first_line[external_id] = row.line
        except _Refused as refused:
            report.outcomes.append(RowOutcome(row.line, external_id, "refused", str(refused)))
            advance(1)
            continue
        good.append(_Good(row.line, submission))

    for batch in _batches(good, batch_size):
        work = UnitOfWork(database, context)
        session = await work.session()
        try:
            for item in batch:
                report.outcomes.append(await _import_one(session, tenant_id, item, moment))
                advance(1)
        except BaseException:
            await work.rollback()
            raise
        await (work.rollback() if dry_run else work.commit())
    report.outcomes.sort(key=lambda outcome: outcome.line)
    return report


async def _import_one(session: AsyncSession, tenant_id: int, item: _Good, now: datetime) -> RowOutcome:
    external_id = item.submission.external_id
    try:
        async with atomic(session):
            receipt = await submit(session, tenant_id, item.submission, now=now)
    except InvalidInput as error:
        return RowOutcome(item.line, external_id, "refused", error.message)
    except IntegrityError:
        return RowOutcome(
            item.line, external_id, "refused", "the database refused the row (written meanwhile?)"
        )
    status = "imported" if receipt.created else "present"
    return RowOutcome(item.line, external_id, status, ticket=receipt.ticket)
