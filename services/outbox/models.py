from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models import Base, Ltree


class OutboxMessage(Base):
    """A task asked for inside a transaction; it reaches the broker only once that transaction commits,
    and the row stays the truth until the task marks it done in the transaction of its effect.

    `sent_at`: when the broker last got it (a task that schedules its own retry moves it to the retry's
    due time); `attempts`: how often it was handed to the broker; `dead_at`: when the relay gave up.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        # The relay's rows: never sent, or sent and not done.
        Index("ix_outbox_open", "tenant_id", "id", postgresql_where="done_at IS NULL AND dead_at IS NULL"),
        Index(
            "ix_outbox_dead", "tenant_id", "id", postgresql_where="dead_at IS NOT NULL AND done_at IS NULL"
        ),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(Ltree())
    task: Mapped[str] = mapped_column(String(200))
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dead_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
