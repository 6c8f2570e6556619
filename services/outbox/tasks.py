from __future__ import annotations

from services import runtime
from services.celery_app import celery_app
from services.outbox.service import relay_all


@celery_app.task(name="outbox.relay")
def relay() -> int:
    """Beat job: send what a crash or a broker outage left unsent, and again what was sent but is not done
    after the timeout; give up on rows sent too often (dead, for `liaison outbox dead`)."""
    return runtime.run(lambda: relay_all(runtime.database()))
