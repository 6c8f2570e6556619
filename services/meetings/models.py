"""Six-party joint meetings (六方联席会议): the meeting, its invitations, its action items and the log of the
notices it sent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
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
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models import Base, Ltree

MEETING_STATES = (
    "proposed",
    "inviting",
    "confirmed",
    "held",
    "minuted",
    "voted",
    "supervising",
    "closed",
    "cancelled",
)
PARTY_KINDS = (
    "deputy",
    "party_organisation",
    "residents_committee",
    "owners_committee",
    "social_organisation",
    "enterprise",
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Meeting(Base):
    """One six-party joint meeting of a station. `participant_principals` lists everyone invited, so a
    party outside the station's scope can read the meeting it is invited to (a policy clause on the
    array, no sub-query). `round` counts reschedules: timers and notices of an old round are void."""

    __tablename__ = "meetings"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "station_id"], ["stations.tenant_id", "stations.id"]),
        CheckConstraint(_in("state", MEETING_STATES), name="state"),
        CheckConstraint("min_kinds BETWEEN 1 AND 6", name="min_kinds"),
        CheckConstraint("pass_numerator > 0 AND pass_numerator <= pass_denominator", name="threshold"),
        CheckConstraint("char_length(topic) BETWEEN 1 AND 300", name="topic_length"),
        Index("ix_meetings_scope", "scope", postgresql_using="gist"),
        Index("ix_meetings_tenant_id_state", "tenant_id", "state"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(Ltree())
    station_id: Mapped[int] = mapped_column(BigInteger)
    topic: Mapped[str] = mapped_column(String(300))
    agenda: Mapped[str] = mapped_column(Text, server_default="")
    place: Mapped[str | None] = mapped_column(String(300))
    video_link: Mapped[str | None] = mapped_column(String(500))
    request_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), server_default="{}")
    proposed_times: Mapped[list[datetime]] = mapped_column(ARRAY(DateTime(timezone=True)))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reply_deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16))
    round: Mapped[int] = mapped_column(SmallInteger, server_default="1")
    # Quorum: every kind in required_kinds, and at least min_kinds kinds, have a confirmed participant.
    required_kinds: Mapped[list[str]] = mapped_column(ARRAY(String(32)))
    min_kinds: Mapped[int] = mapped_column(SmallInteger, server_default="6")
    represented_kinds: Mapped[list[str]] = mapped_column(ARRAY(String(32)), server_default="{}")
    participant_principals: Mapped[list[str]] = mapped_column(ARRAY(String(100)), server_default="{}")
    # The resolution passes when yes >= numerator/denominator of the votes cast and yes > no.
    pass_numerator: Mapped[int] = mapped_column(SmallInteger, server_default="1")
    pass_denominator: Mapped[int] = mapped_column(SmallInteger, server_default="2")
    minutes: Mapped[str | None] = mapped_column(Text)
    resolution: Mapped[str | None] = mapped_column(Text)
    votes_yes: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    votes_no: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    votes_abstain: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    passed: Mapped[bool | None] = mapped_column(Boolean)
    closing_report: Mapped[str | None] = mapped_column(Text)
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    organiser: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    held_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Invitation(Base):
    """One party invited to a meeting; `owner_principal` is the invitee, who may read it from anywhere."""

    __tablename__ = "meeting_invitations"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "meeting_id"], ["meetings.tenant_id", "meetings.id"]),
        UniqueConstraint("tenant_id", "meeting_id", "owner_principal"),
        CheckConstraint(_in("party_kind", PARTY_KINDS), name="party_kind"),
        CheckConstraint(_in("state", ("invited", "confirmed", "declined")), name="state"),
        CheckConstraint("vote IS NULL OR vote IN ('yes', 'no', 'abstain')", name="vote"),
        Index("ix_meeting_invitations_tenant_id_owner_principal", "tenant_id", "owner_principal"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    meeting_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(Ltree())
    party_kind: Mapped[str] = mapped_column(String(32))
    owner_principal: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16), server_default="invited")
    # The meeting round this invitation was last sent for.
    round: Mapped[int] = mapped_column(SmallInteger, server_default="1")
    substitute_for_id: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(Text)
    replied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attended: Mapped[bool | None] = mapped_column(Boolean)
    vote: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ActionItem(Base):
    """A task the meeting gave a party, supervised until done; `owner_principal` is the assignee."""

    __tablename__ = "meeting_actions"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "meeting_id"], ["meetings.tenant_id", "meetings.id"]),
        CheckConstraint(_in("party_kind", PARTY_KINDS), name="party_kind"),
        CheckConstraint(_in("state", ("open", "done")), name="state"),
        Index("ix_meeting_actions_tenant_id_meeting_id", "tenant_id", "meeting_id"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    meeting_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(Ltree())
    party_kind: Mapped[str] = mapped_column(String(32))
    owner_principal: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(300))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16), server_default="open")
    overdue: Mapped[bool] = mapped_column(Boolean, server_default="false")
    progress: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MeetingNotice(Base):
    """Every notice a meeting asked for, unique by `source`: the notice is put in the outbox only when its
    row is new, so a redelivered or duplicated task sends nothing twice. `created_at` is the start of
    the transaction that sent it (the benchmark's task-start clock)."""

    __tablename__ = "meeting_notices"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "meeting_id"], ["meetings.tenant_id", "meetings.id"]),
        UniqueConstraint("tenant_id", "source"),
        Index("ix_meeting_notices_tenant_id_meeting_id", "tenant_id", "meeting_id"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    meeting_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(Ltree())
    event_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
