"""Durability with real processes: a private Redis broker and worker processes of our own, killed and
restarted on purpose; a meeting's notices are counted in the database afterwards.

A task is stopped "in the middle" deterministically: `meetings.announce` first takes a share lock on its
meeting row, so the test holds that row FOR UPDATE, waits until the worker's backend is seen waiting for
it in pg_stat_activity, and only then kills what it means to kill.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
import redis
from celery import Celery
from kombu import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

import services.meetings.tasks  # noqa: F401  (registers the timer handlers, as the worker does)
from deploy.cli import worker_argv
from deploy.settings import REPO_ROOT, Settings
from services.celery_app import (
    DURABLE_SETTINGS,
    REDIS_TRANSPORT,
    TASK_TIME_LIMIT_SECONDS,
    VISIBILITY_TIMEOUT_SECONDS,
    RedisTransport,
    celery_app,
)
from services.meetings import service
from services.meetings.models import PARTY_KINDS
from services.meetings.service import Actor, NewAction, Party, Proposal
from services.notifications.dispatch import notify
from services.outbox.service import Publisher, relay_tenant
from services.timers.service import sweep_tenant
from tenants.db import Database
from tests.helpers import (
    MeetingEffects,
    commit_step,
    free_port,
    meeting_organiser,
    meeting_party,
    process_env,
    scalar,
    seed_stations,
    start_redis_server,
    wait_for,
)

T = TypeVar("T")
SHORT_VISIBILITY, SHORT_LIMIT = 6, 4


# --- real processes ---------------------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of this test module alone, on a free loopback port, persisting every write (AOF), so a
    stop and a start keep the queued messages as a production broker would."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = ("--appendonly", "yes", "--appendfsync", "always", "--save", "")
        self.process = start_redis_server(self.port, self.directory, *persistence)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: redis flushes and exits
            self.process.wait(timeout=15)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: gone at once; every write is in the AOF already (fsync always)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)
        self.process = None


def child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


class Workers:
    """Celery worker (and beat) processes this module started, each with its own environment and log."""

    def __init__(self, settings: Settings, directory: Path) -> None:
        self.settings = settings
        self.directory = directory
        self.started: list[subprocess.Popen[bytes]] = []

    def env(self, broker: str, name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        # application_name tells this process's database sessions apart in pg_stat_activity.
        url = make_url(self.settings.database_url).update_query_dict({"application_name": name})
        app_url = make_url(self.settings.app_url).update_query_dict({"application_name": name})
        # Nothing the caller's shell exports for Celery (it reads CELERY_* itself) or the app's database
        # reaches these processes: they use this module's broker and the run's database.
        return process_env(
            url.render_as_string(hide_password=False),
            broker,
            APP_DATABASE_URL=app_url.render_as_string(hide_password=False),
            **(extra or {}),
        )

    def log(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    def worker(
        self, broker: str, name: str, extra: dict[str, str] | None = None, argv: list[str] | None = None
    ) -> subprocess.Popen[bytes]:
        process = self.start_worker(broker, name, extra, argv)
        deadline = time.monotonic() + 60
        while not self.ready(name):
            if process.poll() is not None or time.monotonic() > deadline:
                log = self.log(name)
                raise RuntimeError(f"worker {name} did not start:\n{log.read_text() if log.exists() else ''}")
            time.sleep(0.1)
        return process

    def start_worker(
        self, broker: str, name: str, extra: dict[str, str] | None = None, argv: list[str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a worker without waiting for it (`argv`: the command up to its own flags)."""
        if argv is None:
            argv = [sys.executable, "-m", "celery", "-A", "deploy.worker", "worker", "--concurrency=1"]
            argv += ["--loglevel=info", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        argv = [*argv, f"--hostname={name}@%h", f"--logfile={self.log(name)}"]
        return self._start(argv, self.env(broker, name, extra))

    def ready(self, name: str) -> bool:
        log = self.log(name)
        return log.exists() and "ready." in log.read_text()

    def beat(self, broker: str, name: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "celery", "-A", "deploy.worker", "beat", "--loglevel=info"]
        argv += ["--max-interval=1", f"--logfile={self.log(name)}", f"--pidfile={self.directory / name}.pid"]
        return self._start(argv, self.env(broker, name, {"LIAISON_BEAT_LOCK_RETRY": "0.5"}))

    def _start(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, env=env, cwd=REPO_ROOT)
        self.started.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.terminate()
        for process in self.started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


# --- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def workers(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    started = Workers(settings, tmp_path_factory.mktemp("durability"))
    yield started
    started.stop_all()


@pytest.fixture(scope="module")
def steady(workers: Workers, broker: PrivateRedis) -> subprocess.Popen[bytes]:
    """A long-lived worker on the private broker."""
    return workers.worker(broker.url, "dur-steady")


class Town:
    def __init__(self, tenant_id: int, station_scope: str, station_id: int) -> None:
        self.tenant_id = tenant_id
        self.scope = station_scope
        self.station_id = station_id
        self.organiser = meeting_organiser(tenant_id, station_scope)

    def party(self, principal: str) -> Actor:
        return meeting_party(self.tenant_id, principal)


async def seeded(database: Database, owner_dsn: str, code: str) -> Town:
    info, ((station_id, scope),) = await seed_stations(
        database, owner_dsn, code, streets=1, stations=1, seed=5
    )
    return Town(info.tenant_id, scope, station_id)


@pytest.fixture(scope="module")
async def town(database: Database, owner_dsn: str) -> Town:
    return await seeded(database, owner_dsn, "durable")


@pytest.fixture(scope="module")
async def kill_town(database: Database, owner_dsn: str) -> Town:
    """A tenant of the kill test alone: its relay passes send nothing of the other tests."""
    return await seeded(database, owner_dsn, "killtown")


@pytest.fixture(scope="module")
async def clock_town(database: Database, owner_dsn: str) -> Town:
    """A tenant whose clock a test moves: only its own timers are swept."""
    return await seeded(database, owner_dsn, "clocktown")


# --- driving a meeting ------------------------------------------------------------------------------------


class Sent:
    """A publisher that sends to a given broker (or only remembers), failing fast when the broker is down."""

    def __init__(self, url: str | None) -> None:
        self.app = Celery("durability-probe", broker=url) if url else None
        if self.app is not None:  # a broker that is down fails the publish at once: the relay sends it later
            # Named as the write URL too, or an exported CELERY_BROKER_URL would win over `url`.
            self.app.conf.update(broker_write_url=url)
            self.app.conf.broker_connection_timeout = 1
            self.app.conf.broker_transport_options = {"max_retries": 0}
        self.messages: list[tuple[str, dict[str, Any], str]] = []

    def __call__(self, task: str, kwargs: dict[str, Any], task_id: str) -> None:
        if self.app is not None:
            self.app.send_task(task, kwargs=kwargs, task_id=task_id, retry=False)
        self.messages.append((task, kwargs, task_id))


async def step(
    database: Database, actor: Actor, publisher: Publisher, work: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """One transaction of `actor`, its outbox published by `publisher` after the commit."""
    return await commit_step(database, actor.context, publisher, work)


def proposal(town: Town, days: int = 5, **extra: Any) -> Proposal:
    start = datetime.now(UTC) + timedelta(days=days)
    return Proposal(
        station_id=town.station_id, topic="楼道堆物整治", proposed_times=[start], place="活动室", **extra
    )


def six(prefix: str) -> list[Party]:
    return [Party(kind, f"user:{prefix}{n}", f"{kind}-{n}") for n, kind in enumerate(PARTY_KINDS)]


async def proposed_and_invited(
    database: Database, town: Town, prefix: str, publisher: Publisher, days: int = 5
) -> tuple[int, list[Party]]:
    meeting = await step(
        database,
        town.organiser,
        publisher,
        lambda s: service.propose(s, town.organiser, proposal(town, days)),
    )
    invited = six(prefix)
    await step(
        database, town.organiser, publisher, lambda s: service.invite(s, town.organiser, meeting.id, invited)
    )
    return meeting.id, invited


async def invited_announce_held(
    database: Database, town: Town, prefix: str
) -> tuple[int, tuple[str, dict[str, Any], str]]:
    """A meeting proposed and its six parties invited, nothing published: its id, and the announce task
    (task, kwargs, task id) the invitation asked for."""
    held = Sent(None)
    meeting_id, _ = await proposed_and_invited(database, town, prefix, held)
    announces = [m for m in held.messages if m[0] == service.ANNOUNCE_TASK]
    return meeting_id, announces[-1]


@contextmanager
def meeting_locked(owner_dsn: str, tenant_id: int, meeting_id: int) -> Iterator[None]:
    """Hold the meeting row FOR UPDATE: `meetings.announce` waits for it at its first statement."""
    with psycopg.connect(owner_dsn) as conn:
        conn.execute(
            "SELECT id FROM meetings WHERE tenant_id = %s AND id = %s FOR UPDATE", (tenant_id, meeting_id)
        )
        yield
        conn.rollback()


async def blocked_backend(superuser_dsn: str, name: str, other_than: frozenset[int] = frozenset()) -> int:
    """The pid of a database session of process `name` waiting for a lock."""

    def probe() -> int:
        with psycopg.connect(superuser_dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
                (name,),
            ).fetchall()
        fresh = [int(r[0]) for r in rows if int(r[0]) not in other_than]
        return fresh[0] if fresh else 0

    return await wait_for(lambda: asyncio.to_thread(probe), within=30)


# --- the tests ----------------------------------------------------------------------------------------------


def test_durability_settings_are_pinned() -> None:
    conf = celery_app.conf
    celery_app.loader.import_default_modules()  # every task module the worker loads
    assert service.ANNOUNCE_TASK in celery_app.tasks and "notifications.send" in celery_app.tasks
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert DURABLE_SETTINGS["task_acks_late"] and DURABLE_SETTINGS["task_reject_on_worker_lost"]
    longest = max(
        [conf.task_time_limit, *(getattr(t, "time_limit", None) or 0 for t in celery_app.tasks.values())]
    )
    assert longest == TASK_TIME_LIMIT_SECONDS
    for options in (conf.broker_transport_options, conf.result_backend_transport_options):
        assert options["visibility_timeout"] == VISIBILITY_TIMEOUT_SECONDS > longest
    announce: Any = celery_app.tasks[service.ANNOUNCE_TASK]
    assert announce.acks_late and announce.max_retries == 8 and announce.retry_backoff_max <= 300


def test_compose_restarts_every_long_running_service() -> None:
    """What dies is started again: every service of deploy/compose.yaml but the one-shot migrate."""
    services: dict[str, str | None] = {}
    current: str | None = None
    lines = (REPO_ROOT / "deploy" / "compose.yaml").read_text().split("services:\n", 1)[1].splitlines()
    for line in lines:
        if re.fullmatch(r"  [a-z]+:", line):
            current = line.strip(" :")
            services[current] = None
        elif not line.startswith(" ") and line.strip():
            break  # the next top-level key (volumes)
        elif current and line.startswith("    restart:"):
            services[current] = line.split(":", 1)[1].strip().strip('"')
    assert set(services) == {"db", "redis", "migrate", "api", "worker", "beat"}
    assert services.pop("migrate") == "no"
    assert set(services.values()) == {"unless-stopped"}


def test_short_visibility_for_tests_keeps_the_order() -> None:
    """The env knobs shorten both, and refuse a visibility timeout that a task could outlive."""
    code = (
        "from services.celery_app import celery_app as a; c = a.conf; "
        "print(c.task_time_limit, c.broker_transport_options['visibility_timeout'], "
        "c.result_backend_transport_options['visibility_timeout'])"
    )

    def run(visibility: str, limit: str, republish: str = "600") -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "LIAISON_VISIBILITY_TIMEOUT": visibility,
            "LIAISON_TASK_TIME_LIMIT": limit,
            "LIAISON_OUTBOX_REPUBLISH_AFTER": republish,
        }
        return subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True
        )

    assert run("6", "4").stdout.split() == ["4", "6", "6"]
    refused = run("4", "4")
    assert refused.returncode != 0 and "must exceed" in refused.stderr
    # The outbox must not send again a task that may still be running.
    refused = run("3600", "300", republish="300")
    assert refused.returncode != 0 and "LIAISON_OUTBOX_REPUBLISH_AFTER must exceed" in refused.stderr


def test_a_channel_of_a_collected_connection_fails_as_a_lost_connection(
    broker: PrivateRedis, settings: Settings
) -> None:
    """The state a worker is in after a broker loss: the connection collected, a channel of it still
    used (a late ack, or its unacked messages given back). kombu's own Redis channel then raises
    AttributeError ('NoneType' object has no attribute 'hostname'), which ends the worker; ours raises
    a connection error, which the worker survives."""
    connection: Any = Connection(broker.url, transport=REDIS_TRANSPORT)
    assert isinstance(connection.transport, RedisTransport)
    channel: Any = connection.default_channel
    assert channel.client.ping()
    connection._default_channel = None  # the channel lives on without its connection, as in the worker
    connection._do_close_transport()  # what collect() does last: the transport's client is gone
    channel._pool = None  # and the channel's pool with its closed sockets
    with pytest.raises(connection.connection_errors, match="lost and closed"):
        channel.qos.restore_unacked()
    channel.connection = None  # a channel closed meanwhile
    with pytest.raises(connection.connection_errors, match="lost and closed"):
        channel.qos.restore_unacked()
    connection.release()
    assert celery_app.conf.broker_transport == REDIS_TRANSPORT  # what the app's Redis broker uses


async def test_pool_child_killed_mid_task(
    database: Database, town: Town, owner_dsn: str, settings: Settings, broker: PrivateRedis, workers: Workers
) -> None:
    worker = workers.worker(broker.url, "dur-child")
    meeting_id, (task, kwargs, task_id) = await invited_announce_held(database, town, "child")
    effects = MeetingEffects(owner_dsn, town.tenant_id, meeting_id)
    with meeting_locked(owner_dsn, town.tenant_id, meeting_id):
        Sent(broker.url)(task, kwargs, task_id)
        first = await blocked_backend(settings.database_url, "dur-child")
        (child,) = child_pids(worker.pid)
        os.kill(child, signal.SIGKILL)
        # Redelivered: a fresh pool child takes the same message and waits at the same point.
        second = await blocked_backend(settings.database_url, "dur-child", frozenset({first}))
        assert second != first and worker.poll() is None
        assert effects.notices() == 0
    await effects.settle(6)
    workers.stop(worker)
    log = workers.log("dur-child").read_text()
    assert "WorkerLostError" in log or "signal 9" in log
    assert log.count(f"{task_id}] succeeded") == 1


async def test_main_worker_killed_mid_task(
    database: Database, town: Town, owner_dsn: str, settings: Settings, broker: PrivateRedis, workers: Workers
) -> None:
    short = {"LIAISON_VISIBILITY_TIMEOUT": str(SHORT_VISIBILITY), "LIAISON_TASK_TIME_LIMIT": str(SHORT_LIMIT)}
    lost = workers.worker(broker.url, "dur-lost", short)
    meeting_id, (task, kwargs, task_id) = await invited_announce_held(database, town, "main")
    effects = MeetingEffects(owner_dsn, town.tenant_id, meeting_id)
    with meeting_locked(owner_dsn, town.tenant_id, meeting_id):
        Sent(broker.url)(task, kwargs, task_id)
        await blocked_backend(settings.database_url, "dur-lost")
        children = child_pids(lost.pid)
        os.kill(lost.pid, signal.SIGKILL)  # the main process: nobody will ever ack the message
        lost.wait(timeout=10)
        for child in children:  # and its machine is gone with it: nothing of it runs on
            with suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
    await asyncio.sleep(1.0)
    assert effects.notices() == 0
    started = time.monotonic()
    rescuer = workers.worker(broker.url, "dur-rescuer", short)
    await effects.settle(6, within=SHORT_VISIBILITY * 5)
    assert time.monotonic() - started < SHORT_VISIBILITY * 5
    workers.stop(rescuer)
    assert workers.log("dur-rescuer").read_text().count(f"{task_id}] succeeded") == 1


# --- workers killed right after publish ----------------------------------------------------------------

KILL_ROUNDS, NOTICES_PER_ROUND = 20, 3


def kill_with_children(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a worker and its pool: the machine is gone, nothing of it acks or gives anything back."""
    children = child_pids(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    for child in children:
        with suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def held_by_broker(url: str) -> tuple[set[str], set[str]]:
    """Task ids the broker still holds: (queued, taken by a worker and not acked)."""
    client = redis.Redis.from_url(url)
    queued = {json.loads(raw)["headers"]["id"] for raw in client.lrange("celery", 0, -1)}
    unacked = {json.loads(raw)[0]["headers"]["id"] for raw in client.hvals("unacked")}
    return queued, unacked


async def test_workers_killed_right_after_publish_lose_no_notice(
    database: Database, kill_town: Town, owner_dsn: str, broker: PrivateRedis, workers: Workers
) -> None:
    """Each round commits a step asking for three notices and SIGKILLs a worker right after they are
    published. Even rounds first freeze the idle workers (SIGSTOP), so the broker hands a message to one
    that never records it: the message is then in neither the queue nor the unacked set, as seen in
    production. Odd rounds kill a worker 0-25 ms after the publish, whatever it is doing. The relay
    sends again what is not done; every notice must then exist exactly once."""
    town, rng = kill_town, random.Random(20261203)
    fleet: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn() -> None:
        name = f"dur-kill-{len(workers.started)}"
        fleet.append((name, workers.start_worker(broker.url, name)))

    def live() -> list[tuple[str, subprocess.Popen[bytes]]]:
        return [(name, p) for name, p in fleet if p.poll() is None and workers.ready(name)]

    def open_rows() -> dict[str, int]:
        with psycopg.connect(owner_dsn) as conn:
            rows = conn.execute(
                "SELECT id, attempts FROM outbox WHERE tenant_id = %s AND done_at IS NULL",
                (town.tenant_id,),
            ).fetchall()
        return {f"outbox-{town.tenant_id}-{row[0]}": int(row[1]) for row in rows}

    async def idle_fleet() -> bool:
        queued, _ = await asyncio.to_thread(held_by_broker, broker.url)
        return not queued and bool(live())

    async def ask(session: AsyncSession, *, round_number: int) -> None:
        for k in range(NOTICES_PER_ROUND):
            await notify(
                session,
                tenant_id=town.tenant_id,
                scope=town.scope,
                kind="test.kill",
                title=f"通知 {round_number}.{k}",
                source=f"kill:{round_number}:{k}",
            )

    for _ in range(2):
        spawn()
    try:
        publisher = Sent(broker.url)
        started = time.monotonic()
        for round_number in range(KILL_ROUNDS):
            await wait_for(idle_fleet, within=60, interval=0.05)
            await asyncio.sleep(0.2)  # the survivors finish what they hold, and wait on the queue again
            ready = live()
            frozen = ready if round_number % 2 == 0 else []
            for _, process in frozen:
                process.send_signal(signal.SIGSTOP)
            await step(database, town.organiser, publisher, functools.partial(ask, round_number=round_number))
            await asyncio.sleep(rng.uniform(0.0, 0.025))
            victim = rng.choice(ready)
            kill_with_children(victim[1])
            fleet.remove(victim)
            for _, process in frozen:
                if process is not victim[1]:
                    process.send_signal(signal.SIGCONT)
            spawn()
        await wait_for(idle_fleet, within=60, interval=0.05)
        await asyncio.sleep(1.0)

        # What the dead workers left: messages lost between the broker and a worker, and messages a dead
        # worker had taken (Redis would give those back only after the visibility timeout, an hour).
        waiting = await asyncio.to_thread(open_rows)
        queued, unacked = await asyncio.to_thread(held_by_broker, broker.url)
        lost = {task_id for task_id in waiting if task_id not in queued | unacked}
        stranded = {task_id for task_id in waiting if task_id in unacked}
        assert lost, "no round reproduced a message lost between the broker and a killed worker"

        async def relayed() -> bool:
            await relay_tenant(
                database,
                town.tenant_id,
                grace=timedelta(0),
                republish_after=timedelta(seconds=2),
                publisher=publisher,
            )
            return not await asyncio.to_thread(open_rows)

        await wait_for(relayed, within=90, interval=1.0)
        expected = {f"kill:{n}:{k}" for n in range(KILL_ROUNDS) for k in range(NOTICES_PER_ROUND)}

        def counted(statement: str) -> Counter[Any]:
            """How often each value `statement` selects of the town's rows occurs."""
            with psycopg.connect(owner_dsn) as conn:
                return Counter(row[0] for row in conn.execute(statement, (town.tenant_id,)).fetchall())

        delivered = counted("SELECT source FROM notifications WHERE tenant_id = %s AND source LIKE 'kill:%%'")
        attempts = counted(
            "SELECT attempts FROM outbox WHERE tenant_id = %s AND kwargs->>'source' LIKE 'kill:%%'"
        )
        assert set(delivered) == expected and set(delivered.values()) == {1}
        assert sum(attempts.values()) == len(expected)
        assert sum(n for tries, n in attempts.items() if tries > 1) >= len(lost) + len(stranded)
        print(
            f"\nkilled {KILL_ROUNDS} workers in {time.monotonic() - started:.1f} s: {len(expected)} notices, "
            f"{len(lost)} lost in transit, {len(stranded)} stranded with a dead worker, "
            f"publications per message {dict(sorted(attempts.items()))}, every notice delivered once"
        )
    finally:  # the other tests count on the module's own workers alone
        for _, process in fleet:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
            workers.stop(process)


async def test_broker_restarted_during_a_workflow(
    database: Database,
    town: Town,
    owner_dsn: str,
    settings: Settings,
    workers: Workers,
    tmp_path: Path,
) -> None:
    """A broker of this test alone goes away twice under a worker started as `liaison worker` starts it:
    first (SIGTERM) while the worker holds a late-acked task in the middle, which then finishes during
    the outage (its ack is lost: the failure that used to end the worker with AttributeError hostname),
    then abruptly (SIGKILL). The worker stays alive and consumes after each restart."""
    broker = PrivateRedis(tmp_path)
    broker.start()
    try:
        survivor = workers.worker(broker.url, "dur-restart", argv=worker_argv(1, beat=False))
        publisher = Sent(broker.url)
        organiser = town.organiser
        meeting_id, invited = await proposed_and_invited(database, town, "outage", publisher)
        effects = MeetingEffects(owner_dsn, town.tenant_id, meeting_id)
        await effects.settle(6)

        (task, kwargs, task_id) = [m for m in publisher.messages if m[0] == service.ANNOUNCE_TASK][-1]
        with meeting_locked(owner_dsn, town.tenant_id, meeting_id):
            publisher(task, kwargs, f"{task_id}-in-flight")
            await blocked_backend(settings.database_url, "dur-restart")
            broker.stop()
            await asyncio.sleep(1.0)  # the worker has seen the loss before its task goes on
        try:
            # The held task finishes while the broker is down; the parties reply and the meeting is
            # confirmed: every commit stands, and the tasks it asked for wait in the outbox.
            for party in invited:
                await accept_as(database, town, party.principal, publisher)
            await step(database, organiser, publisher, lambda s: service.confirm(s, organiser, meeting_id))
            assert effects.unsent() >= 7
            assert survivor.poll() is None
        finally:
            broker.start()

        async def relayed() -> bool:
            try:
                await relay_tenant(database, town.tenant_id, grace=timedelta(0), publisher=publisher)
            except Exception:  # the broker is still starting
                return False
            return await asyncio.to_thread(effects.unsent) == 0

        await wait_for(relayed, within=30)
        attendees = await step(
            database, organiser, publisher, lambda s: _all_invitation_ids(s, organiser, meeting_id)
        )
        await _finish(database, town, publisher, meeting_id, attendees, invited)
        # 6 invitations, 6 replies, confirm 7, hold 7, minutes 6, tally 7, supervision 1, assignment 1,
        # completion 1, closing 7.
        await effects.settle(6 + 6 + 7 + 7 + 6 + 7 + 1 + 1 + 1 + 7)
        assert effects.unsent() == 0  # every message was sent and marked sent: nothing for the relay

        broker.kill()
        broker.start()

        async def consumed_after_restart() -> bool:
            source = "restart:after-kill"
            try:
                await step(
                    database,
                    organiser,
                    publisher,
                    lambda s: notify(
                        s,
                        tenant_id=town.tenant_id,
                        scope=town.scope,
                        kind="test.restart",
                        title="t",
                        source=source,
                    ),
                )
            except Exception:  # the broker is still starting: the commit stands, the message waits
                return False
            found = scalar(
                owner_dsn,
                "SELECT count(*) FROM notifications WHERE tenant_id = %s AND source = %s",
                town.tenant_id,
                source,
            )
            return found == 1

        await wait_for(consumed_after_restart, within=60, interval=1.0)
        log = workers.log("dur-restart").read_text()
        assert survivor.poll() is None and log.count("Connected to") >= 3
        assert "Unrecoverable error" not in log
    finally:
        broker.stop()


async def accept_as(database: Database, town: Town, principal: str, publisher: Publisher) -> None:
    actor = town.party(principal)
    (invitation_id,) = await step(database, actor, publisher, lambda s: _own_invitations(s, actor))
    await step(database, actor, publisher, lambda s: service.reply(s, actor, invitation_id, accept=True))


async def vote_as(
    database: Database, town: Town, principal: str, invitation_id: int, publisher: Publisher
) -> None:
    actor = town.party(principal)
    await step(database, actor, publisher, lambda s: service.cast_vote(s, actor, invitation_id, "yes"))


async def _own_invitations(session: AsyncSession, actor: Actor) -> list[int]:
    from services.meetings import repository

    return [
        i.id for i in await repository.invitations_of_principal(session, actor.tenant_id, actor.principal)
    ]


async def _all_invitation_ids(session: AsyncSession, actor: Actor, meeting_id: int) -> list[int]:
    from services.meetings import repository

    return [i.id for i in await repository.invitations(session, actor.tenant_id, [meeting_id])]


async def held_and_minuted(
    database: Database,
    town: Town,
    publisher: Publisher,
    meeting_id: int,
    attendees: list[int],
    minutes: str,
    resolution: str,
) -> None:
    """The organiser holds the meeting with `attendees` and records its minutes and resolution."""
    organiser = town.organiser
    await step(database, organiser, publisher, lambda s: service.hold(s, organiser, meeting_id, attendees))
    await step(
        database,
        organiser,
        publisher,
        lambda s: service.record_minutes(s, organiser, meeting_id, minutes=minutes, resolution=resolution),
    )


async def _finish(
    database: Database,
    town: Town,
    publisher: Publisher,
    meeting_id: int,
    attendees: list[int],
    invited: list[Party],
) -> None:
    organiser = town.organiser
    await held_and_minuted(database, town, publisher, meeting_id, attendees, "纪要", "清理楼道")
    for party, invitation_id in zip(invited, attendees, strict=True):
        await vote_as(database, town, party.principal, invitation_id, publisher)
    await step(database, organiser, publisher, lambda s: service.tally(s, organiser, meeting_id))
    due = datetime.now(UTC) + timedelta(days=3)
    item = NewAction("residents_committee", invited[2].principal, "清理楼道", due)
    await step(
        database, organiser, publisher, lambda s: service.assign_actions(s, organiser, meeting_id, [item])
    )
    assignee = town.party(invited[2].principal)
    action_id = await step(database, assignee, publisher, lambda s: _own_action(s, assignee, meeting_id))
    await step(database, assignee, publisher, lambda s: service.complete_action(s, assignee, action_id))
    await step(
        database, organiser, publisher, lambda s: service.close(s, organiser, meeting_id, report="已完成")
    )


async def _own_action(session: AsyncSession, actor: Actor, meeting_id: int) -> int:
    from services.meetings import repository

    (action,) = await repository.actions(session, actor.tenant_id, [meeting_id])
    return action.id


async def test_a_rolled_back_step_sends_nothing(database: Database, town: Town, owner_dsn: str) -> None:
    publisher = Sent(None)
    meeting = await step(
        database, town.organiser, publisher, lambda s: service.propose(s, town.organiser, proposal(town))
    )

    class Abort(Exception):
        """Rolls the step back after it asked for its task."""

    async def invite_then_fail(session: AsyncSession) -> None:
        await service.invite(session, town.organiser, meeting.id, six("rollback"))
        raise Abort

    with pytest.raises(Abort):
        await step(database, town.organiser, publisher, invite_then_fail)
    assert publisher.messages == []
    relayed = await relay_tenant(database, town.tenant_id, grace=timedelta(0), publisher=publisher)
    assert relayed == 0 and publisher.messages == []
    effects = MeetingEffects(owner_dsn, town.tenant_id, meeting.id)
    for table in ("meeting_invitations", "meeting_notices"):
        assert effects.count(table, "meeting_id = %s", meeting.id) == 0
    assert effects.count("timers", "subject_id = %s AND kind LIKE 'meeting.%%'", meeting.id) == 0
    assert effects.count("outbox", "kwargs->>'meeting_id' = %s", str(meeting.id)) == 0


async def test_the_same_task_delivered_twice_has_one_effect(
    database: Database,
    town: Town,
    owner_dsn: str,
    broker: PrivateRedis,
    steady: subprocess.Popen[bytes],
    workers: Workers,
) -> None:
    meeting_id, (task, kwargs, task_id) = await invited_announce_held(database, town, "twice")
    send = Sent(broker.url)
    send(task, kwargs, task_id)
    send(task, kwargs, f"{task_id}-again")
    effects = MeetingEffects(owner_dsn, town.tenant_id, meeting_id)
    await effects.settle(6)

    async def both_ran() -> bool:
        log = await asyncio.to_thread(workers.log("dur-steady").read_text)
        return f"{task_id}] succeeded" in log and f"{task_id}-again] succeeded" in log

    await wait_for(both_ran)
    assert (effects.notices(), effects.outbox_notices(), effects.delivered()) == (6, 6, 6)


async def test_deadlines_fire_once_under_concurrent_sweeps(
    database: Database, clock_town: Town, owner_dsn: str, worker: subprocess.Popen[bytes]
) -> None:
    """The clock is moved, never slept on: two sweeps at once fire each reminder and escalation once."""
    town = clock_town
    publisher = Sent(None)
    organiser = town.organiser
    meeting_id, invited = await proposed_and_invited(database, town, "clock", publisher, days=10)
    with psycopg.connect(owner_dsn) as conn:
        found = conn.execute("SELECT reply_deadline FROM meetings WHERE id = %s", (meeting_id,)).fetchone()
    assert found is not None
    deadline: datetime = found[0]  # the default: 72 h before the meeting
    for party in invited[:2]:
        await accept_as(database, town, party.principal, publisher)

    def events(name: str, workflow: str = "meeting_invitation") -> int:
        return scalar(
            owner_dsn,
            "SELECT count(*) FROM workflow_events WHERE tenant_id = %s AND workflow = %s AND step = %s "
            "AND payload->>'meeting_id' = %s",
            town.tenant_id,
            workflow,
            name,
            str(meeting_id),
        )

    async def twice(now: datetime) -> Counter[str]:
        tenant = town.tenant_id
        first, second = await asyncio.gather(
            sweep_tenant(database, tenant, now), sweep_tenant(database, tenant, now)
        )
        return first + second

    fired = await twice(deadline - timedelta(hours=47))
    assert fired[service.REPLY_REMINDER] == 1 and events("remind") == 4  # four have not answered
    assert (await twice(deadline - timedelta(hours=47)))[service.REPLY_REMINDER] == 0
    assert (await twice(deadline - timedelta(hours=23)))[service.REPLY_REMINDER] == 1 and events(
        "remind"
    ) == 8
    fired = await twice(deadline + timedelta(minutes=1))
    assert fired[service.REPLY_DEADLINE] == 1 and events("escalate") == 4
    assert (await twice(deadline + timedelta(hours=5)))[service.REPLY_DEADLINE] == 0
    assert (
        scalar(
            owner_dsn,
            "SELECT count(*) FROM meeting_invitations WHERE tenant_id = %s AND meeting_id = %s "
            "AND escalated_at IS NOT NULL",
            town.tenant_id,
            meeting_id,
        )
        == 4
    )
    street = town.scope.rsplit(".", 1)[0]
    escalation_notices = (
        "SELECT count(*) FROM meeting_notices n JOIN workflow_events e ON e.tenant_id = n.tenant_id "
        "AND e.id = n.event_id WHERE n.tenant_id = %s AND n.meeting_id = %s AND e.step = 'escalate' "
        "AND e.payload->>'staff' = %s"
    )

    async def escalated() -> bool:
        return (
            await asyncio.to_thread(scalar, owner_dsn, escalation_notices, town.tenant_id, meeting_id, street)
            >= 4
        )

    await wait_for(escalated)  # the session's worker fans them out to the street staff

    # Late answers still count; then the action item's reminder and its overdue escalation.
    for party in invited[2:]:
        await accept_as(database, town, party.principal, publisher)
    await step(database, organiser, publisher, lambda s: service.confirm(s, organiser, meeting_id))
    attendees = await step(
        database, organiser, publisher, lambda s: _all_invitation_ids(s, organiser, meeting_id)
    )
    await held_and_minuted(database, town, publisher, meeting_id, attendees, "m", "r")
    await step(database, organiser, publisher, lambda s: service.tally(s, organiser, meeting_id))
    due = datetime.now(UTC) + timedelta(days=2)
    item = NewAction("enterprise", invited[5].principal, "更换灯泡", due)
    await step(
        database, organiser, publisher, lambda s: service.assign_actions(s, organiser, meeting_id, [item])
    )
    assert (await twice(due - timedelta(hours=23)))[service.ACTION_REMINDER] == 1
    assert (await twice(due + timedelta(minutes=1)))[service.ACTION_OVERDUE] == 1
    assert (await twice(due + timedelta(days=1)))[service.ACTION_OVERDUE] == 0
    assert events("remind", "meeting_action") == 1 and events("overdue", "meeting_action") == 1
    assert (
        scalar(
            owner_dsn,
            "SELECT count(*) FROM meeting_actions WHERE tenant_id = %s AND meeting_id = %s AND overdue",
            town.tenant_id,
            meeting_id,
        )
        == 1
    )


# --- only one beat -----------------------------------------------------------------------------------------


async def test_only_one_beat_schedules_and_another_takes_over(
    settings: Settings, owner_dsn: str, broker: PrivateRedis, workers: Workers
) -> None:
    def leaders(pids: tuple[int, ...]) -> dict[int, int]:
        with psycopg.connect(owner_dsn) as conn:
            rows = conn.execute(
                "SELECT pid, ticks FROM beat_leaders WHERE pid = ANY(%s)", (list(pids),)
            ).fetchall()
        return {int(pid): int(ticks) for pid, ticks in rows}

    first = workers.beat(broker.url, "beat-a")

    async def first_leads() -> bool:
        return (await asyncio.to_thread(leaders, (first.pid,))).get(first.pid, 0) >= 2

    await wait_for(first_leads, within=30)
    second = workers.beat(broker.url, "beat-b")
    pids = (first.pid, second.pid)

    async def second_running() -> bool:
        log = workers.log("beat-b")
        return log.exists() and "beat: Starting" in await asyncio.to_thread(log.read_text)

    await wait_for(second_running, within=30)
    before = leaders(pids)
    await asyncio.sleep(3.0)  # several ticks of both: only the holder of the lock counts any
    after = leaders(pids)
    assert set(after) == {first.pid} and after[first.pid] >= before[first.pid] + 2
    assert second.poll() is None

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    stopped = leaders(pids)[first.pid]

    async def second_leads() -> bool:
        return (await asyncio.to_thread(leaders, pids)).get(second.pid, 0) >= 2

    await wait_for(second_leads, within=30)
    assert leaders(pids)[first.pid] == stopped
    assert "holds the beat lock" in workers.log("beat-b").read_text()
