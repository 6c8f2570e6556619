"""The Celery app as the worker and beat see it: `celery -A deploy.worker worker`."""

from __future__ import annotations

import sys

from deploy.runtime import configure_worker
from deploy.settings import UnsafeSettings, load

try:
    celery_app = configure_worker(load())
except UnsafeSettings as refused:  # one sentence, as `liaison worker` says it, not a traceback
    print(f"liaison: {refused}", file=sys.stderr)
    raise SystemExit(2) from None
# Only the process holding the beat lock schedules (deploy/beat.py), however many beats are started.
celery_app.conf.beat_scheduler = "deploy.beat:LockedScheduler"
celery_app.conf.beat_schedule = {
    "outbox-relay": {"task": "outbox.relay", "schedule": 15.0},
    "timers-sweep": {"task": "timers.sweep", "schedule": 30.0},
    # Weekly warnings: each city's last complete week, once per deputy; later runs find it done.
    "deputies-warnings": {"task": "deputies.evaluate_warnings", "schedule": 3600.0},
}
