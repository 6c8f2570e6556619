"""The deputies' beat job: the weekly warnings (services.deputies.warnings)."""

from __future__ import annotations

from datetime import date, datetime

from services import runtime
from services.celery_app import celery_app
from services.deputies.warnings import evaluate_all


@celery_app.task(name="deputies.evaluate_warnings")
def evaluate_warnings(week: str | None = None, now: str | None = None) -> dict[str, int]:
    """Evaluate every city's last complete week (or `week`, ISO date of any day in it) once per deputy.
    The beat sends it hourly: a week already evaluated costs one query per city."""
    day = date.fromisoformat(week) if week else None
    moment = datetime.fromisoformat(now) if now else None
    return dict(runtime.run(lambda: evaluate_all(runtime.database(), day, moment)))
