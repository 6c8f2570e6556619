"""The outbox row is the truth until the task's effect is recorded: the consumer marks it done in the
transaction of its effect, the relay sends again what was sent but is not done, gives up after a bound
and leaves the row dead for operators, and a webhook retrying on its own keeps its row open until the
delivery is settled. Real broker, real worker, real HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import redis

from deploy.seed import seed_synthetic
from deploy.settings import Settings
from services.celery_app import celery_app
from services.notifications import webhooks
from services.notifications.webhooks import EndpointSpec
from services.outbox.service import enqueue, mark_done, relay_tenant, tenants_with_unsent
from services.unit_of_work import UnitOfWork, unit_of_work
from tenants.db import Database
from tests.deploy.conftest import liaison
from tests.helpers import TenantInfo, process_env, wait_for
from tests.services.test_notifications_channels import Receiver, send_notice, serve, system

PROBE_QUEUE = "outbox-done-probe"
NOW = timedelta(0)


def probe_publisher(task: str, kwargs: dict[str, Any], task_id: str) -> None:
    """Publish through the real broker to a queue no worker listens on."""
    celery_app.send_task(task, kwargs=kwargs, task_id=task_id, queue=PROBE_QUEUE)


def queued_ids(settings: Settings) -> list[str]:
    client = redis.Redis.from_url(settings.celery_broker_url)
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange(PROBE_QUEUE, 0, -1)]


def row(owner_dsn: str, tenant_id: int, outbox_id: int) -> dict[str, Any]:
    with psycopg.connect(owner_dsn) as conn:
        found = conn.execute(
            "SELECT attempts, sent_at, done_at, dead_at, last_error, sent_at > now() AS due_later"
            " FROM outbox WHERE tenant_id = %s AND id = %s",
            (tenant_id, outbox_id),
        ).fetchone()
    assert found is not None
    return dict(
        zip(("attempts", "sent_at", "done_at", "dead_at", "last_error", "due_later"), found, strict=True)
    )


def cli_env(settings: Settings) -> dict[str, str]:
    return process_env(
        settings.database_url, settings.celery_broker_url, APP_DATABASE_URL=settings.app_url, COLUMNS="250"
    )


@pytest.fixture(scope="module")
async def lonely(database: Database) -> TenantInfo:
    """A tenant of this module alone: its relay passes see only this module's rows."""
    result = await seed_synthetic(database, "outboxdone", districts=1, streets=1, stations=1, seed=3)
    return TenantInfo(code="outboxdone", tenant_id=result.tenant_id)


@pytest.fixture
def probe_queue(settings: Settings) -> None:
    redis.Redis.from_url(settings.celery_broker_url).delete(PROBE_QUEUE)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    yield from serve(Receiver())


async def test_sent_but_never_done_is_sent_again_until_the_bound_then_dead(
    database: Database, lonely: TenantInfo, settings: Settings, owner_dsn: str, probe_queue: None
) -> None:
    work = UnitOfWork(database, system(lonely), publisher=probe_publisher)
    session = await work.session()
    message = await enqueue(
        session, tenant_id=lonely.tenant_id, scope=lonely.scope, task="probe.lost", kwargs={"n": 1}
    )
    await work.commit()
    task_id = f"outbox-{lonely.tenant_id}-{message.id}"
    assert queued_ids(settings) == [task_id]
    first = row(owner_dsn, lonely.tenant_id, message.id)
    assert first["attempts"] == 1 and first["sent_at"] is not None and first["done_at"] is None

    # Handed to the broker and not done: the relay's tenant list has it, but it is not due yet.
    assert lonely.tenant_id in await tenants_with_unsent(database)
    assert await relay_tenant(database, lonely.tenant_id, grace=NOW, publisher=probe_publisher) == 0

    async def relay() -> int:
        return await relay_tenant(
            database,
            lonely.tenant_id,
            grace=NOW,
            republish_after=NOW,
            max_attempts=3,
            publisher=probe_publisher,
        )

    # Past the timeout it is sent again, with the same task id, until it has been sent three times.
    assert [await relay(), await relay()] == [1, 1]
    assert queued_ids(settings) == [task_id] * 3
    assert await relay() == 0
    dead = row(owner_dsn, lonely.tenant_id, message.id)
    assert dead["attempts"] == 3 and dead["dead_at"] is not None and dead["done_at"] is None
    assert dead["last_error"] == "not done after 3 publications"
    assert lonely.tenant_id not in await tenants_with_unsent(database)
    assert await relay() == 0 and len(queued_ids(settings)) == 3

    # Operators see it, and send it again.
    env = cli_env(settings)
    listed = await asyncio.to_thread(liaison, env, "outbox", "dead", "--tenant", lonely.code)
    assert listed.returncode == 1, listed.stderr
    assert "dead outbox tasks of outboxdone: 1" in listed.stdout
    line = next(line for line in listed.stdout.splitlines() if "probe.lost" in line)
    assert str(message.id) in line and "not done after 3 publications" in line
    retried = await asyncio.to_thread(
        liaison, env, "outbox", "retry", "--tenant", lonely.code, "--id", str(message.id)
    )
    assert retried.returncode == 0 and "1 dead task(s) will be sent again" in retried.stdout
    assert await relay() == 1 and len(queued_ids(settings)) == 4
    assert row(owner_dsn, lonely.tenant_id, message.id)["attempts"] == 1

    # Once the consumer marks it done, nobody sends it again, and the command lists nothing.
    async with unit_of_work(database, system(lonely)) as session:
        await mark_done(session, lonely.tenant_id, message.id)
    assert await relay() == 0 and len(queued_ids(settings)) == 4
    assert lonely.tenant_id not in await tenants_with_unsent(database)
    listed = await asyncio.to_thread(liaison, env, "outbox", "dead", "--tenant", lonely.code)
    assert listed.returncode == 0 and "dead outbox tasks of outboxdone: 0" in listed.stdout


async def test_a_broker_outage_is_not_an_attempt(
    database: Database, lonely: TenantInfo, owner_dsn: str
) -> None:
    def down(task: str, kwargs: dict[str, Any], task_id: str) -> None:
        raise ConnectionRefusedError("the broker is down")

    async with database.scoped(system(lonely)) as session:
        message = await enqueue(
            session, tenant_id=lonely.tenant_id, scope=lonely.scope, task="probe.outage", kwargs={}
        )
        session.info.clear()  # left to the relay
    for _ in range(4):
        assert await relay_tenant(database, lonely.tenant_id, grace=NOW, max_attempts=1, publisher=down) == 0
    waiting = row(owner_dsn, lonely.tenant_id, message.id)
    assert waiting["attempts"] == 0 and waiting["dead_at"] is None and waiting["sent_at"] is None
    assert waiting["last_error"] == "ConnectionRefusedError: the broker is down"
    async with unit_of_work(database, system(lonely)) as session:
        await mark_done(session, lonely.tenant_id, message.id)


async def test_the_consumer_marks_its_row_done_in_the_transaction_of_its_effect(
    database: Database, lonely: TenantInfo, owner_dsn: str, worker: subprocess.Popen[bytes]
) -> None:
    source = "outbox-done:notice:1"
    await send_notice(database, lonely, scope=lonely.scope, kind="test.done", title="t", source=source)

    def effect() -> tuple[Any, ...] | None:
        with psycopg.connect(owner_dsn) as conn:
            return conn.execute(
                "SELECT o.id, o.done_at, n.created_at, o.kwargs FROM outbox o JOIN notifications n"
                " ON n.tenant_id = o.tenant_id AND n.source = o.kwargs->>'source'"
                " WHERE o.tenant_id = %s AND o.kwargs->>'source' = %s",
                (lonely.tenant_id, source),
            ).fetchone()

    async def done() -> tuple[Any, ...]:
        found = await asyncio.to_thread(effect)
        return found if found is not None and found[1] is not None else ()

    outbox_id, done_at, created_at, kwargs = await wait_for(done)
    # now() is the transaction's start: the same instant for the notice and the row, one transaction.
    assert done_at == created_at

    # The same message delivered again finds its row done and changes nothing.
    celery_app.send_task(
        "notifications.send",
        task_id=f"outbox-{lonely.tenant_id}-{outbox_id}-again",
        kwargs={**kwargs, "tenant_id": lonely.tenant_id, "outbox_id": outbox_id},
    )
    marker = "outbox-done:notice:marker"
    await send_notice(database, lonely, scope=lonely.scope, kind="test.done", title="m", source=marker)

    def notices() -> int:
        with psycopg.connect(owner_dsn) as conn:
            found = conn.execute(
                "SELECT count(*) FROM notifications WHERE tenant_id = %s AND source LIKE 'outbox-done:%%'",
                (lonely.tenant_id,),
            ).fetchone()
        return int(found[0]) if found else 0

    async def marker_arrived() -> bool:
        return await asyncio.to_thread(notices) == 2  # one worker, FIFO: the duplicate ran before it

    await wait_for(marker_arrived)
    assert effect() == (outbox_id, done_at, created_at, kwargs)


async def test_a_failing_task_leaves_its_row_open_with_the_error(
    database: Database, lonely: TenantInfo, owner_dsn: str, worker: subprocess.Popen[bytes]
) -> None:
    async with unit_of_work(database, system(lonely)) as session:
        message = await enqueue(
            session,
            tenant_id=lonely.tenant_id,
            scope=lonely.scope,
            task="hierarchy.node_changed",
            kwargs={"action": "station.created", "level": "nowhere", "node_id": 1, "actor": "test"},
        )

    async def failed() -> dict[str, Any]:
        found = await asyncio.to_thread(row, owner_dsn, lonely.tenant_id, message.id)
        return found if found["last_error"] else {}

    failure = await wait_for(failed)
    assert failure["last_error"].startswith("ValueError: 'nowhere' is not a valid Level")
    assert failure["done_at"] is None and failure["dead_at"] is None and failure["attempts"] == 1
    async with unit_of_work(database, system(lonely)) as session:
        await mark_done(session, lonely.tenant_id, message.id)  # keep the relay of later tests quiet


async def test_a_retrying_webhook_keeps_its_row_open_until_the_delivery_is_settled(
    database: Database,
    lonely: TenantInfo,
    owner_dsn: str,
    worker: subprocess.Popen[bytes],
    receiver: Receiver,
) -> None:
    url = receiver.plan("/outbox-flaky", 500, 204)
    async with unit_of_work(database, system(lonely)) as session:
        spec = EndpointSpec(
            name="outbox-flaky", url=url, kinds=("test.retry",), max_attempts=3, backoff_seconds=2
        )
        endpoint, _ = await webhooks.create_endpoint(session, system(lonely), spec)
    await send_notice(database, lonely, scope=lonely.scope, kind="test.retry", title="r", source="retry:1")

    def webhook_row() -> tuple[int, str] | None:
        with psycopg.connect(owner_dsn) as conn:
            found = conn.execute(
                "SELECT o.id, d.status FROM outbox o JOIN webhook_deliveries d ON d.tenant_id = o.tenant_id"
                " AND d.id = (o.kwargs->>'delivery_id')::bigint"
                " WHERE o.tenant_id = %s AND o.task = 'notifications.webhook' AND d.endpoint_id = %s",
                (lonely.tenant_id, endpoint.id),
            ).fetchone()
        return (int(found[0]), str(found[1])) if found else None

    async def retrying() -> dict[str, Any]:
        found = await asyncio.to_thread(webhook_row)
        if found is None:
            return {}
        state = await asyncio.to_thread(row, owner_dsn, lonely.tenant_id, found[0])
        return state if state["due_later"] else {}

    # The first POST failed: the delivery is pending, its row open and due again when the retry is.
    pending = await wait_for(retrying)
    assert pending["done_at"] is None and pending["attempts"] == 1
    assert len(receiver.at("/outbox-flaky")) == 1

    async def settled() -> dict[str, Any]:
        found = await asyncio.to_thread(webhook_row)
        if found is None or found[1] != "delivered":
            return {}
        state = await asyncio.to_thread(row, owner_dsn, lonely.tenant_id, found[0])
        return state if state["done_at"] is not None else {}

    done = await wait_for(settled)
    assert done["attempts"] == 1 and len(receiver.at("/outbox-flaky")) == 2
    async with unit_of_work(database, system(lonely)) as session:
        await webhooks.disable_endpoint(session, system(lonely), endpoint.id)
