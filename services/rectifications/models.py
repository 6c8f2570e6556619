"""Rectification items (整改): one kind for whatever opens them (a poorly rated activity, a warning, later
findings and inspections), closed with a note only by staff of the item's scope."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models import Base, Ltree


class Rectification(Base):
    """An item to put right. `subject` names what opened it ("activity:12"); one open item per subject."""

    __tablename__ = "rectifications"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        ForeignKeyConstraint(["tenant_id", "deputy_id"], ["deputies.tenant_id", "deputies.id"]),
        Index("ix_rectifications_scope", "scope", postgresql_using="gist"),
        Index(
            "uq_rectifications_open",
            "tenant_id",
            "subject",
            unique=True,
            postgresql_where=text("state = 'open'"),
        ),
        CheckConstraint("state IN ('open', 'closed')", name="state"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(Ltree())
    subject: Mapped[str] = mapped_column(String(64))
    deputy_id: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(8), server_default="open")
    note: Mapped[str | None] = mapped_column(Text)
    closed_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
