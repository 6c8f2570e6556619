from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models import Base, Ltree


class WorkflowEvent(Base):
    """One step of one workflow instance (a request, a meeting, a case): who, when, from what to what."""

    __tablename__ = "workflow_events"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        Index("ix_workflow_events_subject", "tenant_id", "workflow", "subject_id", "id"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(Ltree())
    workflow: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(Text)
    # Shown on public progress pages; staff-only notes are not.
    public: Mapped[bool] = mapped_column(Boolean, server_default="true")
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
