"""The outbox with the real broker and a real worker: sent only after commit, never for a rollback,
sent once by competing relays, and handled idempotently by the worker."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from deploy.settings import Settings
from services.celery_app import (
    DURABLE_SETTINGS,
    OUTBOX_MAX_ATTEMPTS,
    OUTBOX_REPUBLISH_SECONDS,
    VISIBILITY_TIMEOUT_SECONDS,
    celery_app,
)
from services.outbox.models import OutboxMessage
from services.outbox.service import enqueue, relay_tenant
from services.unit_of_work import UnitOfWork, unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tests.helpers import Api, TenantInfo, wait_for

PROBE_QUEUE = "outbox-probe"


def probe_publisher(task: str, kwargs: dict[str, Any], task_id: str) -> None:
    """Publish through the real broker to a queue no worker listens on, so the test can count messages."""
    celery_app.send_task(task, kwargs=kwargs, task_id=task_id, queue=PROBE_QUEUE)


def queued(settings: Settings) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(settings.celery_broker_url)
    return [json.loads(raw) for raw in client.lrange(PROBE_QUEUE, 0, -1)]


def system(tenant: TenantInfo) -> TenantContext:
    return TenantContext.whole_tenant(tenant.tenant_id, "system:test")


async def probe_unit(database: Database, tenant: TenantInfo) -> tuple[UnitOfWork, AsyncSession]:
    """A unit of work of the tenant's system that publishes to the probe queue, and its session."""
    work = UnitOfWork(database, system(tenant), publisher=probe_publisher)
    return work, await work.session()


async def enqueue_for_city(
    session: AsyncSession, tenant: TenantInfo, task: str, kwargs: dict[str, Any]
) -> OutboxMessage:
    """An outbox message of the tenant's whole city asking for `task`."""
    return await enqueue(session, tenant_id=tenant.tenant_id, scope=tenant.scope, task=task, kwargs=kwargs)


@pytest.fixture
def probe_queue(settings: Settings) -> None:
    redis.Redis.from_url(settings.celery_broker_url).delete(PROBE_QUEUE)


def test_durability_settings_are_pinned() -> None:
    conf = celery_app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == VISIBILITY_TIMEOUT_SECONDS
    assert conf.result_backend_transport_options["visibility_timeout"] == VISIBILITY_TIMEOUT_SECONDS
    assert conf.task_time_limit < VISIBILITY_TIMEOUT_SECONDS
    assert DURABLE_SETTINGS["task_acks_late"] is True
    # A worker keeps reconnecting however long the broker is away, and lets a running task finish.
    assert conf.broker_connection_retry is True and conf.broker_connection_max_retries is None
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is False
    # The outbox sends again only what could not still be running, and gives up after a bound.
    assert conf.task_time_limit < OUTBOX_REPUBLISH_SECONDS and OUTBOX_MAX_ATTEMPTS >= 1
    import services.hierarchy.tasks  # noqa: F401  (registers the task)

    node_changed: Any = celery_app.tasks["hierarchy.node_changed"]
    assert DBAPIError in node_changed.autoretry_for and node_changed.max_retries == 8


async def notifications_from(owner_dsn: str, tenant_id: int, source: str) -> list[tuple[str, str]]:
    def read() -> list[tuple[str, str]]:
        with psycopg.connect(owner_dsn) as conn:
            return conn.execute(
                "SELECT kind, scope::text FROM notifications WHERE tenant_id = %s AND source = %s",
                (tenant_id, source),
            ).fetchall()

    return await asyncio.to_thread(read)


async def test_a_committed_change_reaches_the_worker(
    api: Api, alpha: TenantInfo, owner_dsn: str, worker: subprocess.Popen[bytes]
) -> None:
    admin = api.token(alpha, ["city_admin"])
    created = await api.gql(
        'mutation { createDistrict(input: {code: "OUTBOX1", name: "发件区"}) {'
        " ... on DistrictPayload { district { scope } } } }",
        token=admin,
    )
    scope = created["createDistrict"]["district"]["scope"]
    with psycopg.connect(owner_dsn) as conn:
        outbox_id, sent_at = conn.execute(
            "SELECT id, sent_at FROM outbox WHERE tenant_id = %s AND scope = %s::ltree",
            (alpha.tenant_id, scope),
        ).fetchone() or (None, None)
    assert outbox_id is not None and sent_at is not None

    async def delivered() -> list[tuple[str, str]]:
        return await notifications_from(owner_dsn, alpha.tenant_id, f"outbox:{outbox_id}")

    assert await wait_for(delivered) == [("district.created", alpha.scope)]

    # The same message delivered again (a redelivery) changes nothing.
    celery_app.send_task(
        "hierarchy.node_changed",
        task_id=f"outbox-{alpha.tenant_id}-{outbox_id}-again",
        kwargs={
            "tenant_id": alpha.tenant_id,
            "outbox_id": outbox_id,
            "action": "district.created",
            "level": "district",
            "node_id": int(scope.rsplit(".d", 1)[1]),
            "actor": "operator:test",
        },
    )
    await asyncio.sleep(1.5)
    assert await delivered() == [("district.created", alpha.scope)]


async def test_a_rolled_back_transaction_sends_nothing(
    database: Database, alpha: TenantInfo, settings: Settings, owner_dsn: str, probe_queue: None
) -> None:
    context = system(alpha)

    class Abort(Exception):
        """Raised to roll the transaction back."""

    with pytest.raises(Abort):
        async with unit_of_work(database, context) as session:
            await enqueue_for_city(session, alpha, "probe.never", {"n": 1})
            raise Abort
    with psycopg.connect(owner_dsn) as conn:
        rows = conn.execute("SELECT count(*) FROM outbox WHERE task = 'probe.never'").fetchone()
    assert rows == (0,)
    sent = await relay_tenant(database, alpha.tenant_id, grace=timedelta(0), publisher=probe_publisher)
    assert sent == 0
    assert queued(settings) == []


async def test_after_commit_exactly_one_message(
    database: Database, alpha: TenantInfo, settings: Settings, probe_queue: None
) -> None:
    work, session = await probe_unit(database, alpha)
    message = await enqueue_for_city(session, alpha, "probe.commit", {"n": 2})
    await session.flush()
    assert queued(settings) == []  # nothing before the commit
    await work.commit()
    (body,) = queued(settings)
    assert body["headers"]["id"] == f"outbox-{alpha.tenant_id}-{message.id}"
    assert body["headers"]["task"] == "probe.commit"
    # Marked sent: the relay has nothing left to send.
    assert await relay_tenant(database, alpha.tenant_id, grace=timedelta(0), publisher=probe_publisher) == 0
    assert len(queued(settings)) == 1


async def test_competing_relays_send_each_message_once(
    database: Database, beta: TenantInfo, settings: Settings, probe_queue: None
) -> None:
    context = system(beta)
    async with database.scoped(context) as session:
        for n in range(40):
            await enqueue_for_city(session, beta, "probe.many", {"n": n})
        session.info.clear()  # leave them all to the relays
    counts = await asyncio.gather(
        *(
            relay_tenant(database, beta.tenant_id, grace=timedelta(0), publisher=probe_publisher)
            for _ in range(4)
        )
    )
    assert sum(counts) == 40
    ids = [body["headers"]["id"] for body in queued(settings)]
    assert len(ids) == 40 and len(set(ids)) == 40
    async with database.scoped(context) as session:
        unsent = await session.scalar(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))
    assert unsent == 0


async def test_a_savepoint_rolled_back_takes_its_messages_with_it(
    database: Database, alpha: TenantInfo, settings: Settings, probe_queue: None
) -> None:
    from services.unit_of_work import atomic

    work, session = await probe_unit(database, alpha)
    await enqueue_for_city(session, alpha, "probe.kept", {})
    with pytest.raises(LookupError):
        async with atomic(session):
            await enqueue_for_city(session, alpha, "probe.undone", {})
            raise LookupError
    await work.commit()
    assert [body["headers"]["task"] for body in queued(settings)] == ["probe.kept"]
