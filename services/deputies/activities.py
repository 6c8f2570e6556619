"""Duty activities (履职活动) checked on the ground.

- A deputy (or staff for them) reports an activity at a station they are linked to, with its evidence;
  a reception day (代表接待日) is announced ahead (the city's `announce_days`) with its topics, and the
  station's residents are told; residents register for it, ordering a topic or a time (点单).
- From a phone the deputy checks in with a point (WGS84, GCJ-02 or BD-09) and a time. The server refuses a
  point far outside the city, flags one outside the station's boundary, and flags "impossible travel": two
  check-ins of one deputy farther apart than the city's `max_travel_kmh` allows, which is how signing for
  visits that never happened (代签走访记录) shows.
- Street staff verify, reject with a reason, or ask for more; only verified activities count anywhere.
  Verifying a flagged activity needs a note saying why.
- Participants rate it (0-100); an average below the city's bar opens a rectification item.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from geo.crs import parse_crs, to_wgs84
from services.audit.service import append as audit
from services.deputies import points, repository
from services.deputies.models import (
    ACTIVITY_KINDS,
    Activity,
    ActivityCheckin,
    ActivityRating,
    ActivityRegistration,
    Deputy,
)
from services.deputies.service import MANAGERS, clean_text, keeps
from services.errors import Conflict, InvalidInput
from services.notifications.dispatch import notify
from services.reach import not_found
from services.rectifications.service import open_item
from services.requests import repository as requests
from services.workflow.machine import IllegalTransition, NotAllowed
from tenants.context import TenantContext

# Kinds a deputy reports; meetings, deliberations and mediation are linked to what they were part of.
REPORTED_KINDS = frozenset(ACTIVITY_KINDS) - {"reception"}
LINKED_KINDS = {"meeting": "meeting", "deliberation": "deliberation", "mediation": "mediation_case"}
MAX_PHOTOS = 9
# A phone's clock may run a little ahead; a check-in older than this is a report, not a check-in.
CLOCK_SLACK = timedelta(minutes=5)
CHECKIN_WINDOW = timedelta(hours=48)
# Two fixes this close are one place, whatever the clock says (GPS jitter).
SAME_PLACE_METERS = 200.0


@dataclass(frozen=True, slots=True)
class ActivityInput:
    deputy_id: int
    station_id: int
    kind: str
    title: str
    starts_at: datetime
    topics: tuple[str, ...] = ()
    households_visited: int = 0
    request_id: int | None = None
    match_id: int | None = None
    linked: str | None = None
    photo_urls: tuple[str, ...] = ()
    minutes: str = ""
    attendees: int = 0


@dataclass(frozen=True, slots=True)
class Evidence:
    photo_urls: tuple[str, ...] = ()
    minutes: str = ""
    attendees: int = 0
    households_visited: int = 0


async def _record(
    session: AsyncSession, actor: TenantContext, action: str, row: Activity, **payload: object
) -> None:
    await audit(
        session,
        tenant_id=actor.tenant_id,
        actor=actor.principal,
        action=action,
        subject=f"activity:{row.id}",
        scope=row.scope,
        payload={"deputy": row.deputy_id, **payload},
    )


def _for_deputy(actor: TenantContext, kinds: frozenset[str], deputy: Deputy, station_scope: str) -> None:
    """The deputy themself, or staff whose territory holds the station."""
    if actor.principal == deputy.principal and keeps(actor, station_scope):
        return
    if kinds & MANAGERS and keeps(actor, station_scope):
        return
    raise NotAllowed(
        "only the deputy, or staff of the station's territory, may record the deputy's activities"
    )


async def _deputy_at(
    session: AsyncSession, actor: TenantContext, kinds: frozenset[str], deputy_id: int, station_id: int
) -> tuple[Deputy, str]:
    deputy = await repository.get(session, actor.tenant_id, deputy_id)
    if deputy is None:
        raise not_found("deputy", "deputyId")
    station = await repository.station(session, actor.tenant_id, station_id)
    if station is None or not keeps(actor, station.scope):
        raise not_found("station", "stationId")
    if await repository.link(session, actor.tenant_id, deputy_id, station_id) is None:
        raise InvalidInput("the deputy is not linked to that station", field="stationId")
    _for_deputy(actor, kinds, deputy, station.scope)
    return deputy, station.scope


def _evidence(data: Evidence | ActivityInput) -> dict[str, object]:
    if len(data.photo_urls) > MAX_PHOTOS:
        raise InvalidInput(f"at most {MAX_PHOTOS} photos", field="photoUrls")
    for url in data.photo_urls:
        if not url.startswith(("https://", "http://")) or len(url) > 1000:
            raise InvalidInput(f"{url[:80]!r} is not an http(s) URL", field="photoUrls")
    if not 0 <= data.attendees <= 100_000:
        raise InvalidInput("attendees must be between 0 and 100000", field="attendees")
    if not 0 <= data.households_visited <= 100_000:
        raise InvalidInput("householdsVisited must be between 0 and 100000", field="householdsVisited")
    return {
        "photo_urls": list(data.photo_urls),
        "minutes": clean_text(data.minutes, 20_000, "minutes") or "",
        "attendees": data.attendees,
        "households_visited": data.households_visited,
    }


def _topics(topics: Sequence[str]) -> list[str]:
    cleaned = [t.strip() for t in topics if t.strip()]
    if len(cleaned) > 20 or any(len(t) > 200 for t in cleaned):
        raise InvalidInput("at most 20 topics of up to 200 characters each", field="topics")
    return list(dict.fromkeys(cleaned))


async def report(
    session: AsyncSession, actor: TenantContext, kinds: frozenset[str], data: ActivityInput, now: datetime
) -> Activity:
    """An activity done, with its evidence, waiting for verification."""
    if data.kind not in REPORTED_KINDS:
        raise InvalidInput(
            f"kind must be one of {', '.join(sorted(REPORTED_KINDS))} (a reception day is announced)",
            field="kind",
        )
    if data.starts_at > now + CLOCK_SLACK:
        raise InvalidInput("an activity is reported once it has happened", field="startsAt")
    deputy, scope = await _deputy_at(session, actor, kinds, data.deputy_id, data.station_id)
    linked = data.linked
    wanted = LINKED_KINDS.get(data.kind)
    if wanted is not None:
        prefix, _, key = (linked or "").partition(":")
        if prefix != wanted or not key.isdigit():
            raise InvalidInput(
                f"a {data.kind} activity links what it was part of, as {wanted}:<id>", field="linked"
            )
    elif linked is not None:
        raise InvalidInput("only meetings, deliberations and mediation are linked", field="linked")
    if data.kind == "problem_solved" and data.request_id is None and data.match_id is None:
        raise InvalidInput("a problem solved names its request or project", field="requestId")
    if data.request_id is not None:
        # A request of the same station, which the caller reaches: else NOT_FOUND as for a missing one.
        await requests.get(session, actor.tenant_id, data.request_id, within=[scope], field="requestId")
    row = Activity(
        tenant_id=actor.tenant_id,
        scope=scope,
        deputy_id=deputy.id,
        station_id=data.station_id,
        owner_principal=deputy.principal,
        kind=data.kind,
        title=clean_text(data.title, 200, "title", required=True),
        topics=_topics(data.topics),
        starts_at=data.starts_at,
        request_id=data.request_id,
        match_id=data.match_id,
        linked=linked,
        state="reported",
        created_by=actor.principal,
        reported_at=now,
        **_evidence(data),
    )
    session.add(row)
    await session.flush()
    await _record(session, actor, "activity.reported", row, kind=row.kind)
    await _tell_staff(session, row, "activity.reported", f"待核实：{row.title}")
    return row


async def announce_reception(
    session: AsyncSession, actor: TenantContext, kinds: frozenset[str], data: ActivityInput, now: datetime
) -> Activity:
    """A reception day announced ahead with its topics; the station's residents and staff are told."""
    settings = await repository.duty_settings(session, actor.tenant_id)
    if data.starts_at < now + timedelta(days=settings.announce_days):
        raise InvalidInput(
            f"a reception day is announced at least {settings.announce_days} days ahead", field="startsAt"
        )
    topics = _topics(data.topics)
    if not topics:
        raise InvalidInput("name the topics residents may bring", field="topics")
    deputy, scope = await _deputy_at(session, actor, kinds, data.deputy_id, data.station_id)
    row = Activity(
        tenant_id=actor.tenant_id,
        scope=scope,
        deputy_id=deputy.id,
        station_id=data.station_id,
        owner_principal=deputy.principal,
        kind="reception",
        title=clean_text(data.title, 200, "title", required=True),
        topics=topics,
        starts_at=data.starts_at,
        state="planned",
        created_by=actor.principal,
    )
    session.add(row)
    await session.flush()
    await _record(session, actor, "activity.announced", row, starts_at=row.starts_at.isoformat())
    title = f"代表接待日：{row.title}（{row.starts_at.date().isoformat()}）"
    for resident in await repository.residents_of(session, actor.tenant_id, scope):
        await notify(
            session,
            tenant_id=actor.tenant_id,
            scope=scope,
            kind="reception.announced",
            title=title,
            body="、".join(topics),
            source=f"activity:{row.id}:announced:{resident}",
            recipient=resident,
            payload={"activity": row.id},
        )
    await _tell_staff(session, row, "reception.announced", title)
    return row


async def _tell_staff(session: AsyncSession, row: Activity, kind: str, title: str) -> None:
    await notify(
        session,
        tenant_id=row.tenant_id,
        scope=row.scope,
        kind=kind,
        title=title,
        source=f"activity:{row.id}:{kind}:{row.state}",
        payload={"activity": row.id},
    )


async def _own(
    session: AsyncSession, actor: TenantContext, kinds: frozenset[str], activity_id: int
) -> Activity:
    """An activity the caller may record for: their own as its deputy, or one in their territory as staff."""
    row = await repository.activity(session, actor.tenant_id, activity_id)
    if row is None:
        raise not_found("activity")
    if row.owner_principal == actor.principal or (kinds & MANAGERS and keeps(actor, row.scope)):
        return row
    raise not_found("activity")


async def add_evidence(
    session: AsyncSession,
    actor: TenantContext,
    kinds: frozenset[str],
    activity_id: int,
    data: Evidence,
    now: datetime,
) -> Activity:
    """Report a held reception day, or answer a request for more: the evidence replaces what was there."""
    row = await _own(session, actor, kinds, activity_id)
    if row.state not in ("planned", "more_requested", "reported"):
        raise IllegalTransition(f"a {row.state.replace('_', ' ')} activity takes no more evidence")
    if row.state == "planned" and row.starts_at > now + CLOCK_SLACK:
        raise InvalidInput("the reception day has not happened yet", field="id")
    for name, value in _evidence(data).items():
        setattr(row, name, value)
    row.state, row.reported_at = "reported", now
    await session.flush()
    await _record(session, actor, "activity.evidence_added", row)
    await _tell_staff(session, row, "activity.reported", f"待核实：{row.title}")
    return row


@dataclass(frozen=True, slots=True)
class CheckinInput:
    lon: float
    lat: float
    crs: str = "wgs84"
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CheckinResult:
    checkin: ActivityCheckin
    activity: Activity
    warnings: list[str] = field(default_factory=list)


async def check_in(
    session: AsyncSession, actor: TenantContext, activity_id: int, data: CheckinInput, now: datetime
) -> CheckinResult:
    """The deputy's check-in from their phone, with what the server makes of it."""
    row = await repository.activity(session, actor.tenant_id, activity_id)
    if row is None or row.owner_principal != actor.principal:
        raise not_found("activity")
    if row.state not in ("planned", "reported", "more_requested"):
        raise IllegalTransition(f"a {row.state.replace('_', ' ')} activity takes no check-ins")
    at = data.at or now
    if at.tzinfo is None:
        raise InvalidInput("give the time with its offset", field="at")
    if at > now + CLOCK_SLACK:
        raise InvalidInput("the check-in time lies in the future: check the phone's clock", field="at")
    if at < now - CHECKIN_WINDOW:
        raise InvalidInput("a check-in is sent within 48 hours; report older activities instead", field="at")
    if not (
        math.isfinite(data.lon)
        and math.isfinite(data.lat)
        and -180 <= data.lon <= 180
        and -90 <= data.lat <= 90
    ):
        raise InvalidInput(f"({data.lon}, {data.lat}) is not a longitude/latitude pair", field="location")
    try:
        crs = parse_crs(data.crs)
    except ValueError as error:
        raise InvalidInput(str(error), field="crs") from None
    lon, lat = to_wgs84(data.lon, data.lat, crs)
    margin = (await requests.settings_of(session, actor.tenant_id)).city_margin_meters
    if not await requests.near_city(session, actor.tenant_id, lon, lat, margin, at):
        raise InvalidInput(
            f"({data.lon}, {data.lat}) ({data.crs}) lies more than {margin} m outside the city: check the "
            "point and its coordinate system",
            field="location",
        )
    settings = await repository.duty_settings(session, actor.tenant_id)
    offset = await repository.station_offset(session, actor.tenant_id, row.station_id, lon, lat)
    outside = offset is not None and offset > settings.boundary_margin_meters
    speed: float | None = None
    previous = await repository.previous_checkin(session, actor.tenant_id, row.deputy_id, at)
    if previous is not None:
        meters = await repository.meters_from_checkin(session, actor.tenant_id, previous.id, lon, lat)
        hours = max((at - previous.checked_in_at).total_seconds(), 1.0) / 3600
        if meters > SAME_PLACE_METERS:
            speed = round(meters / 1000 / hours, 1)
    impossible = speed is not None and speed > settings.max_travel_kmh
    checkin = ActivityCheckin(
        tenant_id=actor.tenant_id,
        activity_id=row.id,
        scope=row.scope,
        deputy_id=row.deputy_id,
        owner_principal=row.owner_principal,
        checked_in_at=at,
        geom=f"SRID=4326;POINT({lon} {lat})",
        crs=crs.value,
        outside_meters=round(offset, 1) if offset is not None else None,
        speed_kmh=speed,
        outside_boundary=outside,
        impossible_travel=impossible,
    )
    session.add(checkin)
    row.outside_boundary = row.outside_boundary or outside
    row.impossible_travel = row.impossible_travel or impossible
    await session.flush()
    await session.refresh(checkin, ["geom"])
    warnings = []
    if outside:
        warnings.append(f"the point lies {offset:.0f} m outside the station's boundary")
    if impossible:
        warnings.append(
            f"{speed} km/h from your previous check-in is faster than {settings.max_travel_kmh} km/h"
        )
    await _record(session, actor, "activity.checked_in", row, outside=outside, impossible_travel=impossible)
    return CheckinResult(checkin, row, warnings)


VERDICTS = {"verified": "verified", "rejected": "rejected", "more": "more_requested"}


async def verify(
    session: AsyncSession,
    actor: TenantContext,
    kinds: frozenset[str],
    activity_id: int,
    verdict: str,
    note: str | None,
    now: datetime,
) -> Activity:
    """Street staff's verdict: verified, rejected (with a reason) or asked for more (saying what)."""
    if not kinds & MANAGERS:
        raise NotAllowed("only staff of the station's territory verify activities")
    row = await repository.activity(session, actor.tenant_id, activity_id)
    if row is None or not keeps(actor, row.scope):
        raise not_found("activity")
    if row.owner_principal == actor.principal:
        raise NotAllowed("a deputy does not verify their own activity")
    if verdict not in VERDICTS:
        raise InvalidInput(f"verdict must be one of {', '.join(VERDICTS)}", field="verdict")
    if row.state != "reported":
        raise IllegalTransition(f"a {row.state.replace('_', ' ')} activity is not waiting for verification")
    cleaned = clean_text(note, 4000, "note")
    flagged = row.outside_boundary or row.impossible_travel
    if cleaned is None and (verdict != "verified" or flagged):
        reason = (
            "say why" if verdict != "verified" else "a flagged check-in needs a note saying why it stands"
        )
        raise InvalidInput(reason, field="note")
    row.state = VERDICTS[verdict]
    row.verification_note, row.verified_by, row.verified_at = cleaned, actor.principal, now
    await session.flush()
    await _record(session, actor, f"activity.{row.state}", row, note=cleaned)
    if row.state in {"verified", "rejected"}:
        event = f"activity.{row.kind}" if row.state == "verified" else "activity.rejected"
        earning = points.Earning(
            row.deputy_id, row.owner_principal, row.scope, event, "activity", row.id, now
        )
        await points.award(session, actor.principal, actor.tenant_id, earning)
    if row.owner_principal is not None:
        await notify(
            session,
            tenant_id=row.tenant_id,
            scope=row.scope,
            kind=f"activity.{row.state}",
            title=f"履职活动核实结果：{row.title}",
            body=cleaned or "",
            source=f"activity:{row.id}:{row.state}:{now.isoformat()}",
            recipient=row.owner_principal,
            payload={"activity": row.id},
        )
    return row


async def register(
    session: AsyncSession, actor: TenantContext, activity_id: int, topic: str | None, slot: str | None
) -> ActivityRegistration:
    """A resident registers for an announced reception day, ordering a topic or a time (点单)."""
    row = await repository.activity(session, actor.tenant_id, activity_id)
    if row is None or row.kind != "reception" or row.state != "planned":
        raise not_found("reception day")
    if topic is not None and topic not in row.topics:
        raise InvalidInput(f"the topics are: {', '.join(row.topics)}", field="topic")
    cleaned_slot = clean_text(slot, 32, "slot")
    if await repository.registration(session, actor.tenant_id, activity_id, actor.principal) is not None:
        raise Conflict("you are registered for this reception day already", field="id")
    registration = ActivityRegistration(
        tenant_id=actor.tenant_id,
        activity_id=row.id,
        scope=row.scope,
        owner_principal=actor.principal,
        topic=topic,
        slot=cleaned_slot,
    )
    session.add(registration)
    await session.flush()
    return registration


async def rate(
    session: AsyncSession, actor: TenantContext, activity_id: int, score: int, comment: str | None
) -> tuple[Activity, float]:
    """A participant's rating; an average below the city's bar opens a rectification item."""
    row = await repository.activity(session, actor.tenant_id, activity_id)
    if row is None or row.state not in ("reported", "verified"):
        raise not_found("activity")
    if row.owner_principal == actor.principal:
        raise NotAllowed("a deputy does not rate their own activity")
    if not 0 <= score <= 100:
        raise InvalidInput("score must be between 0 and 100", field="score")
    cleaned = clean_text(comment, 2000, "comment")
    if await repository.rated_by(session, actor.tenant_id, row.id, actor.principal):
        raise Conflict("you have rated this activity already", field="id")
    session.add(
        ActivityRating(
            tenant_id=actor.tenant_id,
            activity_id=row.id,
            scope=row.scope,
            owner_principal=actor.principal,
            score=score,
            comment=cleaned,
        )
    )
    await session.flush()
    _, mean = (await repository.ratings_of(session, actor.tenant_id, [row.id]))[row.id]
    bar = (await repository.duty_settings(session, actor.tenant_id)).satisfaction_bar
    if mean < bar:
        await open_item(
            session,
            actor,
            scope=row.scope,
            subject=f"activity:{row.id}",
            reason=f"满意度低于{bar}分的活动需进行整改 (average {mean:.1f})",
            deputy_id=row.deputy_id,
        )
    return row, mean
