from __future__ import annotations

from datetime import datetime

from services import runtime
from services.celery_app import celery_app
from services.timers.service import sweep


@celery_app.task(name="timers.sweep")
def sweep_timers(now: str | None = None) -> dict[str, int]:
    """Beat job: fire due deadlines. `now` (ISO 8601) moves the clock, for tests and replays."""
    moment = datetime.fromisoformat(now) if now else None
    return dict(runtime.run(lambda: sweep(runtime.database(), moment)))
