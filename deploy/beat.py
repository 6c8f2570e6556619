"""One beat, however many machines start one: a scheduler that sends only while it holds a PostgreSQL
advisory lock.

Why PostgreSQL and not a Redis lock with a TTL: the lock lives exactly as long as the dedicated
connection that took it. A beat that dies (SIGKILL, OOM, machine gone) loses its connection and the server
releases the lock at once (TCP keepalives bound the wait when a machine vanishes silently); there is no
TTL to tune against pauses, no renewal thread that can fall behind, and no clock to trust. The database is
also where every effect of a beat job is decided, so a beat that cannot reach it has nothing to schedule.

Each beat ticks as usual but, while another holds the lock, it only retries the lock every few seconds.
The holder checks its connection on every tick and stands down the moment it breaks. Its row in
`beat_leaders` counts ticks and sent jobs, so which process schedules can be read from the database.
The jobs themselves stay idempotent (SKIP LOCKED, keyed timers), so even a brief overlap during a network
partition sends nothing twice.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime
from typing import Any

import psycopg
from celery.beat import Scheduler
from sqlalchemy import BigInteger, DateTime, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from deploy.settings import load
from tenants.models import Base

log = logging.getLogger(__name__)

# pg_try_advisory_lock key: "liaison-grid beat" (any constant; advisory locks are per database).
LOCK_KEY = 0x4C47_4265_6174_0001
RETRY_SECONDS = float(os.environ.get("LIAISON_BEAT_LOCK_RETRY", "5"))
# A machine that vanishes without closing its socket is noticed by the server within about 25 s.
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


class BeatLeader(Base):
    """A beat process that has held the lock: who, since when, how many ticks and jobs it sent."""

    __tablename__ = "beat_leaders"

    holder: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_tick_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    ticks: Mapped[int] = mapped_column(BigInteger, server_default="0")
    sent: Mapped[int] = mapped_column(BigInteger, server_default="0")


def lock_dsn() -> str:
    url = load().app_url
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class LockedScheduler(Scheduler):
    """Celery's in-memory scheduler, gated by the advisory lock. (In memory: the jobs are short periodic
    sweeps, and several beats on one machine must not share a schedule file.)"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connection: psycopg.Connection[Any] | None = None
        self._leading = False
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._hold_lock():
            return min(RETRY_SECONDS, float(self.max_interval or RETRY_SECONDS))
        self._count("ticks")
        interval: float = super().tick(*args, **kwargs)
        return interval

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        result = super().apply_async(entry, producer, advance, **kwargs)
        self._count("sent")
        return result

    def close(self) -> None:
        self._drop()
        super().close()

    def _hold_lock(self) -> bool:
        if self._leading and self._connection is not None:
            try:
                self._connection.execute("SELECT 1")
                return True
            except psycopg.Error:
                log.warning("beat %s lost its lock connection; standing by", self.holder)
                self._drop()
        try:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(
                    lock_dsn(),
                    autocommit=True,
                    connect_timeout=5,
                    application_name="liaison-beat",
                    **KEEPALIVES,
                )
            row = self._connection.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        except psycopg.Error as error:
            log.warning("beat %s cannot reach the database (%s); standing by", self.holder, error)
            self._drop()
            return False
        if not (row and row[0]):
            return False
        self._leading = True
        self._connection.execute(
            "INSERT INTO beat_leaders (holder, host, pid) VALUES (%s, %s, %s) "
            "ON CONFLICT (holder) DO UPDATE SET acquired_at = now()",
            (self.holder, socket.gethostname(), os.getpid()),
        )
        log.info("beat %s holds the beat lock and schedules", self.holder)
        return True

    def _count(self, column: str) -> None:
        if self._connection is None:
            return
        try:
            self._connection.execute(
                f"UPDATE beat_leaders SET {column} = {column} + 1, last_tick_at = now() WHERE holder = %s",  # noqa: S608 (column is one of two literals)
                (self.holder,),
            )
        except psycopg.Error:
            log.warning("beat %s lost its lock connection; standing by", self.holder)
            self._drop()

    def _drop(self) -> None:
        self._leading = False
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()  # the server releases the advisory lock with the session
            except psycopg.Error:
                log.debug("closing the beat lock connection failed", exc_info=True)
