"""The workflow benchmark: commit → task start latency; 1,000 six-party meetings from proposal to closure.

    .venv/bin/python -m tests.bench.workflows [--meetings N] [--latency-samples N] [--output FILE]

A fresh database `liaison_workflowbench` gets the migrations and a small synthetic tenant; a private
redis-server on a free loopback port is the broker; two real Celery worker processes (prefork, one pool
child each) run the tasks. The bench drives every step as its actors would (the services in their own
tenant-scoped transactions, the outbox published after each commit):

- latency: one step at a time on an idle system; from just before the commit to the start of the
  transaction of the `meetings.announce` task it asked for (the task's first statement; its notices
  carry that time as `created_at`);
- throughput: N meetings, 16 driven at once, each proposed, six parties invited, all six confirming,
  confirmed, held, minuted, six votes, tallied, one action item assigned and completed, closed. Wall
  time runs from the first proposal to the last notice in an inbox; every effect is counted in the
  database afterwards: notices logged, notification tasks asked for, notifications delivered, all
  against what the steps should have produced (lost = missing, duplicated = more than once).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession

import services.meetings.tasks  # noqa: F401  (the meetings' timer handlers, as a worker has them)
from deploy import migrate
from deploy.settings import REPO_ROOT, Settings, load
from services.meetings import repository, service
from services.meetings.models import PARTY_KINDS
from services.meetings.service import Actor, NewAction, Party, Proposal
from services.outbox.service import Publisher, relay_tenant
from services.unit_of_work import UnitOfWork
from tenants.db import Database
from tests.bench import common
from tests.helpers import (
    commit_step,
    free_port,
    meeting_organiser,
    meeting_party,
    scalar,
    seed_stations,
    start_redis_server,
)

T = TypeVar("T")
BENCH_DATABASE = "liaison_workflowbench"
TENANT = "flowbench"
WORKERS = 2
DRIVERS = 16
# Notices one meeting sends: invitations 6, replies to the staff 6, confirmation 7, held 7, minutes 6,
# tally 7, supervision 1, the action item 1, its completion 1, closing 7.
NOTICES_PER_MEETING = 6 + 6 + 7 + 7 + 6 + 7 + 1 + 1 + 1 + 7
# Announce tasks one meeting asks for: invite, 6 replies, confirm, hold, minutes, tally, 2 at assignment,
# completion, close (votes send no notice).
ANNOUNCES_PER_MEETING = 1 + 6 + 1 + 1 + 1 + 1 + 2 + 1 + 1


class Broker:
    """A private redis-server for the run."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.process = start_redis_server(self.port, directory, "--save", "", "--appendonly", "no")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)


@contextmanager
def worker_processes(settings: Settings, broker: str, directory: Path) -> Iterator[list[Path]]:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "CELERY_BROKER_URL": broker}
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        for n in range(WORKERS):
            log = directory / f"worker{n}.log"
            argv = [sys.executable, "-m", "celery", "-A", "deploy.worker", "worker", "--concurrency=1"]
            argv += ["--loglevel=warning", "--without-gossip", "--without-mingle", "--without-heartbeat"]
            argv += [f"--hostname=bench{n}@%h", f"--logfile={log}"]
            processes.append(subprocess.Popen(argv, env=env, cwd=REPO_ROOT))
            logs.append(log)
        # Ready when both consume: a warning-level log has no "ready." line, so ping them through the broker.
        from celery import Celery

        probe = Celery("bench-probe", broker=broker)
        deadline = time.monotonic() + 60
        while len(probe.control.ping(timeout=1.0) or []) < WORKERS:
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise common.BenchError(
                    "the workers did not start: " + " ".join(log.read_text() for log in logs if log.exists())
                )
        yield logs
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


class Run:
    def __init__(
        self, database: Database, tenant_id: int, stations: list[tuple[int, str]], publisher: Publisher
    ) -> None:
        self.database = database
        self.tenant_id = tenant_id
        self.stations = stations
        self.publisher = publisher

    def organiser(self, scope: str) -> Actor:
        return meeting_organiser(self.tenant_id, scope)

    def party(self, principal: str) -> Actor:
        return meeting_party(self.tenant_id, principal)

    async def step(self, actor: Actor, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        return await commit_step(self.database, actor.context, self.publisher, work)

    async def propose(self, n: int, topic: str) -> tuple[int, Actor]:
        station_id, scope = self.stations[n % len(self.stations)]
        organiser = self.organiser(scope)
        start = datetime.now(UTC) + timedelta(days=7)
        proposal = Proposal(station_id=station_id, topic=topic, proposed_times=[start], place="会议室")
        meeting = await self.step(organiser, lambda s: service.propose(s, organiser, proposal))
        return meeting.id, organiser

    async def propose_and_invite(self, n: int) -> tuple[int, Actor, list[tuple[Party, int]]]:
        meeting_id, organiser = await self.propose(n, f"议题 {n}")
        parties = [Party(kind, f"user:m{n}p{k}", f"{kind}-{k}") for k, kind in enumerate(PARTY_KINDS)]
        invitations = await self.step(organiser, lambda s: self.invite(s, organiser, meeting_id, parties))
        return meeting_id, organiser, list(zip(parties, invitations, strict=True))

    async def invite(
        self, session: AsyncSession, organiser: Actor, meeting_id: int, parties: list[Party]
    ) -> list[int]:
        await service.invite(session, organiser, meeting_id, parties)
        rows = await repository.invitations(session, self.tenant_id, [meeting_id])
        by_principal = {row.owner_principal: row.id for row in rows}
        return [by_principal[party.principal] for party in parties]

    async def accept(self, principal: str, invitation_id: int) -> None:
        actor = self.party(principal)
        await self.step(actor, lambda s: service.reply(s, actor, invitation_id, accept=True))

    async def complete_own(self, session: AsyncSession, assignee: Actor, meeting_id: int) -> None:
        (action,) = await repository.actions(session, self.tenant_id, [meeting_id])
        await service.complete_action(session, assignee, action.id)

    async def vote(self, principal: str, invitation_id: int) -> None:
        actor = self.party(principal)
        await self.step(actor, lambda s: service.cast_vote(s, actor, invitation_id, "yes"))

    async def meeting(self, n: int) -> None:
        meeting_id, organiser, invited = await self.propose_and_invite(n)
        for party, invitation_id in invited:
            await self.accept(party.principal, invitation_id)
        parties = [party for party, _ in invited]
        invitations = [invitation_id for _, invitation_id in invited]
        await self.step(organiser, lambda s: service.confirm(s, organiser, meeting_id))
        await self.step(organiser, lambda s: service.hold(s, organiser, meeting_id, invitations))
        await self.step(
            organiser,
            lambda s: service.record_minutes(s, organiser, meeting_id, minutes="纪要", resolution="决议"),
        )
        for party, invitation_id in zip(parties, invitations, strict=True):
            await self.vote(party.principal, invitation_id)
        await self.step(organiser, lambda s: service.tally(s, organiser, meeting_id))
        due = datetime.now(UTC) + timedelta(days=14)
        item = NewAction(parties[1].kind, parties[1].principal, "落实决议", due)
        await self.step(organiser, lambda s: service.assign_actions(s, organiser, meeting_id, [item]))
        assignee = self.party(parties[1].principal)
        await self.step(assignee, lambda s: self.complete_own(s, assignee, meeting_id))
        await self.step(organiser, lambda s: service.close(s, organiser, meeting_id, report="办结"))


async def latency(run: Run, owner_dsn: str, samples: int) -> list[float]:
    """Commit → start of the task the commit asked for, one at a time on an idle system (ms)."""
    values: list[float] = []
    for n in range(samples):
        meeting_id, organiser = await run.propose(n, f"延迟 {n}")
        unit = UnitOfWork(run.database, organiser.context, publisher=run.publisher)
        session = await unit.session()
        await service.invite(session, organiser, meeting_id, [Party("deputy", f"user:lat{n}", "代表")])
        before_commit = time.time()
        await unit.commit()

        def started(meeting_id: int = meeting_id) -> float:
            with psycopg.connect(owner_dsn) as conn:
                row = conn.execute(
                    "SELECT extract(epoch FROM min(created_at)) FROM meeting_notices WHERE meeting_id = %s",
                    (meeting_id,),
                ).fetchone()
            return float(row[0]) if row and row[0] is not None else 0.0

        deadline = time.monotonic() + 30
        while not (task_start := await asyncio.to_thread(started)):
            if time.monotonic() > deadline:
                raise common.BenchError(f"latency sample {n}: the task never ran")
            await asyncio.sleep(0.002)
        values.append((task_start - before_commit) * 1000)
    return values


async def throughput(run: Run, owner_dsn: str, meetings: int, tenant_id: int) -> dict[str, Any]:
    before = scalar(owner_dsn, "SELECT count(*) FROM outbox WHERE tenant_id = %s", tenant_id)
    notices_before = scalar(owner_dsn, "SELECT count(*) FROM meeting_notices WHERE tenant_id = %s", tenant_id)
    delivered_before = scalar(
        owner_dsn,
        "SELECT count(*) FROM notifications WHERE tenant_id = %s AND source LIKE 'meeting:%%'",
        tenant_id,
    )
    gate = asyncio.Semaphore(DRIVERS)

    async def one(n: int) -> None:
        async with gate:
            await run.meeting(n)

    started = time.monotonic()
    await asyncio.gather(*(one(n) for n in range(meetings)))
    driven = time.monotonic() - started
    expected = NOTICES_PER_MEETING * meetings

    def delivered() -> int:
        return (
            scalar(
                owner_dsn,
                "SELECT count(*) FROM notifications WHERE tenant_id = %s AND source LIKE 'meeting:%%'",
                tenant_id,
            )
            - delivered_before
        )

    deadline = time.monotonic() + 600
    while delivered() < expected:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    wall = time.monotonic() - started
    await asyncio.sleep(2.0)  # anything late or twice would show up now
    # Whatever a failed publish left behind is the relay's (none expected on a healthy broker).
    relayed = await relay_tenant(run.database, tenant_id, grace=timedelta(0), publisher=run.publisher)
    notices = (
        scalar(owner_dsn, "SELECT count(*) FROM meeting_notices WHERE tenant_id = %s", tenant_id)
        - notices_before
    )
    asked = scalar(
        owner_dsn,
        "SELECT count(*) FROM outbox WHERE tenant_id = %s AND task = 'notifications.send' AND id > 0",
        tenant_id,
    )
    distinct = scalar(
        owner_dsn,
        "SELECT count(DISTINCT kwargs->>'source') FROM outbox WHERE tenant_id = %s "
        "AND task = 'notifications.send'",
        tenant_id,
    )
    tasks = scalar(owner_dsn, "SELECT count(*) FROM outbox WHERE tenant_id = %s", tenant_id) - before
    closed = scalar(
        owner_dsn, "SELECT count(*) FROM meetings WHERE tenant_id = %s AND state = 'closed'", tenant_id
    )
    got = delivered()
    return {
        "meetings": meetings,
        "closed": closed,
        "worker_processes": WORKERS,
        "drivers": DRIVERS,
        "steps": meetings * 21,
        "tasks": tasks,
        "announce_tasks_expected": ANNOUNCES_PER_MEETING * meetings,
        "notices_expected": expected,
        "notices_logged": notices,
        "notifications_delivered": got,
        "lost": max(expected - got, 0) + max(expected - notices, 0),
        "duplicated": max(got - expected, 0) + max(notices - expected, 0) + (asked - distinct),
        "relayed_afterwards": relayed,
        "driving_seconds": round(driven, 2),
        "wall_seconds": round(wall, 2),
        "tasks_per_second": round(tasks / wall, 1),
        "meetings_per_second": round(meetings / wall, 2),
    }


async def measure(settings: Settings, broker: str, meetings: int, samples: int) -> dict[str, Any]:
    migrate.upgrade(settings)
    database = Database(settings.app_url, pool_size=DRIVERS + 4)
    owner_dsn = settings.owner_url.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        seeded, stations = await seed_stations(database, owner_dsn, TENANT, streets=4, stations=5, seed=1)
        from celery import Celery

        app = Celery("bench-publisher", broker=broker)

        def publish(task: str, kwargs: dict[str, Any], task_id: str) -> None:
            app.send_task(task, kwargs=kwargs, task_id=task_id)

        run = Run(database, seeded.tenant_id, stations, publish)
        latencies = await latency(run, owner_dsn, samples)

        def delivered() -> int:
            return scalar(
                owner_dsn, "SELECT count(*) FROM notifications WHERE tenant_id = %s", seeded.tenant_id
            )

        deadline = time.monotonic() + 60
        while delivered() < samples:  # let the samples' inbox deliveries finish before counting the run's
            if time.monotonic() > deadline:
                raise common.BenchError("the latency samples' notifications were not delivered")
            await asyncio.sleep(0.1)
        figures = await throughput(run, owner_dsn, meetings, seeded.tenant_id)
        figures["latency_ms"] = common.summary(latencies)
        return figures
    finally:
        await database.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meetings", type=int, default=1000)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--output", type=Path, default=common.DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    console = Console()
    settings = load()
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="liaison-flowbench-") as scratch:
        directory = Path(scratch)
        broker = Broker(directory)
        try:
            with (
                common.bench_database(settings, BENCH_DATABASE) as bench,
                worker_processes(bench, broker.url, directory),
            ):
                figures = asyncio.run(measure(bench, broker.url, args.meetings, args.latency_samples))
        finally:
            broker.stop()
    figures["machine"] = {"cpu": common.cpu_model(), "cpus": os.cpu_count(), "started": started.isoformat()}
    common.write_output(args.output, figures, key="workflows")
    latency_table = common.table("commit → task start (ms)", "measurement", "p50", "p95", "min", "max", "n")
    lat = figures["latency_ms"]
    latency_table.add_row("meetings.announce", *(str(lat[k]) for k in ("p50", "p95", "min", "max", "n")))
    console.print(latency_table)
    run_table = common.table(
        f"{figures['meetings']} six-party meetings, proposal to closure", "measurement", "value"
    )
    for key in (
        "worker_processes",
        "steps",
        "tasks",
        "wall_seconds",
        "tasks_per_second",
        "meetings_per_second",
        "notices_expected",
        "notifications_delivered",
        "lost",
        "duplicated",
        "closed",
    ):
        run_table.add_row(key, str(figures[key]))
    console.print(run_table)
    console.print(f"written to {args.output}")
    ok = figures["lost"] == 0 and figures["duplicated"] == 0 and figures["closed"] == figures["meetings"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
