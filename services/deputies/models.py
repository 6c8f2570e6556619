"""People's-congress deputies (人大代表): the city's skills vocabulary, the deputy record, the stations each
deputy is linked to (代表联系社区) and their volunteer team (一名代表+3-5名志愿者)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models import Base, Ltree

LEVELS = ("national", "municipal", "district")
# A type instance of its own: GeoAlchemy2 records a column's nullability on its type.
CHECKIN_POINT = Geometry(geometry_type="POINT", srid=4326, spatial_index=False, nullable=False)


class DeputySkill(Base):
    """One word of the city's skills vocabulary, and the request categories it serves (how a request's
    category is matched to a deputy's skills)."""

    __tablename__ = "deputy_skills"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        UniqueConstraint("tenant_id", "code"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(100))
    categories: Mapped[list[str]] = mapped_column(ARRAY(String(32)), server_default="{}")


class Deputy(Base):
    """A deputy. `scope` is the street, district or city that keeps the record (whose staff manage it);
    `principal` the user account the deputy signs in with, when they have one. Routing skips a deputy
    while `routing_suspended_at` is set (two lagging periods), until district staff lift it."""

    __tablename__ = "deputies"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        Index("ix_deputies_scope", "scope", postgresql_using="gist"),
        Index("ix_deputies_tenant_id_principal", "tenant_id", "principal"),
        CheckConstraint("level IN ('national', 'municipal', 'district')", name="level"),
        CheckConstraint("monthly_capacity >= 0", name="monthly_capacity"),
        CheckConstraint("term_end IS NULL OR term_end >= term_start", name="term"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(Ltree())
    name: Mapped[str] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(16))
    term_start: Mapped[date] = mapped_column(Date)
    term_end: Mapped[date | None] = mapped_column(Date)
    constituency: Mapped[str] = mapped_column(String(200), server_default="")
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(254))
    skills: Mapped[list[str]] = mapped_column(ARRAY(String(40)), server_default="{}")
    monthly_capacity: Mapped[int] = mapped_column(Integer, server_default="10")
    principal: Mapped[str | None] = mapped_column(String(100))
    synthetic: Mapped[bool] = mapped_column(Boolean, server_default="false")
    routing_suspended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DeputyStation(Base):
    """A deputy linked to a station; `scope` is the station's, so its staff see who serves them."""

    __tablename__ = "deputy_stations"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        ForeignKeyConstraint(
            ["tenant_id", "deputy_id"], ["deputies.tenant_id", "deputies.id"], ondelete="CASCADE"
        ),
        ForeignKeyConstraint(["tenant_id", "station_id"], ["stations.tenant_id", "stations.id"]),
        UniqueConstraint("tenant_id", "deputy_id", "station_id"),
        Index("ix_deputy_stations_scope", "scope", postgresql_using="gist"),
        Index("ix_deputy_stations_tenant_id_station_id", "tenant_id", "station_id"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    deputy_id: Mapped[int] = mapped_column(BigInteger)
    station_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(Ltree())
    linked_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DeputyVolunteer(Base):
    """A volunteer in a deputy's team, in the deputy's scope."""

    __tablename__ = "deputy_volunteers"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "deputy_id"], ["deputies.tenant_id", "deputies.id"], ondelete="CASCADE"
        ),
        Index("ix_deputy_volunteers_tenant_id_deputy_id", "tenant_id", "deputy_id"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    deputy_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(Ltree())
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(32))
    skills: Mapped[list[str]] = mapped_column(ARRAY(String(40)), server_default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


ACTIVITY_KINDS = (
    "visit",
    "reception",
    "policy_talk",
    "research",
    "problem_solved",
    "duty_report",
    "meeting",
    "deliberation",
    "mediation",
)


WARNING_LEVELS = (
    '[{"level": "red", "conditions": 3, "weeks": 4}, {"level": "yellow", "conditions": 2, "weeks": 2}, '
    '{"level": "blue", "conditions": 1, "weeks": 1}]'
)


class DutySettings(Base):
    """The city's knobs of duty work: how far ahead a reception day is announced, the fastest a deputy
    can travel between two check-ins, the slack around a station's boundary, and the satisfaction bar
    below which an activity needs rectification."""

    __tablename__ = "duty_settings"
    __table_args__ = (ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),)

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    announce_days: Mapped[int] = mapped_column(SmallInteger, server_default="3")
    max_travel_kmh: Mapped[int] = mapped_column(SmallInteger, server_default="60")
    boundary_margin_meters: Mapped[int] = mapped_column(Integer, server_default="50")
    satisfaction_bar: Mapped[int] = mapped_column(SmallInteger, server_default="80")
    # The warning rule (services.deputies.warnings): conditions' bars, the window they look back over,
    # the levels by conditions held and weeks lagging in a row, and the streak that suspends routing.
    warning_min_activities: Mapped[int] = mapped_column(SmallInteger, server_default="1")
    warning_resolution_bar: Mapped[int] = mapped_column(SmallInteger, server_default="80")
    warning_window_days: Mapped[int] = mapped_column(SmallInteger, server_default="90")
    warning_levels: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text(f"'{WARNING_LEVELS}'::jsonb")
    )
    suspend_after_weeks: Mapped[int] = mapped_column(SmallInteger, server_default="2")


class Activity(Base):
    """A duty activity (履职活动) of a deputy at a station: planned (a reception day announced ahead),
    reported with its evidence, then verified, rejected or sent back for more by street staff. Only
    verified activities count. `owner_principal` is the deputy's account, which reads it anywhere."""

    __tablename__ = "activities"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        ForeignKeyConstraint(["tenant_id", "deputy_id"], ["deputies.tenant_id", "deputies.id"]),
        ForeignKeyConstraint(["tenant_id", "station_id"], ["stations.tenant_id", "stations.id"]),
        ForeignKeyConstraint(["tenant_id", "request_id"], ["requests.tenant_id", "requests.id"]),
        ForeignKeyConstraint(["tenant_id", "match_id"], ["matches.tenant_id", "matches.id"]),
        Index("ix_activities_scope", "scope", postgresql_using="gist"),
        Index("ix_activities_tenant_id_deputy_id_starts_at", "tenant_id", "deputy_id", "starts_at"),
        Index("ix_activities_tenant_id_owner_principal", "tenant_id", "owner_principal"),
        CheckConstraint(f"kind IN ({', '.join(repr(k) for k in ACTIVITY_KINDS)})", name="kind"),
        CheckConstraint(
            "state IN ('planned', 'reported', 'verified', 'rejected', 'more_requested')", name="state"
        ),
        CheckConstraint("households_visited >= 0 AND attendees >= 0", name="counts"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(Ltree())
    deputy_id: Mapped[int] = mapped_column(BigInteger)
    station_id: Mapped[int] = mapped_column(BigInteger)
    owner_principal: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200))
    topics: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    households_visited: Mapped[int] = mapped_column(Integer, server_default="0")
    request_id: Mapped[int | None] = mapped_column(BigInteger)
    match_id: Mapped[int | None] = mapped_column(BigInteger)
    # The meeting, deliberation or mediation case it was part of ("meeting:12"), linked, not re-entered.
    linked: Mapped[str | None] = mapped_column(String(64))
    photo_urls: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    minutes: Mapped[str] = mapped_column(Text, server_default="")
    attendees: Mapped[int] = mapped_column(Integer, server_default="0")
    state: Mapped[str] = mapped_column(String(16))
    verification_note: Mapped[str | None] = mapped_column(Text)
    verified_by: Mapped[str | None] = mapped_column(String(100))
    outside_boundary: Mapped[bool] = mapped_column(Boolean, server_default="false")
    impossible_travel: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_by: Mapped[str] = mapped_column(String(100))
    synthetic: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    reported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def _activity_child() -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["tenant_id", "activity_id"], ["activities.tenant_id", "activities.id"], ondelete="CASCADE"
    )


class ActivityCheckin(Base):
    """A check-in from the deputy's phone (converted to WGS84), with what the server found: how far
    outside the station's boundary it lies, and the speed from the deputy's previous check-in."""

    __tablename__ = "activity_checkins"
    __table_args__ = (
        _activity_child(),
        Index("ix_activity_checkins_scope", "scope", postgresql_using="gist"),
        Index(
            "ix_activity_checkins_tenant_id_deputy_id_checked_in_at",
            "tenant_id",
            "deputy_id",
            "checked_in_at",
        ),
        Index("ix_activity_checkins_tenant_id_activity_id", "tenant_id", "activity_id"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    activity_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(Ltree())
    deputy_id: Mapped[int] = mapped_column(BigInteger)
    owner_principal: Mapped[str | None] = mapped_column(String(100))
    checked_in_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    geom: Mapped[WKBElement] = mapped_column(CHECKIN_POINT)
    crs: Mapped[str] = mapped_column(String(8))
    outside_meters: Mapped[float | None] = mapped_column(Float)
    speed_kmh: Mapped[float | None] = mapped_column(Float)
    outside_boundary: Mapped[bool] = mapped_column(Boolean)
    impossible_travel: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ActivityRegistration(Base):
    """A resident's registration for a reception day, with the topic or time they ordered (点单)."""

    __tablename__ = "activity_registrations"
    __table_args__ = (
        _activity_child(),
        UniqueConstraint("tenant_id", "activity_id", "owner_principal"),
        Index("ix_activity_registrations_tenant_id_owner_principal", "tenant_id", "owner_principal"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    activity_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(Ltree())
    owner_principal: Mapped[str] = mapped_column(String(100))
    topic: Mapped[str | None] = mapped_column(String(200))
    slot: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ActivityRating(Base):
    """A participant's rating of an activity (0-100), once each."""

    __tablename__ = "activity_ratings"
    __table_args__ = (
        _activity_child(),
        CheckConstraint("score BETWEEN 0 AND 100", name="score"),
        UniqueConstraint("tenant_id", "activity_id", "owner_principal"),
        Index("ix_activity_ratings_tenant_id_owner_principal", "tenant_id", "owner_principal"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    activity_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(Ltree())
    owner_principal: Mapped[str] = mapped_column(String(100))
    score: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class FiveOnesRule(Base):
    """One of the city's "five ones" (五个一): `required` verified activities of `kind` per `period`."""

    __tablename__ = "five_ones_rules"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        CheckConstraint("period IN ('month', 'quarter', 'half', 'year')", name="period"),
        CheckConstraint("required BETWEEN 0 AND 100", name="required"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    period: Mapped[str] = mapped_column(String(8))
    required: Mapped[int] = mapped_column(SmallInteger)


class PointRule(Base):
    """How many points an event earns (履职积分), from `effective_from` on (a day in the city); an event
    without a rule of the city's earns the default. Rules are never edited once an entry used them."""

    __tablename__ = "point_rules"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        UniqueConstraint("tenant_id", "event", "effective_from"),
        CheckConstraint("points BETWEEN -100 AND 100", name="points"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event: Mapped[str] = mapped_column(String(40))
    points: Mapped[int] = mapped_column(SmallInteger)
    effective_from: Mapped[date] = mapped_column(Date)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PointEntry(Base):
    """One entry of the append-only ledger: `points` a deputy earned (or lost) for `event`, pointing to what
    earned it (`source_kind`:`source_id`) and the rule it was counted by. A correction is an entry of its
    own pointing to the entry it corrects; nothing is ever changed or removed."""

    __tablename__ = "point_entries"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        ForeignKeyConstraint(["tenant_id", "deputy_id"], ["deputies.tenant_id", "deputies.id"]),
        ForeignKeyConstraint(["tenant_id", "rule_id"], ["point_rules.tenant_id", "point_rules.id"]),
        ForeignKeyConstraint(["tenant_id", "corrects_id"], ["point_entries.tenant_id", "point_entries.id"]),
        Index("ix_point_entries_scope", "scope", postgresql_using="gist"),
        Index("ix_point_entries_tenant_id_deputy_id_earned_at", "tenant_id", "deputy_id", "earned_at"),
        Index("ix_point_entries_tenant_id_owner_principal", "tenant_id", "owner_principal"),
        Index(
            "uq_point_entries_earned",
            "tenant_id",
            "deputy_id",
            "event",
            "source_kind",
            "source_id",
            unique=True,
            postgresql_where=text("corrects_id IS NULL"),
        ),
        CheckConstraint("(corrects_id IS NULL) = (event <> 'correction')", name="correction"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(Ltree())
    deputy_id: Mapped[int] = mapped_column(BigInteger)
    owner_principal: Mapped[str | None] = mapped_column(String(100))
    event: Mapped[str] = mapped_column(String(40))
    points: Mapped[int] = mapped_column(Integer)
    source_kind: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[int] = mapped_column(BigInteger)
    rule_id: Mapped[int | None] = mapped_column(BigInteger)
    corrects_id: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(Text)
    earned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


def _deputy_keys(table: str) -> tuple[Any, ...]:
    return (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        ForeignKeyConstraint(["tenant_id", "deputy_id"], ["deputies.tenant_id", "deputies.id"]),
        Index(f"ix_{table}_scope", "scope", postgresql_using="gist"),
        Index(f"ix_{table}_tenant_id_owner_principal", "tenant_id", "owner_principal"),
    )


class DeputyEvaluation(Base):
    """The weekly evaluation of one deputy: the conditions that held in the week starting `week_start`
    (a Monday in the city), the figures behind them, how many weeks in a row lagged, and the level."""

    __tablename__ = "deputy_evaluations"
    __table_args__ = (
        *_deputy_keys("deputy_evaluations"),
        UniqueConstraint("tenant_id", "deputy_id", "week_start"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(Ltree())
    deputy_id: Mapped[int] = mapped_column(BigInteger)
    owner_principal: Mapped[str | None] = mapped_column(String(100))
    week_start: Mapped[date] = mapped_column(Date)
    conditions: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    figures: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    streak: Mapped[int] = mapped_column(SmallInteger)
    level: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DeputyWarning(Base):
    """A warning (预警) of a deputy, from the first week it held to the last; acknowledged, given a
    rectification note, and closed by the first week the conditions clear. Closed ones are the history."""

    __tablename__ = "deputy_warnings"
    __table_args__ = (
        *_deputy_keys("deputy_warnings"),
        Index("ix_deputy_warnings_tenant_id_deputy_id", "tenant_id", "deputy_id"),
        Index(
            "uq_deputy_warnings_live",
            "tenant_id",
            "deputy_id",
            unique=True,
            postgresql_where=text("state <> 'closed'"),
        ),
        CheckConstraint("level IN ('blue', 'yellow', 'red')", name="level"),
        CheckConstraint("state IN ('open', 'acknowledged', 'closed')", name="state"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(Ltree())
    deputy_id: Mapped[int] = mapped_column(BigInteger)
    owner_principal: Mapped[str | None] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(8))
    conditions: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    first_week: Mapped[date] = mapped_column(Date)
    last_week: Mapped[date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16), server_default="open")
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    rectification_note: Mapped[str | None] = mapped_column(Text)
    noted_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    noted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
