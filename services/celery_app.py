"""The Celery app. Celery drives time and fan-out only; the state of every workflow lives in PostgreSQL."""

from __future__ import annotations

from typing import Any

from celery import Celery

# The longest a task may run; the broker's visibility timeout must exceed it, or Redis would hand a
# still-running task to a second worker.
TASK_TIME_LIMIT_SECONDS = 300
VISIBILITY_TIMEOUT_SECONDS = 3600

# Each domain's tasks module registers its tasks and its timer handlers; the worker imports them all.
TASK_MODULES = [
    "services.hierarchy.tasks",
    "services.outbox.tasks",
    "services.timers.tasks",
    "services.notifications.tasks",
    "services.requests.tasks",
    "services.deliberation.tasks",
    "services.mediation.tasks",
]

celery_app = Celery("liaison", include=TASK_MODULES)

DURABLE_SETTINGS: dict[str, Any] = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "task_time_limit": TASK_TIME_LIMIT_SECONDS,
    "task_soft_time_limit": TASK_TIME_LIMIT_SECONDS - 30,
    "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS},
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
