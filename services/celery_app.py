"""The Celery app. Celery drives time and fan-out only; the state of every workflow lives in PostgreSQL."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from kombu.transport import redis as kombu_redis
from redis import exceptions as redis_errors

# The longest a task may run; the broker's visibility timeout must exceed it, or Redis would hand a
# still-running task to a second worker. Both can be shortened (tests of a lost worker do).
TASK_TIME_LIMIT_SECONDS = int(os.environ.get("LIAISON_TASK_TIME_LIMIT", "300"))
VISIBILITY_TIMEOUT_SECONDS = int(os.environ.get("LIAISON_VISIBILITY_TIMEOUT", "3600"))
if not 0 < TASK_TIME_LIMIT_SECONDS < VISIBILITY_TIMEOUT_SECONDS:
    raise ValueError("LIAISON_VISIBILITY_TIMEOUT must exceed LIAISON_TASK_TIME_LIMIT (both seconds, above 0)")
# The outbox sends a message again when its task has not marked its row done this long after the broker
# got it (services/outbox/service.py), and gives up after OUTBOX_MAX_ATTEMPTS publications. Longer than a
# task may run, so a task still running is not sent twice, and far above normal queue latency. Shorter
# than the visibility timeout on purpose: a message a dead worker had taken is recovered by the outbox
# first, and the copy Redis restores later finds its row done and changes nothing.
OUTBOX_REPUBLISH_SECONDS = int(os.environ.get("LIAISON_OUTBOX_REPUBLISH_AFTER", "600"))
OUTBOX_MAX_ATTEMPTS = int(os.environ.get("LIAISON_OUTBOX_MAX_ATTEMPTS", "5"))
if not TASK_TIME_LIMIT_SECONDS < OUTBOX_REPUBLISH_SECONDS:
    raise ValueError("LIAISON_OUTBOX_REPUBLISH_AFTER must exceed LIAISON_TASK_TIME_LIMIT (both seconds)")
if OUTBOX_MAX_ATTEMPTS < 1:
    raise ValueError("LIAISON_OUTBOX_MAX_ATTEMPTS must be at least 1")
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
    "services.deputies.tasks",
]

celery_app = Celery("liaison", include=TASK_MODULES)


class RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, failing as a lost connection when its connection is gone.

    On broker loss the worker collects its connection, which empties it (the transport's `client`, or
    the channel's `connection`, becomes None). A channel of that connection still in use, to ack a
    late-acked task that finished meanwhile or to give back its unacked messages when Celery 5.7 closes
    the connection a second time, then builds a new Redis client from it and fails with
    `AttributeError: 'NoneType' object has no attribute 'hostname'`. Celery takes that for a bug, not a
    connection error, and the worker exits. As a connection error, the ack is logged as lost (the
    message stays in the broker's unacked set, is handed out again after the visibility timeout, and
    finds its outbox row done) and the worker reconnects.
    """

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection is None or self.connection.client is None:
            raise redis_errors.ConnectionError("the broker connection was lost and closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]
        return params


class RedisTransport(kombu_redis.Transport):
    Channel = RedisChannel


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
    # A worker that loses the broker keeps trying, however long the outage, instead of exiting after
    # 100 attempts; a task running meanwhile finishes and records its effect (its late ack is lost, so
    # the broker hands the message out again, and the copy finds its outbox row done).
    "broker_connection_retry": True,
    "broker_connection_max_retries": None,
    "worker_cancel_long_running_tasks_on_connection_loss": False,
    "worker_hijack_root_logger": False,
    "enable_utc": True,
}


celery_app.conf.update(DURABLE_SETTINGS)


REDIS_SCHEMES = frozenset({"redis", "rediss"})
REDIS_TRANSPORT = "services.celery_app:RedisTransport"


def configure(broker_url: str, **overrides: Any) -> Celery:
    # Celery prefers CELERY_BROKER_URL from the environment to its own broker_url, but not to the read
    # and write URLs: naming those makes the URL given here the one used (the tests' broker is not the
    # one a developer's shell exports).
    if broker_url.split("://", 1)[0] in REDIS_SCHEMES:
        overrides = {"broker_transport": REDIS_TRANSPORT, **overrides}
    celery_app.conf.update(
        broker_url=broker_url, broker_read_url=broker_url, broker_write_url=broker_url, **overrides
    )
    return celery_app
