"""The Celery app. Celery drives time and fan-out only; the state of every workflow lives in PostgreSQL."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

# The longest a task may run; the broker's visibility timeout must exceed it, or Redis would hand a
# still-running task to a second worker. Both can be shortened (tests of a lost worker do).
TASK_TIME_LIMIT_SECONDS = int(os.environ.get("LIAISON_TASK_TIME_LIMIT", "300"))
VISIBILITY_TIMEOUT_SECONDS = int(os.environ.get("LIAISON_VISIBILITY_TIMEOUT", "3600"))
if not 0 < TASK_TIME_LIMIT_SECONDS < VISIBILITY_TIMEOUT_SECONDS:
    raise ValueError("LIAISON_VISIBILITY_TIMEOUT must exceed LIAISON_TASK_TIME_LIMIT (both seconds, above 0)")
# With a short visibility timeout, look for abandoned messages every second rather than every 100 s.
_RESTORE = (
    {"unacked_restore_interval": 1, "unacked_restore_throttle": 1} if VISIBILITY_TIMEOUT_SECONDS < 60 else {}
)

# Each domain's tasks module registers its tasks and its timer handlers; the worker imports them all.
TASK_MODULES = [
    "services.hierarchy.tasks",
    "services.outbox.tasks",
    "services.timers.tasks",
    "services.notifications.tasks",
    "services.requests.tasks",
    "services.deliberation.tasks",
    "services.mediation.tasks",
    "services.meetings.tasks",
]

celery_app = Celery("liaison", include=TASK_MODULES)

DURABLE_SETTINGS: dict[str, Any] = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "task_time_limit": TASK_TIME_LIMIT_SECONDS,
    "task_soft_time_limit": max(TASK_TIME_LIMIT_SECONDS - 30, TASK_TIME_LIMIT_SECONDS * 9 // 10),
    "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS, **_RESTORE},
    "result_backend_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS},
    "task_ignore_result": True,
    "task_serializer": "json",
    "accept_content": ["json"],
    "broker_connection_retry_on_startup": True,
    "worker_hijack_root_logger": False,
    "enable_utc": True,
}


celery_app.conf.update(DURABLE_SETTINGS)


def configure(broker_url: str, **overrides: Any) -> Celery:
    celery_app.conf.update(broker_url=broker_url, **overrides)
    return celery_app
