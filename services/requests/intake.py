"""One intake pipeline for every channel (app, hotline file, Open311): validate, locate, route, time, record.

Intake runs as the system (`system:intake`, the whole tenant): routing must see the tenant's whole grid,
which the resident who submits does not. The resident is recorded as the request's owner. What it answers
(the `Receipt`) is the new request's own: its ticket and codes, where it went, its public progress; the
only other requests it names are the possible duplicates, which the API filters by the caller's scope.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import h3
from geoalchemy2.shape import from_shape
from shapely import Point
from sqlalchemy.ext.asyncio import AsyncSession

from geo.assignment import locate
from geo.crs import parse_crs, to_wgs84
from services.errors import Conflict, InvalidInput
from services.requests import codes, repository
from services.requests.codes import Idempotency
from services.requests.config_cache import city_config
from services.requests.deadlines import schedule_deadlines
from services.requests.lifecycle import REQUEST, SUBMITTED
from services.requests.models import Request
from services.requests.notices import tell_assignee, tell_staff, tell_submitter
from services.requests.progress import PublicProgress, PublicStep, progress_of, public_progress
from services.requests.repository import DuplicateHint
from services.requests.routing import route
from services.workflow.service import record
from tenants.context import TenantContext, city_scope

CHANNELS = frozenset({"app", "hotline", "open311", "wechat", "visit"})
MAX_DESCRIPTION = 4000
MAX_PHOTOS = 9
# Heat maps aggregate hexagons from this resolution upwards (about 307 m² a hexagon).
H3_RESOLUTION = 12
INTAKE = "system:intake"


@dataclass(frozen=True)
class Submission:
    category: str
    description: str
    channel: str
    lon: float | None = None
    lat: float | None = None
    crs: str = "WGS84"
    address: str | None = None
    photo_urls: tuple[str, ...] = ()
    contact_name: str | None = None
    contact_phone: str | None = None
    contact_email: str | None = None
    external_id: str | None = None
    submitted_at: datetime | None = None
    owner_principal: str | None = None
    # A retried submission under the same key (and sender) answers the first receipt.
    idempotency: Idempotency | None = None
    # An anonymous submitter's receipt carries a rating code (signed-in residents rate as themselves).
    rating_code: bool = False

    def fingerprint(self) -> str:
        return codes.fingerprint(
            {
                "category": self.category,
                "description": self.description,
                "channel": self.channel,
                "point": [self.lon, self.lat, self.crs],
                "address": self.address,
                "photos": list(self.photo_urls),
                "contact": [self.contact_name, self.contact_phone, self.contact_email],
                "owner": self.owner_principal,
            }
        )


@dataclass(frozen=True)
class Receipt:
    request_id: int
    ticket: str
    state: str
    routed: bool
    created: bool
    duplicates: tuple[DuplicateHint, ...] = field(default=())
    # Shown once (and again to a retry with the same idempotency key); only their hashes are kept.
    check_code: str | None = None
    rating_code: str | None = None
    scope: str = ""
    progress: PublicProgress | None = None


def intake_context(tenant_id: int) -> TenantContext:
    return TenantContext.whole_tenant(tenant_id, INTAKE)


def _clean(value: str | None, limit: int, name: str) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) > limit:
        raise InvalidInput(f"{name} is longer than {limit} characters", field=name)
    return value or None


EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def _email(value: str | None) -> str | None:
    cleaned = _clean(value, 254, "contactEmail")
    if cleaned is not None and not EMAIL.fullmatch(cleaned):
        raise InvalidInput(f"{cleaned!r} is not an email address", field="contactEmail")
    return cleaned


def _point(submission: Submission) -> tuple[float, float] | None:
    if submission.lon is None and submission.lat is None:
        return None
    if submission.lon is None or submission.lat is None:
        raise InvalidInput("a location needs both longitude and latitude", field="location")
    lon, lat = float(submission.lon), float(submission.lat)
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise InvalidInput(f"({lon}, {lat}) is not a longitude/latitude pair", field="location")
    try:
        crs = parse_crs(submission.crs)
    except ValueError as error:
        raise InvalidInput(str(error), field="crs") from None
    return to_wgs84(lon, lat, crs)


def _validate(submission: Submission) -> tuple[str, str | None, tuple[float, float] | None]:
    description = (submission.description or "").strip()
    if not description:
        raise InvalidInput("describe the request", field="description")
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInput(
            f"the description is longer than {MAX_DESCRIPTION} characters", field="description"
        )
    if submission.channel not in CHANNELS:
        raise InvalidInput(f"unknown channel {submission.channel!r}", field="channel")
    if len(submission.photo_urls) > MAX_PHOTOS:
        raise InvalidInput(f"at most {MAX_PHOTOS} photos", field="photoUrls")
    for url in submission.photo_urls:
        if not url.startswith(("https://", "http://")) or len(url) > 1000:
            raise InvalidInput(f"{url[:80]!r} is not an http(s) URL", field="photoUrls")
    address = _clean(submission.address, 500, "address")
    point = _point(submission)
    if point is None and address is None:
        raise InvalidInput("give a location, an address, or both", field="location")
    return description, address, point


async def _replayed(
    session: AsyncSession, tenant_id: int, submission: Submission, seen: Request, idempotency: Idempotency
) -> Receipt:
    fingerprint = submission.fingerprint()
    if seen.submission_hash != fingerprint:
        raise Conflict(
            "this idempotency key was used for a different submission: use a new key", field="idempotencyKey"
        )
    check, rating = idempotency.codes(tenant_id, fingerprint)
    return Receipt(
        seen.id,
        seen.ticket,
        seen.state,
        seen.station_id is not None,
        created=False,
        check_code=check,
        rating_code=rating if seen.rating_code_hash else None,
        scope=seen.scope,
        progress=await progress_of(session, seen),
    )


def _outside_city(submission: Submission, margin: int) -> InvalidInput:
    return InvalidInput(
        f"({submission.lon}, {submission.lat}) ({submission.crs}) lies more than {margin} m outside the "
        "city's boundary: check the point and its coordinate system",
        field="location",
    )


async def submit(
    session: AsyncSession, tenant_id: int, submission: Submission, *, now: datetime | None = None
) -> Receipt:
    now = now or datetime.now(UTC)
    if submission.external_id:
        seen = await repository.by_external_id(session, tenant_id, submission.channel, submission.external_id)
        if seen is not None:
            return Receipt(seen.id, seen.ticket, seen.state, seen.station_id is not None, created=False)
    idempotency = submission.idempotency
    if idempotency is not None:
        if not codes.valid_key(idempotency.key):
            raise InvalidInput(
                "an idempotency key is 16 to 100 letters, digits or _.:- (a UUID, say)",
                field="idempotencyKey",
            )
        seen = await repository.by_idempotency_key(session, tenant_id, idempotency.key_hash)
        if seen is not None:
            return await _replayed(session, tenant_id, submission, seen, idempotency)
    description, address, point = _validate(submission)
    config = await city_config(session, tenant_id)
    category = config.categories.get(submission.category)
    if category is None:
        raise InvalidInput(f"there is no category {submission.category!r}", field="category")
    settings = config.settings
    submitted_at = submission.submitted_at or now
    if submitted_at.tzinfo is None:
        raise InvalidInput("the submission time needs a time zone", field="submittedAt")

    placement = None
    if point is not None:
        # Routed by the boundaries in force now, when it enters the system (a hotline file may be older).
        placement = (await locate(session, tenant_id, point[0], point[1], now)).placement
        # Outside every cell: kept for manual routing if it lies in the city, refused if far outside it.
        margin = settings.city_margin_meters
        if placement is None and not await repository.near_city(session, tenant_id, *point, margin, now):
            raise _outside_city(submission, margin)
    scope = placement.station.scope if placement is not None else city_scope(tenant_id)
    routed_to = await route(session, tenant_id, category.id, placement, settings)

    calendar = config.calendar
    fingerprint = submission.fingerprint()
    if idempotency is not None:
        check_code, rating_code = idempotency.codes(tenant_id, fingerprint)
    else:
        check_code, rating_code = codes.new_code(), codes.new_code()
    if not submission.rating_code:
        rating_code = ""
    request_id = await repository.next_request_id(session)
    local_day = calendar.local_day(submitted_at)
    request = Request(
        tenant_id=tenant_id,
        id=request_id,
        ticket=f"{local_day:%Y%m%d}-{request_id:06d}",
        scope=scope,
        category_id=category.id,
        description=description,
        channel=submission.channel,
        external_id=_clean(submission.external_id, 100, "externalId"),
        geom=from_shape(Point(point), srid=4326) if point is not None else None,
        address=address,
        photo_urls=list(submission.photo_urls),
        h3_cell=int(h3.latlng_to_cell(point[1], point[0], H3_RESOLUTION), 16) if point is not None else None,
        grid_cell_id=placement.grid_cell_id if placement else None,
        station_id=placement.station_id if placement else None,
        street_id=placement.street_id if placement else None,
        district_id=placement.district_id if placement else None,
        owner_principal=submission.owner_principal,
        contact_name=_clean(submission.contact_name, 100, "contactName"),
        contact_phone=_clean(submission.contact_phone, 32, "contactPhone"),
        contact_email=_email(submission.contact_email),
        check_code_hash=codes.digest(check_code),
        rating_code_hash=codes.digest(rating_code) if rating_code else None,
        idempotency_key_hash=idempotency.key_hash if idempotency is not None else None,
        submission_hash=fingerprint if idempotency is not None else None,
        state=SUBMITTED,
        level=routed_to.level,
        responsible=routed_to.responsible,
        assignee=routed_to.assignee,
        department=routed_to.department,
        submitted_at=submitted_at,
        response_due_at=calendar.deadline(submitted_at, category.response_days),
        resolution_due_at=calendar.deadline(submitted_at, category.resolution_days),
        updated_at=now,
    )
    session.add(request)
    await session.flush()
    routed = placement is not None
    await schedule_deadlines(session, request, settings)
    await tell_staff(session, request, "request.submitted", f"新诉求 {request.ticket}", category.name)
    await tell_assignee(session, request, "submit")
    await tell_submitter(session, request, "submit", "诉求已收到")
    duplicates: tuple[DuplicateHint, ...] = ()
    if point is not None:
        duplicates = await repository.possible_duplicates(
            session,
            tenant_id,
            category_id=category.id,
            lon=point[0],
            lat=point[1],
            now=submitted_at,
            radius_meters=settings.duplicate_radius_meters,
            window_hours=settings.duplicate_window_hours,
            exclude=request.id,
        )
    note = "已收到，等待受理" if routed else "已收到；位置不在任何网格内，等待人工分派"
    # Last: appending to the audit chain locks the tenant's chain head until the commit.
    await record(
        session,
        REQUEST,
        request,
        "submit",
        from_state=None,
        actor=submission.owner_principal or f"channel:{submission.channel}",
        note=note,
        payload={"channel": submission.channel, "routed": routed, "responsible": routed_to.responsible},
        at=now,
    )
    station = placement.station.name if placement is not None else None
    progress = public_progress(request, category.name, station, (PublicStep(now, "submit", SUBMITTED, note),))
    return Receipt(
        request.id,
        request.ticket,
        request.state,
        routed,
        created=True,
        duplicates=duplicates,
        check_code=check_code,
        rating_code=rating_code or None,
        scope=scope,
        progress=progress,
    )
