"""Deliberation councils (议事会): a topic put to the residents of a scope, registration with capacity and a
waitlist, attendance, one ballot per attendee, the tally and the published result."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
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
)
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models import Base, Ltree

AGE_BANDS = ("under_30", "30_44", "45_59", "60_74", "75_plus")
TENURES = ("owner", "renter")
RESIDENCIES = ("long_term", "migrant_worker")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Deliberation(Base):
    """The topic and its rules. `scope` is the station or street whose residents it is put to; the tally
    columns are written once, when voting closes."""

    __tablename__ = "deliberations"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        Index("ix_deliberations_scope", "scope", postgresql_using="gist"),
        CheckConstraint("capacity >= 1", name="capacity"),
        CheckConstraint("quorum >= 1", name="quorum"),
        CheckConstraint(
            "approval_numerator >= 1 AND approval_numerator <= approval_denominator", name="approval"
        ),
        CheckConstraint("approval_base IN ('attendees', 'ballots')", name="approval_base"),
        CheckConstraint("capture_percent BETWEEN 1 AND 100", name="capture_percent"),
        CheckConstraint("registration_deadline <= voting_closes_at", name="timeline"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(Ltree())
    topic: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, server_default="")
    place: Mapped[str | None] = mapped_column(String(300))
    meeting_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    registration_deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    voting_closes_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    capacity: Mapped[int] = mapped_column(Integer)
    # The vote counts only when at least `quorum` registrants attended.
    quorum: Mapped[int] = mapped_column(Integer)
    # Passed when yes / base >= numerator / denominator (2/3: exactly two thirds passes).
    approval_numerator: Mapped[int] = mapped_column(SmallInteger)
    approval_denominator: Mapped[int] = mapped_column(SmallInteger)
    # The base of the share: every attendee (abstaining or silent ones count against), or ballots cast.
    approval_base: Mapped[str] = mapped_column(String(16), server_default="attendees")
    # The diversity report warns when one group's share exceeds this percentage ("elite capture").
    capture_percent: Mapped[int] = mapped_column(SmallInteger, server_default="60")
    state: Mapped[str] = mapped_column(String(16))
    attendees: Mapped[int | None] = mapped_column(Integer)
    yes_votes: Mapped[int | None] = mapped_column(Integer)
    no_votes: Mapped[int | None] = mapped_column(Integer)
    abstentions: Mapped[int | None] = mapped_column(Integer)
    quorum_met: Mapped[bool | None] = mapped_column(Boolean)
    passed: Mapped[bool | None] = mapped_column(Boolean)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    tallied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Registration(Base):
    """A resident's seat (or place on the waitlist), with the groups they declared.

    `scope` is the deliberation's, so its staff see every registration; `owner_principal` is the resident,
    whose own transaction (which sees no territory) may still read the row (Visibility.OWNED)."""

    __tablename__ = "deliberation_registrations"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "deliberation_id"], ["deliberations.tenant_id", "deliberations.id"]
        ),
        UniqueConstraint("tenant_id", "deliberation_id", "owner_principal"),
        Index("ix_deliberation_registrations_owner", "tenant_id", "owner_principal"),
        Index("ix_deliberation_registrations_queue", "tenant_id", "deliberation_id", "status", "queued_at"),
        CheckConstraint("status IN ('registered', 'waitlisted', 'cancelled')", name="status"),
        CheckConstraint(_in("age_band", AGE_BANDS), name="age_band"),
        CheckConstraint(_in("tenure", TENURES), name="tenure"),
        CheckConstraint(_in("residency", RESIDENCIES), name="residency"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    deliberation_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(Ltree())
    owner_principal: Mapped[str] = mapped_column(String(100))
    display_name: Mapped[str] = mapped_column(String(100))
    age_band: Mapped[str] = mapped_column(String(16))
    tenure: Mapped[str] = mapped_column(String(16))
    residency: Mapped[str] = mapped_column(String(16))
    retired_cadre: Mapped[bool] = mapped_column(Boolean, server_default="false")
    status: Mapped[str] = mapped_column(String(16))
    # Waitlist order: first come, first promoted (re-registering after a cancellation queues again).
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Ballot(Base):
    """One attendee's vote; the unique key makes a second ballot impossible."""

    __tablename__ = "deliberation_ballots"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "deliberation_id"], ["deliberations.tenant_id", "deliberations.id"]
        ),
        ForeignKeyConstraint(
            ["tenant_id", "registration_id"],
            ["deliberation_registrations.tenant_id", "deliberation_registrations.id"],
        ),
        UniqueConstraint("tenant_id", "deliberation_id", "registration_id"),
        CheckConstraint("choice IN ('yes', 'no', 'abstain')", name="choice"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    deliberation_id: Mapped[int] = mapped_column(BigInteger)
    registration_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(Ltree())
    owner_principal: Mapped[str] = mapped_column(String(100))
    choice: Mapped[str] = mapped_column(String(8))
    cast_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
