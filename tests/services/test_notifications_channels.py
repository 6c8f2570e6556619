"""The notification channels with the real worker and a real HTTP receiver on loopback: the inbox gets each
notice once, webhooks are signed, retried with back-off and end as dead letters, and a rolled-back
transaction sends nothing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from deploy.settings import Settings
from services.celery_app import celery_app
from services.notifications import webhooks
from services.notifications.dispatch import SEND_TASK, notify
from services.notifications.models import WebhookEndpoint
from services.notifications.webhooks import WEBHOOK_TASK, EndpointSpec, verify_signature
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tests.deploy.conftest import liaison
from tests.helpers import TenantInfo, process_env, select_rows, wait_for


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver on loopback: each path answers with its planned statuses in turn (the last
    one repeats; 200 when none is planned) and records every request."""

    port: int = 0
    plans: dict[str, list[int]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def plan(self, path: str, *statuses: int) -> str:
        with self.lock:
            self.plans[path] = list(statuses)
        return self.url(path)

    def answer(self, path: str) -> int:
        with self.lock:
            plan = self.plans.get(path, [200])
            return plan.pop(0) if len(plan) > 1 else plan[0]

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [each for each in self.received if each.path == path]


def serve(receiver: Receiver) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = receiver.answer(self.path)
            with receiver.lock:
                receiver.received.append(
                    Received(self.path, dict(self.headers.items()), body, time.monotonic())
                )
            answer = b"ok" if status < 300 else b"receiver says no"
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    yield from serve(Receiver())


def cli_env(settings: Settings) -> dict[str, str]:
    return process_env(settings.database_url, settings.celery_broker_url, COLUMNS="250")


def system(tenant: TenantInfo) -> TenantContext:
    return TenantContext.whole_tenant(tenant.tenant_id, "system:test")


EndpointFactory = Callable[..., Awaitable[tuple[WebhookEndpoint, str]]]


@pytest.fixture
async def endpoint(database: Database, alpha: TenantInfo) -> AsyncIterator[EndpointFactory]:
    """Creates endpoints in alpha; disables them afterwards, so later tests' notices never reach them."""
    made: list[int] = []

    async def create(
        name: str, url: str, kinds: tuple[str, ...], **options: Any
    ) -> tuple[WebhookEndpoint, str]:
        async with unit_of_work(database, system(alpha)) as session:
            spec = EndpointSpec(name=name, url=url, kinds=kinds, **options)
            created, secret = await webhooks.create_endpoint(session, system(alpha), spec)
        made.append(created.id)
        return created, secret

    yield create
    async with unit_of_work(database, system(alpha)) as session:
        for endpoint_id in made:
            await webhooks.disable_endpoint(session, system(alpha), endpoint_id)


async def send_notice(database: Database, tenant: TenantInfo, **notice: Any) -> None:
    async with unit_of_work(database, system(tenant)) as session:
        await notify(session, tenant_id=tenant.tenant_id, **notice)


def delivery(owner_dsn: str, tenant_id: int, endpoint_id: int) -> tuple[Any, ...] | None:
    found = select_rows(
        owner_dsn,
        "SELECT id, status, attempts, last_status, last_error, delivered_at, dead_at, source"
        " FROM webhook_deliveries WHERE tenant_id = %s AND endpoint_id = %s ORDER BY id",
        tenant_id,
        endpoint_id,
    )
    assert len(found) <= 1, found
    return found[0] if found else None


async def status_becomes(owner_dsn: str, tenant_id: int, endpoint_id: int, status: str) -> tuple[Any, ...]:
    async def probe() -> tuple[Any, ...]:
        found = await asyncio.to_thread(delivery, owner_dsn, tenant_id, endpoint_id)
        return found if found is not None and found[1] == status else ()

    return await wait_for(probe, within=60)


async def drained(
    database: Database, tenant: TenantInfo, receiver: Receiver, endpoint: EndpointFactory
) -> None:
    """Wait until the worker has worked through everything queued so far: a sentinel notice sent last
    reaches its own endpoint only after the tasks before it (one worker process, FIFO queue)."""
    path = f"/sentinel-{time.monotonic_ns()}"
    kind = f"test.sentinel.{time.monotonic_ns()}"
    await endpoint(path.strip("/"), receiver.plan(path, 200), (kind,))
    await send_notice(database, tenant, scope=tenant.scope, kind=kind, title="sentinel", source=path)

    async def arrived() -> bool:
        return bool(receiver.at(path))

    await wait_for(arrived, within=60)


@dataclass
class Hooks:
    """What a delivery test works with: alpha's notices and webhook endpoints, the receiver, the owner's
    view of the rows; the worker runs."""

    database: Database
    tenant: TenantInfo
    owner_dsn: str
    receiver: Receiver
    endpoint: EndpointFactory

    async def send(self, **notice: Any) -> None:
        await send_notice(self.database, self.tenant, **notice)

    async def drained(self) -> None:
        await drained(self.database, self.tenant, self.receiver, self.endpoint)

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return select_rows(self.owner_dsn, sql, *args)

    def delivery(self, endpoint_id: int) -> tuple[Any, ...] | None:
        return delivery(self.owner_dsn, self.tenant.tenant_id, endpoint_id)

    async def status_becomes(self, endpoint_id: int, status: str) -> tuple[Any, ...]:
        return await status_becomes(self.owner_dsn, self.tenant.tenant_id, endpoint_id, status)


@pytest.fixture
def hooks(
    database: Database,
    alpha: TenantInfo,
    owner_dsn: str,
    worker: subprocess.Popen[bytes],
    receiver: Receiver,
    endpoint: EndpointFactory,
) -> Hooks:
    return Hooks(database, alpha, owner_dsn, receiver, endpoint)


def test_the_tasks_are_registered_with_the_retrying_options() -> None:
    import services.notifications.tasks  # noqa: F401  (registers the tasks)

    for name in (SEND_TASK, WEBHOOK_TASK):
        task: Any = celery_app.tasks[name]
        assert OSError in task.autoretry_for and task.max_retries == 8


def test_backoff_doubles_and_is_capped() -> None:
    assert [webhooks.backoff(10, n) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert webhooks.backoff(10, 12) == webhooks.MAX_BACKOFF_SECONDS == 300


def test_verify_signature_refuses_what_was_not_signed() -> None:
    body = b'{"id":1}'
    header = webhooks.sign("whsec_x", "1700000000", body)
    assert verify_signature("whsec_x", "1700000000", body, header, now=1700000100)
    assert not verify_signature("whsec_y", "1700000000", body, header, now=1700000100)
    assert not verify_signature("whsec_x", "1700000001", body, header, now=1700000100)
    assert not verify_signature("whsec_x", "1700000000", body + b" ", header, now=1700000100)
    assert not verify_signature("whsec_x", "1700000000", body, header, now=1700009999)  # too old: replay
    assert not verify_signature("whsec_x", "soon", body, header)


async def test_a_notice_lands_in_its_inbox_and_each_endpoint_once_even_when_sent_twice(
    alpha: TenantInfo, hooks: Hooks
) -> None:
    created, _ = await hooks.endpoint("twice", hooks.receiver.plan("/twice", 200), ("test.twice",))
    notice = {
        "scope": alpha.scope,
        "kind": "test.twice",
        "title": "两次",
        "source": "test:twice:1",
        "recipient": "user:9001",
        "payload": {"n": 1},
    }
    # Asked for twice (two outbox messages), and the task delivered once more by hand.
    await hooks.send(**notice)
    await hooks.send(**notice)
    celery_app.send_task(
        SEND_TASK, kwargs={**notice, "body": "", "tenant_id": alpha.tenant_id, "outbox_id": 0}
    )
    await hooks.drained()

    inbox = hooks.rows(
        "SELECT owner_principal, scope::text, kind, payload FROM notifications"
        " WHERE tenant_id = %s AND source = %s",
        alpha.tenant_id,
        "test:twice:1",
    )
    assert inbox == [("user:9001", alpha.scope, "test.twice", {"n": 1})]
    assert hooks.rows(
        "SELECT count(*) FROM outbox WHERE tenant_id = %s AND task = %s AND kwargs->>'source' = %s",
        alpha.tenant_id,
        SEND_TASK,
        "test:twice:1",
    ) == [(2,)]
    settled = await hooks.status_becomes(created.id, "delivered")
    assert settled[2] == 1
    (sent,) = hooks.receiver.at("/twice")
    assert sent.json()["recipient"] == "user:9001"

    # A duplicate webhook task for a delivered delivery sends nothing.
    celery_app.send_task(
        WEBHOOK_TASK, kwargs={"tenant_id": alpha.tenant_id, "outbox_id": 0, "delivery_id": settled[0]}
    )
    await hooks.drained()
    assert len(hooks.receiver.at("/twice")) == 1
    assert hooks.delivery(created.id) == settled


async def test_the_webhook_is_signed_and_carries_the_notice(alpha: TenantInfo, hooks: Hooks) -> None:
    (district,) = hooks.rows(
        "SELECT scope::text FROM districts WHERE tenant_id = %s ORDER BY code LIMIT 1",
        alpha.tenant_id,
    )[0]
    created, secret = await hooks.endpoint(
        "signed", hooks.receiver.plan("/signed", 200), ("test.signed",), scope=district
    )
    assert secret.startswith("whsec_") and created.scope == district
    # Outside the endpoint's scope, or of another kind: not sent to it.
    await hooks.send(scope=alpha.scope, kind="test.signed", title="city", source="test:signed:city")
    await hooks.send(scope=district, kind="test.other", title="other", source="test:signed:other")
    await hooks.send(
        scope=f"{district}.s1",
        kind="test.signed",
        title="已签名",
        body="正文",
        source="test:signed:1",
        payload={"request_id": 42},
    )
    done = await hooks.status_becomes(created.id, "delivered")
    (request,) = hooks.receiver.at("/signed")
    headers = {name.lower(): value for name, value in request.headers.items()}
    timestamp = headers["x-liaison-timestamp"]
    assert headers["x-liaison-signature"].startswith("sha256=")
    assert verify_signature(secret, timestamp, request.body, headers["x-liaison-signature"])
    assert not verify_signature("whsec_wrong", timestamp, request.body, headers["x-liaison-signature"])
    assert headers["x-liaison-delivery"] == str(done[0])
    assert headers["content-type"] == "application/json"
    document = request.json()
    (notification_id,) = hooks.rows(
        "SELECT id FROM notifications WHERE tenant_id = %s AND source = %s",
        alpha.tenant_id,
        "test:signed:1",
    )[0]
    assert {k: v for k, v in document.items() if k != "created_at"} == {
        "id": notification_id,
        "kind": "test.signed",
        "title": "已签名",
        "body": "正文",
        "payload": {"request_id": 42},
        "source": "test:signed:1",
        "tenant": "alpha",
        "scope": f"{district}.s1",
        "recipient": None,
    }
    assert document["created_at"].endswith("+00:00")
    assert done[3] == 200 and done[5] is not None


async def test_a_receiver_failing_twice_gets_it_on_the_third_attempt(alpha: TenantInfo, hooks: Hooks) -> None:
    url = hooks.receiver.plan("/flaky", 500, 503, 204)
    created, _ = await hooks.endpoint("flaky", url, ("test.flaky",), max_attempts=5, backoff_seconds=1)
    await hooks.send(scope=alpha.scope, kind="test.flaky", title="flaky", source="test:flaky:1")
    done = await hooks.status_becomes(created.id, "delivered")
    assert done[2:5] == (3, 204, None)
    tries = hooks.receiver.at("/flaky")
    assert len(tries) == 3
    assert len({each.headers["X-Liaison-Delivery"] for each in tries}) == 1
    assert len({each.body for each in tries}) == 1
    # Back-off: 1 s after the first failure, 2 s after the second.
    assert tries[1].at - tries[0].at >= 0.9
    assert tries[2].at - tries[1].at >= 1.9


async def test_a_receiver_that_always_fails_ends_as_a_dead_letter(
    alpha: TenantInfo, settings: Settings, hooks: Hooks
) -> None:
    url = hooks.receiver.plan("/down", 502)
    created, _ = await hooks.endpoint("down", url, ("test.down",), max_attempts=3, backoff_seconds=1)
    await hooks.send(scope=alpha.scope, kind="test.down", title="down", source="test:down:1")
    dead = await hooks.status_becomes(created.id, "dead")
    assert dead[2:4] == (3, 502)
    assert dead[4].startswith("HTTP 502: receiver says no")
    assert dead[5] is None and dead[6] is not None
    assert len(hooks.receiver.at("/down")) == 3

    # A duplicate task for a dead letter sends nothing, and nothing more comes.
    celery_app.send_task(
        WEBHOOK_TASK, kwargs={"tenant_id": alpha.tenant_id, "outbox_id": 0, "delivery_id": dead[0]}
    )
    await hooks.drained()
    assert len(hooks.receiver.at("/down")) == 3
    assert hooks.delivery(created.id) == dead

    # Operators see it with `liaison webhook dead`.
    env = cli_env(settings)
    listed = await asyncio.to_thread(liaison, env, "webhook", "dead", "--tenant", "alpha")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if "test:down:1" in line)
    assert "down" in line and "502" in line and "HTTP 502" in line


async def test_a_disabled_endpoint_gets_nothing_more(alpha: TenantInfo, hooks: Hooks) -> None:
    created, _ = await hooks.endpoint("disabled", hooks.receiver.plan("/disabled", 200), ("test.disabled",))
    async with unit_of_work(hooks.database, system(alpha)) as session:
        await webhooks.disable_endpoint(session, system(alpha), created.id)
    await hooks.send(scope=alpha.scope, kind="test.disabled", title="x", source="test:disabled:1")
    await hooks.drained()
    assert hooks.receiver.at("/disabled") == []
    assert hooks.delivery(created.id) is None
    assert hooks.rows(
        "SELECT count(*) FROM notifications WHERE tenant_id = %s AND source = %s",
        alpha.tenant_id,
        "test:disabled:1",
    ) == [(1,)]


async def test_a_rolled_back_transaction_that_called_notify_sends_nothing(
    alpha: TenantInfo, hooks: Hooks
) -> None:
    await hooks.endpoint("rollback", hooks.receiver.plan("/rollback", 200), ("test.rollback",))

    class Abort(Exception):
        """Raised to roll the transaction back."""

    with pytest.raises(Abort):
        async with unit_of_work(hooks.database, system(alpha)) as session:
            await notify(
                session,
                tenant_id=alpha.tenant_id,
                scope=alpha.scope,
                kind="test.rollback",
                title="never",
                source="test:rollback:1",
            )
            raise Abort
    await hooks.drained()
    assert hooks.receiver.at("/rollback") == []
    for table in ("notifications", "webhook_deliveries"):
        assert hooks.rows(
            f"SELECT count(*) FROM {table} WHERE tenant_id = %s AND source = %s",
            alpha.tenant_id,
            "test:rollback:1",
        ) == [(0,)]


def add_webhook(env: dict[str, str], name: str, url: str, *kinds: str) -> subprocess.CompletedProcess[str]:
    """`liaison webhook add` of an endpoint of alpha's for notices of `kinds`."""
    kind_options = [option for kind in kinds for option in ("--kind", kind)]
    return liaison(env, "webhook", "add", "--tenant", "alpha", "--name", name, "--url", url, *kind_options)


async def test_the_webhook_command_adds_and_lists_endpoints(
    alpha: TenantInfo, settings: Settings, owner_dsn: str, database: Database
) -> None:
    env = cli_env(settings)
    kinds = ("request.assigned", "request.overdue")
    added = await asyncio.to_thread(add_webhook, env, "cli-hook", "https://example.org/hooks/liaison", *kinds)
    assert added.returncode == 0, added.stderr
    secret = added.stdout.strip()
    assert secret.startswith("whsec_") and len(secret) > 30
    assert "shown only once" in added.stderr
    stored = select_rows(
        owner_dsn,
        "SELECT secret, kinds, scope::text, active FROM webhook_endpoints WHERE tenant_id = %s AND name = %s",
        alpha.tenant_id,
        "cli-hook",
    )
    assert stored == [(secret, ["request.assigned", "request.overdue"], alpha.scope, True)]
    listed = await asyncio.to_thread(liaison, env, "webhook", "list", "--tenant", "alpha")
    assert listed.returncode == 0, listed.stderr
    assert "cli-hook" in listed.stdout and "https://example.org/hooks/liaison" in listed.stdout
    assert secret not in listed.stdout
    again = await asyncio.to_thread(add_webhook, env, "cli-hook", "https://example.org", "request.assigned")
    assert again.returncode == 2 and "an endpoint named 'cli-hook' exists already." in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and again.stdout == ""
    async with unit_of_work(database, system(alpha)) as session:
        (cli_hook,) = [e for e in await webhooks.endpoints(session, alpha.tenant_id) if e.name == "cli-hook"]
        await webhooks.disable_endpoint(session, system(alpha), cli_hook.id)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--tenant", "alpha", "--name", "bad", "--url", "ftp://example.org/x"], "--url: the url must be"),
        (["--tenant", "atlantis", "--name", "bad", "--url", "https://example.org"], "does not exist"),
        (["--tenant", "alpha", "--name", "bad", "--url", "https://example.org", "--scope", "NOPE"], "'NOPE'"),
        (["--tenant", "alpha", "--url", "https://example.org"], "Missing option '--name'"),
        (["--tenant", "alpha", "--name", " ", "--url", "https://example.org"], "the name must be"),
    ],
)
def test_bad_webhook_arguments_exit_2_with_one_sentence(
    settings: Settings, alpha: TenantInfo, args: list[str], says: str, owner_dsn: str
) -> None:
    done = liaison(cli_env(settings), "webhook", "add", *args)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stdout == ""
    assert select_rows(owner_dsn, "SELECT count(*) FROM webhook_endpoints WHERE name = 'bad'") == [(0,)]
