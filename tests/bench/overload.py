"""Capacity of one API process, and what happens past it: open-loop load on the real server.

A fresh database gets a synthetic city (4 districts x 5 streets x 5 stations, with shapes and grid cells)
holding 50,000 requests. One uvicorn process (`deploy.asgi:app`, the settings' defaults: a pool of 10 + 10,
the pool, statement and lock timeouts) serves it on loopback. For each workload and offered rate, requests
arrive at evenly spaced instants for `--seconds` seconds, whether or not the earlier ones were answered (an
open loop: a slow server does not slow the arrivals down, as it would with a fixed set of clients):

- read: a district staff member's first page of requests (`requests(first: 20)` with the total, category
  and station of each);
- write: `submitRequest` by a resident (routing, history, audit link, timers, outbox, broker);
- mixed: the two alternately.

Each step records answers (200 without errors), 503s, other failures, latency percentiles, and the CPU
seconds used by the API process, by the database's backends for this database, and by the load generator
itself (all on the same machine). Then `write` at the highest rate runs once more with every bound off
(LIAISON_DB_POOL_TIMEOUT, LIAISON_STATEMENT_TIMEOUT and LIAISON_LOCK_TIMEOUT at 0) to show what they prevent.

Run with `make bench` (or `python -m tests.bench.overload [--seconds N] [--workers N] [--read-rates 10,20]`).
Figures go to tests/bench/results.json under "overload".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console

from deploy import migrate
from deploy.settings import Settings, load
from tenants.roles import Role
from tests.bench import common
from tests.bench.intake import sample_points, submissions

BENCH_DATABASE = "liaison_overloadbench"
CITY = common.City("overloadbench", districts=4, streets=5, stations=5, seed=9)
SEEDED_REQUESTS = 50_000
BROKER_DB = 12  # nothing consumes the bench's tasks: a Redis database of its own, emptied afterwards
DEFAULT_SECONDS = 20.0
READ_RATES = (10, 20, 30, 40, 60, 100)
WRITE_RATES = (10, 20, 40, 50, 60, 80, 100)
MIXED_RATES = (10, 20, 40, 50, 60, 80)
# "Bounded" latency: every request answered 200 and the 99th percentile under this.
BOUNDED_P99_MS = 1000.0
CLIENT_TIMEOUT = 120.0
PAUSE = 5.0  # between steps, so one step's backlog does not land in the next

READ = (
    "{ requests(first: 20) { totalCount edges { node { ticket state submittedAt "
    "category { name } station { name } } } } }"
)
SUBMIT = (
    "mutation($input: SubmitRequestInput!) { submitRequest(input: $input) { __typename "
    "... on Error { code message } } }"
)
NO_BOUNDS = {"LIAISON_DB_POOL_TIMEOUT": "0", "LIAISON_STATEMENT_TIMEOUT": "0", "LIAISON_LOCK_TIMEOUT": "0"}

console = Console()


@dataclass
class Step:
    workload: str
    offered_per_second: float
    seconds: float  # arrivals span this long
    wall_seconds: float = 0.0  # from the first arrival to the last answer
    latencies_ok_ms: list[float] = field(default_factory=list)
    latencies_503_ms: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        return len(self.latencies_ok_ms) + len(self.latencies_503_ms) + sum(self.failures.values())

    @property
    def bounded(self) -> bool:
        return (
            not self.failures
            and not self.latencies_503_ms
            and common.percentile(self.latencies_ok_ms, 99) <= BOUNDED_P99_MS
        )

    def figures(self) -> dict[str, Any]:
        ok = self.latencies_ok_ms
        figures: dict[str, Any] = {
            "workload": self.workload,
            "offered_per_second": self.offered_per_second,
            "sent": self.sent,
            "ok": len(ok),
            "wall_seconds": round(self.wall_seconds, 1),
            "ok_per_second": round(len(ok) / self.wall_seconds, 1),
            "unavailable_503": len(self.latencies_503_ms),
            "other_failures": dict(self.failures),
            "bounded": self.bounded,
            "cpu_share": {
                name: round(value / self.wall_seconds, 2) for name, value in self.cpu_seconds.items()
            },
        }
        if ok:
            figures.update(
                p50_ms=round(common.percentile(ok, 50), 1),
                p90_ms=round(common.percentile(ok, 90), 1),
                p99_ms=round(common.percentile(ok, 99), 1),
                max_ms=round(max(ok), 1),
                mean_ms=round(statistics.fmean(ok), 1),
            )
        if self.latencies_503_ms:
            figures["p99_503_ms"] = round(common.percentile(self.latencies_503_ms, 99), 1)
        return figures


def prepare(settings: Settings) -> int:
    migrate.upgrade(settings)
    tenant_id = common.seed_city(
        settings, CITY, shapes=True, requests=SEEDED_REQUESTS, request_days=180
    ).tenant_id
    common.maintain(settings, "VACUUM ANALYZE")
    return tenant_id


def tokens(settings: Settings, tenant_id: int) -> tuple[str, list[str]]:
    """A district staff token for the reads, and 64 residents' tokens for the writes."""
    with psycopg.connect(settings.owner_url) as connection:
        row = connection.execute(
            "SELECT scope::text FROM districts WHERE tenant_id = %s ORDER BY id LIMIT 1", (tenant_id,)
        ).fetchone()
    if row is None:
        raise common.BenchError("the bench city has no district")
    ttl = timedelta(hours=3)
    staff = common.issue_token(settings, CITY.tenant, "operator:overload", [row[0]], Role.DISTRICT_STAFF, ttl)
    residents = [
        common.issue_token(settings, CITY.tenant, f"user:{700000 + i}", [f"c{tenant_id}"], Role.RESIDENT, ttl)
        for i in range(64)
    ]
    return staff, residents


# CPU seconds of the processes involved, from /proc (utime + stime, in clock ticks).

TICKS = os.sysconf("SC_CLK_TCK")


def _processes() -> Iterator[tuple[int, int, str, float]]:
    """(pid, parent pid, command line, CPU seconds) of every process readable in /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        yield int(entry.name), int(fields[1]), cmdline, (int(fields[11]) + int(fields[12])) / TICKS


Snapshot = dict[str, dict[int, float]]


def cpu_snapshot(port: int) -> Snapshot:
    """CPU seconds by pid: the API process(es), this database's backends, and the load generator."""
    rows = list(_processes())
    api = {pid for pid, _, cmdline, _ in rows if "deploy.asgi:app" in cmdline and f"--port {port}" in cmdline}
    api |= {pid for pid, parent, _, _ in rows if parent in api}  # uvicorn's worker processes
    return {
        "api": {pid: cpu for pid, _, _, cpu in rows if pid in api},
        "postgres": {pid: cpu for pid, _, cmdline, cpu in rows if f" {BENCH_DATABASE} " in cmdline},
        "load_generator": {os.getpid(): time.process_time()},
    }


def cpu_used(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds used between two snapshots; a backend that exited in between is missed (its last
    seconds are unknown), one that started counts whole."""
    return {name: sum(cpu - before[name].get(pid, 0.0) for pid, cpu in after[name].items()) for name in after}


@dataclass(frozen=True)
class Workload:
    name: str
    staff: str
    residents: list[str]
    inputs: list[dict[str, Any]]

    def request(self, index: int) -> tuple[dict[str, Any], str]:
        """The body and token of the index-th request."""
        write = self.name == "write" or (self.name == "mixed" and index % 2 == 1)
        if not write:
            return {"query": READ}, self.staff
        values = self.inputs[index % len(self.inputs)]
        return {"query": SUBMIT, "variables": {"input": values}}, self.residents[index % len(self.residents)]


def classify(status: int, body: bytes) -> str:
    """ "ok", "503", or a short reason."""
    if status == 503:
        return "503"
    if status != 200:
        return f"http {status}"
    answer: Any = json.loads(body)
    if answer.get("errors"):
        return "errors: " + str(answer["errors"][0].get("message"))[:60]
    data = answer.get("data") or {}
    submitted = data.get("submitRequest")
    if isinstance(submitted, dict) and "code" in submitted:
        return f"error {submitted['code']}"
    return "ok"


async def post(port: int, body: dict[str, Any], token: str) -> tuple[int, bytes]:
    """POST /graphql on a connection of its own, as an independent client would, and read the whole answer.

    Bare asyncio streams rather than an HTTP client library: with hundreds of requests in flight a client's
    own connection pool becomes the bottleneck and its queueing would count as the server's latency."""
    payload = json.dumps(body).encode()
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode() + payload)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, content = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), content


async def run_step(port: int, workload: Workload, rate: float, seconds: float) -> Step:
    step = Step(workload.name, rate, seconds)
    count = int(rate * seconds)

    async def one(index: int) -> None:
        body, token = workload.request(index)
        began = time.perf_counter()
        try:
            status, content = await asyncio.wait_for(post(port, body, token), CLIENT_TIMEOUT)
            outcome = classify(status, content)
        except (OSError, TimeoutError, ValueError, IndexError) as error:
            outcome = type(error).__name__
        elapsed = (time.perf_counter() - began) * 1000
        if outcome == "ok":
            step.latencies_ok_ms.append(elapsed)
        elif outcome == "503":
            step.latencies_503_ms.append(elapsed)
        else:
            step.failures[outcome] = step.failures.get(outcome, 0) + 1

    before = cpu_snapshot(port)
    start = time.perf_counter()
    tasks = []
    for index in range(count):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index)))
    await asyncio.gather(*tasks)
    step.wall_seconds = time.perf_counter() - start
    after = cpu_snapshot(port)
    step.cpu_seconds = cpu_used(before, after)
    return step


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """os.environ with `values` (api_server hands its environment to the server)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def print_step(step: Step) -> None:
    f = step.figures()
    console.log(
        f"{step.workload:5} {step.offered_per_second:5.0f}/s: ok {f['ok']}/{f['sent']}, "
        f"503 {f['unavailable_503']}, other {sum(step.failures.values())}, "
        f"p50 {f.get('p50_ms', 0):.0f} ms, p99 {f.get('p99_ms', 0):.0f} ms, cpu {f['cpu_share']}"
    )


def run(rates: dict[str, tuple[float, ...]], seconds: float, workers: int, unbounded: bool) -> dict[str, Any]:
    started_at = datetime.now(UTC)
    load_before = os.getloadavg()
    broker = common.redis_broker_url(load(), BROKER_DB, "overload")
    steps: list[Step] = []
    comparison: list[Step] = []
    with common.bench_database(load(), BENCH_DATABASE, broker) as settings, common.emptied_afterwards(broker):
        console.log(f"seeding the synthetic city and {SEEDED_REQUESTS:,} requests")
        tenant_id = prepare(settings)
        staff, residents = tokens(settings, tenant_id)
        total_writes = int(max(max(rates["write"]), max(rates["mixed"])) * seconds * 3)
        # Points inside the city only (intake's sample puts one in twenty outside it, which is refused).
        points = [p for i, p in enumerate(sample_points(settings, tenant_id, 2000)) if i % 20 != 19]
        inputs = submissions(points, max(total_writes, 1000))
        with (
            environment({"CELERY_BROKER_URL": settings.celery_broker_url}),
            common.api_server(settings, workers=workers) as base_url,
        ):
            port = int(base_url.rsplit(":", 1)[1])
            for workload_name, workload_rates in rates.items():
                workload = Workload(workload_name, staff, residents, inputs)
                asyncio.run(run_step(port, workload, 5, 4))  # warm-up
                for rate in workload_rates:
                    step = asyncio.run(run_step(port, workload, rate, seconds))
                    print_step(step)
                    steps.append(step)
                    time.sleep(PAUSE)
        if unbounded:
            rate = max(rates["write"])
            workload = Workload("write", staff, residents, inputs[::-1])
            for label, values in (("unbounded", NO_BOUNDS), ("bounded", {})):
                overrides = {"CELERY_BROKER_URL": settings.celery_broker_url, **values}
                with environment(overrides), common.api_server(settings, workers=workers) as base_url:
                    port = int(base_url.rsplit(":", 1)[1])
                    asyncio.run(run_step(port, workload, 5, 4))
                    step = asyncio.run(run_step(port, workload, rate, seconds))
                    step.workload = f"write, {label}"
                    print_step(step)
                    comparison.append(step)
                time.sleep(PAUSE)
        with psycopg.connect(settings.owner_url) as connection:
            facts = {"postgresql": common.server_version(connection)}
    capacity = {
        workload: max(
            (s.offered_per_second for s in steps if s.workload == workload and s.bounded), default=0
        )
        for workload in rates
    }
    return {
        "date": started_at.isoformat(timespec="seconds"),
        "machine": common.machine(load_before, facts, with_platform=False),
        "method": (
            f"open loop: requests at evenly spaced instants for {seconds:.0f} s per rate, each answered or "
            f"not; uvicorn with {workers} process(es) on loopback, default pool and timeouts; the load "
            "generator (asyncio + httpx), the API and PostgreSQL share the machine. 'bounded': every request "
            f"answered 200 and p99 under {BOUNDED_P99_MS:.0f} ms. cpu_share: CPU seconds per second of the "
            "API process(es), of this database's PostgreSQL backends (those alive at the end of the step) "
            "and of the load generator; ok_per_second and cpu_share are over the step's wall time, from the "
            "first arrival to the last answer."
        ),
        "dataset": {
            "tenant": CITY.tenant,
            "stations": CITY.districts * CITY.streets * CITY.stations,
            "requests": SEEDED_REQUESTS,
        },
        "api_processes": workers,
        "capacity_per_second": capacity,
        "steps": [step.figures() for step in steps],
        "bounds_off_vs_on": [step.figures() for step in comparison],
    }


def print_figures(figures: dict[str, Any], out: Console) -> None:
    result = common.table(
        f"overload benchmark: {figures['api_processes']} API process(es), open loop",
        "workload",
        "offered/s",
        "ok/s",
        "503",
        "other",
        "p50 ms",
        "p99 ms",
        "api cpu",
    )
    for f in figures["steps"] + figures["bounds_off_vs_on"]:
        result.add_row(
            f["workload"],
            f"{f['offered_per_second']:.0f}",
            f"{f['ok_per_second']:.1f}",
            str(f["unavailable_503"]),
            str(sum(f["other_failures"].values())),
            f"{f.get('p50_ms', 0):.0f}",
            f"{f.get('p99_ms', 0):.0f}",
            f"{f['cpu_share']['api']:.2f}",
        )
    out.print(result)
    out.print({"capacity_per_second": figures["capacity_per_second"]})


def _rates(text: str) -> tuple[float, ...]:
    values = tuple(float(part) for part in text.split(",") if part.strip())
    if not values or any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError("rates are positive numbers separated by commas")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = common.argument_parser("overload", __doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="duration of each rate")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn processes")
    parser.add_argument("--read-rates", type=_rates, default=READ_RATES)
    parser.add_argument("--write-rates", type=_rates, default=WRITE_RATES)
    parser.add_argument("--mixed-rates", type=_rates, default=MIXED_RATES)
    parser.add_argument("--no-comparison", action="store_true", help="skip the run with the bounds off")
    args = parser.parse_args(argv)
    if args.seconds < 2 or args.workers < 1:
        parser.error("--seconds must be at least 2 and --workers at least 1")
    rates = {"read": args.read_rates, "write": args.write_rates, "mixed": args.mixed_rates}
    return common.measure_and_record(
        lambda: run(rates, args.seconds, args.workers, unbounded=not args.no_comparison),
        args.output,
        "overload" if args.workers == 1 else f"overload_{args.workers}_processes",
        print_figures,
    )


if __name__ == "__main__":
    raise SystemExit(main())
