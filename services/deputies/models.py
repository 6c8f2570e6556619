"""People's-congress deputies (人大代表): the city's skills vocabulary, the deputy record, the stations each
deputy is linked to (代表联系社区) and their volunteer team (一名代表+3-5名志愿者)."""

from __future__ import annotations

from datetime import date, datetime

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
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models import Base, Ltree

LEVELS = ("national", "municipal", "district")


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
