"""The double list (双清单): what residents need (demands), what deputies, departments, organisations and
enterprises can offer (resources, with the stations they serve), and the matches between them, which
become projects with an owner, a responsible unit and a deadline (需求-资源-项目-责任)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from geoalchemy2 import WKBElement
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

from services.requests.models import POINT
from tenants.models import Base, Ltree

DEMAND_KINDS = ("basic", "personalised")
URGENCIES = ("normal", "urgent", "critical")
SOURCES = ("request", "survey", "forum", "visit")
OWNER_KINDS = ("deputy", "department", "organisation", "enterprise")
OFFERS = ("skill", "service", "funding", "venue")
# A match holds a demand while proposed or accepted; closing it ends the project.
LIVE_MATCH_STATES = ("proposed", "accepted")


def _tenant_fk() -> ForeignKeyConstraint:
    return ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"])


def _parent_fk(column: str, parent: str, ondelete: str | None = None) -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["tenant_id", column], [f"{parent}.tenant_id", f"{parent}.id"], ondelete=ondelete
    )


class Demand(Base):
    """One item of a station's demand list (需求清单), from a request, a household survey, a residents'
    forum or a visit. `geom` is where it is, when known (else the station stands for it)."""

    __tablename__ = "demands"
    __table_args__ = (
        _tenant_fk(),
        _parent_fk("station_id", "stations"),
        _parent_fk("category_id", "request_categories"),
        _parent_fk("request_id", "requests"),
        Index("ix_demands_scope", "scope", postgresql_using="gist"),
        Index("ix_demands_tenant_id_state", "tenant_id", "state"),
        Index(
            "uq_demands_request",
            "tenant_id",
            "request_id",
            unique=True,
            postgresql_where=text("request_id IS NOT NULL"),
        ),
        CheckConstraint("kind IN ('basic', 'personalised')", name="kind"),
        CheckConstraint("households >= 0", name="households"),
        CheckConstraint("urgency IN ('normal', 'urgent', 'critical')", name="urgency"),
        CheckConstraint("source IN ('request', 'survey', 'forum', 'visit')", name="source"),
        CheckConstraint("state IN ('open', 'matched', 'closed')", name="state"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(Ltree())
    station_id: Mapped[int] = mapped_column(BigInteger)
    category_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(Text, server_default="")
    households: Mapped[int] = mapped_column(Integer, server_default="1")
    urgency: Mapped[str] = mapped_column(String(8), server_default="normal")
    source: Mapped[str] = mapped_column(String(8))
    request_id: Mapped[int | None] = mapped_column(BigInteger)
    geom: Mapped[WKBElement | None] = mapped_column(POINT)
    state: Mapped[str] = mapped_column(String(8), server_default="open")
    created_by: Mapped[str] = mapped_column(String(100))
    synthetic: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Resource(Base):
    """One item of the resource list (资源清单). `scope` is the street, district or city that keeps it;
    `owner_principal` the account that accepts or declines its matches (a deputy's, a department's)."""

    __tablename__ = "resources"
    __table_args__ = (
        _tenant_fk(),
        _parent_fk("deputy_id", "deputies"),
        Index("ix_resources_scope", "scope", postgresql_using="gist"),
        Index("ix_resources_tenant_id_deputy_id", "tenant_id", "deputy_id"),
        CheckConstraint(
            "owner_kind IN ('deputy', 'department', 'organisation', 'enterprise')", name="owner_kind"
        ),
        CheckConstraint("offer IN ('skill', 'service', 'funding', 'venue')", name="offer"),
        CheckConstraint("monthly_capacity >= 0", name="monthly_capacity"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(Ltree())
    name: Mapped[str] = mapped_column(String(200))
    owner_kind: Mapped[str] = mapped_column(String(16))
    offer: Mapped[str] = mapped_column(String(8))
    skills: Mapped[list[str]] = mapped_column(ARRAY(String(40)), server_default="{}")
    monthly_capacity: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text, server_default="")
    owner_principal: Mapped[str | None] = mapped_column(String(100))
    deputy_id: Mapped[int | None] = mapped_column(BigInteger)
    synthetic: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ResourceStation(Base):
    """A station a resource serves; `scope` is the station's."""

    __tablename__ = "resource_stations"
    __table_args__ = (
        _tenant_fk(),
        _parent_fk("resource_id", "resources", "CASCADE"),
        _parent_fk("station_id", "stations"),
        UniqueConstraint("tenant_id", "resource_id", "station_id"),
        Index("ix_resource_stations_scope", "scope", postgresql_using="gist"),
        Index("ix_resource_stations_tenant_id_station_id", "tenant_id", "station_id"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    resource_id: Mapped[int] = mapped_column(BigInteger)
    station_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(Ltree())


class MatchRun(Base):
    """One batch match over a territory: what it weighed and what it proposed, with the greedy total on
    the same candidates for comparison."""

    __tablename__ = "match_runs"
    __table_args__ = (_tenant_fk(), Index("ix_match_runs_scope", "scope", postgresql_using="gist"))

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(Ltree())
    started_by: Mapped[str] = mapped_column(String(100))
    demands: Mapped[int] = mapped_column(Integer)
    resources: Mapped[int] = mapped_column(Integer)
    candidates: Mapped[int] = mapped_column(Integer)
    matched: Mapped[int] = mapped_column(Integer)
    total_score: Mapped[float] = mapped_column(Float)
    greedy_score: Mapped[float] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Match(Base):
    """A demand matched to a resource, with the terms of its score. Proposed, then accepted (a project:
    owner, responsible unit, deadline) or declined with a reason; a project closes with its outcome and
    the residents' rating. `scope` is the demand's station; `owner_principal` the resource's owner."""

    __tablename__ = "matches"
    __table_args__ = (
        _tenant_fk(),
        _parent_fk("demand_id", "demands", "CASCADE"),
        _parent_fk("resource_id", "resources"),
        _parent_fk("run_id", "match_runs"),
        Index("ix_matches_scope", "scope", postgresql_using="gist"),
        Index("ix_matches_tenant_id_resource_id_created_at", "tenant_id", "resource_id", "created_at"),
        Index("ix_matches_tenant_id_owner_principal", "tenant_id", "owner_principal"),
        Index(
            "uq_matches_live",
            "tenant_id",
            "demand_id",
            unique=True,
            postgresql_where=text("state IN ('proposed', 'accepted')"),
        ),
        CheckConstraint("state IN ('proposed', 'accepted', 'declined', 'closed')", name="state"),
        CheckConstraint("rating IS NULL OR rating BETWEEN 0 AND 100", name="rating"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(Ltree())
    demand_id: Mapped[int] = mapped_column(BigInteger)
    resource_id: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[int | None] = mapped_column(BigInteger)
    owner_principal: Mapped[str | None] = mapped_column(String(100))
    score: Mapped[float] = mapped_column(Float)
    terms: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    state: Mapped[str] = mapped_column(String(16), server_default="proposed")
    reason: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    project_owner: Mapped[str | None] = mapped_column(String(100))
    responsible_unit: Mapped[str | None] = mapped_column(String(200))
    deadline: Mapped[date | None] = mapped_column(Date)
    outcome: Mapped[str | None] = mapped_column(Text)
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
