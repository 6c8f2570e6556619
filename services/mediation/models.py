"""Three-level mediation (三级调解): a dispute case, its parties, one row per level it reached (who mediated,
by when, the outcome and agreement), and the sessions held at each level."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models import Base, Ltree

CASE_TYPES = ("neighbours", "property_management", "family", "labour", "consumer", "other")


class MediationCase(Base):
    """A dispute. `scope` is the station; `owner_principal` the resident who brought it (if they have an
    account), who may follow it. `deadlines` holds each level's time limit: {"1": {"hours": 72}, "2":
    {"working_days": 10}, ...}."""

    __tablename__ = "mediation_cases"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        ForeignKeyConstraint(["tenant_id", "request_id"], ["requests.tenant_id", "requests.id"]),
        Index("ix_mediation_cases_scope", "scope", postgresql_using="gist"),
        Index("ix_mediation_cases_tenant_id_owner_principal", "tenant_id", "owner_principal"),
        CheckConstraint(
            "case_type IN ('neighbours', 'property_management', 'family', 'labour', 'consumer', 'other')",
            name="case_type",
        ),
        CheckConstraint("level BETWEEN 1 AND 3", name="level"),
        CheckConstraint("char_length(description) <= 4000", name="description_length"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(Ltree())
    case_type: Mapped[str] = mapped_column(String(24))
    description: Mapped[str] = mapped_column(Text)
    request_id: Mapped[int | None] = mapped_column(BigInteger)
    owner_principal: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16))
    level: Mapped[int] = mapped_column(SmallInteger, server_default="1")
    # Who mediates now: the community mediator (level 1), the deputy (2); departments at level 3.
    mediator: Mapped[str | None] = mapped_column(String(100))
    departments: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    deadlines: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    level_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    agreement: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(100))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MediationParty(Base):
    """A party to the dispute; `owner_principal` lets a party with an account read their own row."""

    __tablename__ = "mediation_parties"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "case_id"], ["mediation_cases.tenant_id", "mediation_cases.id"], ondelete="CASCADE"
        ),
        Index("ix_mediation_parties_tenant_id_case_id", "tenant_id", "case_id"),
        CheckConstraint("role IN ('applicant', 'respondent', 'other')", name="role"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    case_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(Ltree())
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    owner_principal: Mapped[str | None] = mapped_column(String(100))


class MediationLevel(Base):
    """One level a case reached. `outcome` is NULL while it runs, then agreement, failed or timeout;
    success rates are counted from these rows."""

    __tablename__ = "mediation_levels"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "case_id"], ["mediation_cases.tenant_id", "mediation_cases.id"], ondelete="CASCADE"
        ),
        UniqueConstraint("tenant_id", "case_id", "level"),
        Index("ix_mediation_levels_tenant_id_started_at", "tenant_id", "started_at"),
        CheckConstraint("level BETWEEN 1 AND 3", name="level"),
        CheckConstraint("outcome IN ('agreement', 'failed', 'timeout')", name="outcome"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    case_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(Ltree())
    level: Mapped[int] = mapped_column(SmallInteger)
    mediator: Mapped[str | None] = mapped_column(String(100))
    departments: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(String(16))
    agreement: Mapped[str | None] = mapped_column(Text)


class MediationSession(Base):
    """A sitting at one level: when, who took part, what was said."""

    __tablename__ = "mediation_sessions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "case_id"], ["mediation_cases.tenant_id", "mediation_cases.id"], ondelete="CASCADE"
        ),
        Index("ix_mediation_sessions_tenant_id_case_id", "tenant_id", "case_id"),
        CheckConstraint("level BETWEEN 1 AND 3", name="level"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    case_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(Ltree())
    level: Mapped[int] = mapped_column(SmallInteger)
    held_on: Mapped[date] = mapped_column(Date)
    participants: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    notes: Mapped[str] = mapped_column(Text, server_default="")
    recorded_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
