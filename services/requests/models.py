"""Work orders and what they are routed and timed by: categories, holidays, routing rules, settings."""

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
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models import Base, Ltree

POINT = Geometry(geometry_type="POINT", srid=4326, spatial_index=False)


class RequestCategory(Base):
    """A kind of need in the tenant's taxonomy, with its response and resolution deadlines (working days)."""

    __tablename__ = "request_categories"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        UniqueConstraint("tenant_id", "code"),
        CheckConstraint("kind IN ('basic', 'personalised')", name="kind"),
        CheckConstraint("response_days >= 0 AND resolution_days >= 1", name="deadlines"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    response_days: Mapped[int] = mapped_column(SmallInteger)
    resolution_days: Mapped[int] = mapped_column(SmallInteger)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Holiday(Base):
    """A day that breaks the Monday-to-Friday rule: an official holiday, or a make-up working day (调休)."""

    __tablename__ = "holidays"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        CheckConstraint("kind IN ('holiday', 'workday')", name="kind"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(100), server_default="")


class RequestSettings(Base):
    """Per-tenant knobs of the request workflow."""

    __tablename__ = "request_settings"
    __table_args__ = (ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),)

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64), server_default="Asia/Shanghai")
    # Satisfaction is out of 100; a rating below this reopens the request for rectification.
    rating_threshold: Mapped[int] = mapped_column(SmallInteger, server_default="80")
    duplicate_radius_meters: Mapped[int] = mapped_column(Integer, server_default="200")
    duplicate_window_hours: Mapped[int] = mapped_column(Integer, server_default="72")
    # Blue (due soon) when less than this is left before a deadline.
    due_soon_hours: Mapped[int] = mapped_column(Integer, server_default="24")
    # Working days an escalated request is given at its new level.
    escalation_days: Mapped[int] = mapped_column(SmallInteger, server_default="3")
    # Whether Open311 GETs without credentials list the tenant's requests (public fields only).
    open311_public: Mapped[bool] = mapped_column(Boolean, server_default="true")
    default_department: Mapped[str] = mapped_column(String(200), server_default="区职能部门")
    # A point farther than this outside the city's boundary (its districts' union) is refused.
    city_margin_meters: Mapped[int] = mapped_column(Integer, server_default="1000")


class RoutingRule(Base):
    """Who answers for a category in a territory: the station's liaison, a deputy or a department.

    The most specific rule wins: the deepest territory, then a rule for the category over one for all."""

    __tablename__ = "routing_rules"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        ForeignKeyConstraint(
            ["tenant_id", "category_id"], ["request_categories.tenant_id", "request_categories.id"]
        ),
        CheckConstraint("responsible IN ('station', 'deputy', 'department')", name="responsible"),
        Index("ix_routing_rules_lookup", "tenant_id", "category_id"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    category_id: Mapped[int | None] = mapped_column(BigInteger)
    # The territory the rule covers (a city, district, street or station path).
    scope: Mapped[str] = mapped_column(Ltree())
    responsible: Mapped[str] = mapped_column(String(16))
    department: Mapped[str | None] = mapped_column(String(200))
    assignee: Mapped[str | None] = mapped_column(String(100))


class Request(Base):
    """A resident's request (诉求) as a work order. `scope` is the station it was routed to (the city
    while it waits for manual routing); `owner_principal` is the resident who submitted it, who may read
    it wherever it lies."""

    __tablename__ = "requests"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        ForeignKeyConstraint(
            ["tenant_id", "category_id"], ["request_categories.tenant_id", "request_categories.id"]
        ),
        UniqueConstraint("tenant_id", "ticket"),
        Index(
            "uq_requests_external",
            "tenant_id",
            "channel",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
        Index("ix_requests_scope", "scope", postgresql_using="gist"),
        Index("ix_requests_geom", "geom", postgresql_using="gist"),
        Index("ix_requests_tenant_id_submitted_at", "tenant_id", "submitted_at"),
        Index("ix_requests_tenant_id_state", "tenant_id", "state"),
        Index("ix_requests_tenant_id_category_id_submitted_at", "tenant_id", "category_id", "submitted_at"),
        Index("ix_requests_tenant_id_owner_principal", "tenant_id", "owner_principal"),
        Index(
            "ix_requests_tenant_id_check_code_hash",
            "tenant_id",
            "check_code_hash",
            postgresql_where=text("check_code_hash IS NOT NULL"),
        ),
        Index(
            "uq_requests_idempotency",
            "tenant_id",
            "idempotency_key_hash",
            unique=True,
            postgresql_where=text("idempotency_key_hash IS NOT NULL"),
        ),
        CheckConstraint("char_length(description) <= 4000", name="description_length"),
        CheckConstraint("supervision IN ('none', 'blue', 'yellow', 'red')", name="supervision"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    ticket: Mapped[str] = mapped_column(String(24))
    scope: Mapped[str] = mapped_column(Ltree())
    category_id: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str | None] = mapped_column(String(100))
    # Where: a WGS84 point (converted from the input CRS), an address, or both.
    geom: Mapped[WKBElement | None] = mapped_column(POINT)
    address: Mapped[str | None] = mapped_column(String(500))
    photo_urls: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    h3_cell: Mapped[int | None] = mapped_column(BigInteger)
    grid_cell_id: Mapped[int | None] = mapped_column(BigInteger)
    station_id: Mapped[int | None] = mapped_column(BigInteger)
    street_id: Mapped[int | None] = mapped_column(BigInteger)
    district_id: Mapped[int | None] = mapped_column(BigInteger)
    # Personal data: never shown on public pages or Open311.
    owner_principal: Mapped[str | None] = mapped_column(String(100))
    contact_name: Mapped[str | None] = mapped_column(String(100))
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    contact_email: Mapped[str | None] = mapped_column(String(254))
    # SHA-256 of the receipt's codes, never the codes: the check code opens the public progress (and is
    # Open311's token), the rating code lets an anonymous submitter rate.
    check_code_hash: Mapped[str | None] = mapped_column(String(64))
    rating_code_hash: Mapped[str | None] = mapped_column(String(64))
    # SHA-256 of the client's idempotency key (with who sent it), and of what it submitted under it.
    idempotency_key_hash: Mapped[str | None] = mapped_column(String(64))
    submission_hash: Mapped[str | None] = mapped_column(String(64))

    state: Mapped[str] = mapped_column(String(16))
    # The level handling it: 0 community (station), 1 deputy, 2 department.
    level: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    responsible: Mapped[str] = mapped_column(String(16))
    assignee: Mapped[str | None] = mapped_column(String(100))
    department: Mapped[str | None] = mapped_column(String(200))
    # Colours come from deadlines only; escalations (by deadline, by hand, by a second bad rating) are
    # counted here.
    supervision: Mapped[str] = mapped_column(String(8), server_default="none")
    escalations: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    merged_into_id: Mapped[int | None] = mapped_column(BigInteger)
    # Each resolve starts a round; one rating per round.
    resolution_round: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    reopen_count: Mapped[int] = mapped_column(SmallInteger, server_default="0")

    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    response_due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolution_due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    responded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    overdue: Mapped[bool] = mapped_column(Boolean, server_default="false")
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    solved: Mapped[bool | None] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RequestRating(Base):
    """The submitter's verdict on one resolution: solved or not, and satisfaction out of 100, kept apart."""

    __tablename__ = "request_ratings"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "request_id"], ["requests.tenant_id", "requests.id"]),
        UniqueConstraint("tenant_id", "request_id", "resolution_round"),
        CheckConstraint("score BETWEEN 0 AND 100", name="score"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    request_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(Ltree())
    resolution_round: Mapped[int] = mapped_column(SmallInteger)
    score: Mapped[int] = mapped_column(SmallInteger)
    solved: Mapped[bool] = mapped_column(Boolean)
    comment: Mapped[str | None] = mapped_column(Text)
    rated_by: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RequestFollower(Base):
    """A submitter of a request merged into this one: told of its resolution, and may rate it. The row lies
    in the surviving request's scope, so its staff reach it and the follower reads their own."""

    __tablename__ = "request_followers"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "request_id"], ["requests.tenant_id", "requests.id"]),
        ForeignKeyConstraint(["tenant_id", "merged_id"], ["requests.tenant_id", "requests.id"]),
        UniqueConstraint("tenant_id", "request_id", "merged_id"),
        Index("ix_request_followers_tenant_id_merged_id", "tenant_id", "merged_id"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    request_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(Ltree())
    merged_id: Mapped[int] = mapped_column(BigInteger)
    owner_principal: Mapped[str | None] = mapped_column(String(100))
    # Where their notices go (an account, or phone:<digits>); personal data.
    recipient: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(Base):
    """An Open311 api_key: only its SHA-256 is stored; `scope` bounds what it can read."""

    __tablename__ = "api_keys"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        UniqueConstraint("tenant_id", "name"),
        UniqueConstraint("tenant_id", "key_hash"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(Ltree())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
