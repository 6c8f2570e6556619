"""What the benchmarks share: a database of their own, the synthetic city, the real API in a uvicorn
subprocess, statements counted per request, timing summaries, the machine's facts and the results file."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from psycopg import sql
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from deploy import runtime
from deploy.seed import SeedResult, seed_synthetic
from deploy.seed_requests import seed_synthetic_requests
from deploy.settings import REPO_ROOT, Settings
from schema.app import create_app
from tenants.db import Database
from tenants.roles import Role
from tests.helpers import free_port, record_statements

DEFAULT_OUTPUT = Path("tests/bench/results.json")


class BenchError(Exception):
    """The benchmark could not measure what it claims to (a wrong answer, a dead server)."""


# A database of the benchmark's own.


def with_database(url: str, database: str) -> str:
    return make_url(url).set(drivername="postgresql", database=database).render_as_string(hide_password=False)


def admin_execute(settings: Settings, statement: sql.Composed) -> None:
    with psycopg.connect(with_database(settings.database_url, "postgres"), autocommit=True) as connection:
        connection.execute(statement)


def bench_settings(base: Settings, database: str, broker_url: str | None = None) -> Settings:
    """Settings pointing at `database` (and at `broker_url`, when given, instead of the base's broker)."""
    # A fresh Settings, not model_copy: app_url and owner_url are cached properties of database_url.
    return Settings(
        DATABASE_URL=with_database(base.database_url, database),
        APP_DATABASE_URL=None,
        CELERY_BROKER_URL=broker_url or base.celery_broker_url,
    )


@contextmanager
def bench_database(base: Settings, database: str, broker_url: str | None = None) -> Iterator[Settings]:
    """A fresh database, dropped afterwards; yields settings pointing at it."""
    name = sql.Identifier(database)
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name)
    admin_execute(base, drop)
    admin_execute(base, sql.SQL("CREATE DATABASE {}").format(name))
    try:
        yield bench_settings(base, database, broker_url)
    finally:
        admin_execute(base, drop)


def redis_broker_url(settings: Settings, number: int, benchmark: str) -> str:
    """The settings' Redis broker with database `number`, one the benchmark has to itself."""
    base = settings.celery_broker_url
    if not base.startswith("redis://"):
        raise BenchError(f"the {benchmark} benchmark needs a Redis broker")
    return base.rsplit("/", 1)[0] + f"/{number}"


@contextmanager
def emptied_afterwards(broker_url: str) -> Iterator[None]:
    """Nothing consumes a benchmark's tasks: its Redis database is emptied when the block ends."""
    try:
        yield
    finally:
        redis.Redis.from_url(broker_url).flushdb()


def superuser_url(settings: Settings) -> str:
    """The settings' database as a libpq URL, as the role of DATABASE_URL (no RLS)."""
    return make_url(settings.database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def maintain(settings: Settings, statement: str) -> float:
    """Run VACUUM or ANALYZE (outside a transaction) on the settings' database; returns the seconds taken."""
    with psycopg.connect(superuser_url(settings), autocommit=True) as connection:
        started = time.perf_counter()
        connection.execute(statement)
        return time.perf_counter() - started


# The synthetic city.


@dataclass(frozen=True)
class City:
    tenant: str
    districts: int
    streets: int  # per district
    stations: int  # per street
    seed: int

    def dataset(self) -> dict[str, Any]:
        """The city's shape as the results file records it."""
        return {
            "tenant": self.tenant,
            "districts": self.districts,
            "streets_per_district": self.streets,
            "stations_per_street": self.stations,
            "seed": self.seed,
        }


def seed_city(
    settings: Settings, city: City, *, shapes: bool = False, requests: int = 0, request_days: int = 365
) -> SeedResult:
    """The synthetic city as the app role (with `shapes`: its shapes and grid cells), then `requests`
    synthetic requests over the last `request_days` days."""

    async def seed() -> SeedResult:
        database = Database(settings.app_url)
        try:
            result = await seed_synthetic(
                database,
                city.tenant,
                districts=city.districts,
                streets=city.streets,
                stations=city.stations,
                seed=city.seed,
                shapes=shapes,
            )
            if requests:
                await seed_synthetic_requests(
                    database, city.tenant, requests, days=request_days, seed=city.seed
                )
            return result
        finally:
            await database.dispose()

    return asyncio.run(seed())


def issue_token(
    settings: Settings,
    tenant: str,
    principal: str,
    scopes: list[str],
    role: Role,
    ttl: timedelta = timedelta(hours=2),
) -> str:
    return runtime.token_codec(settings).issue(
        sub=principal, tenant=tenant, scopes=scopes, roles=[role.value], ttl=ttl
    )


# The real API.


@contextmanager
def api_server(settings: Settings, workers: int = 1) -> Iterator[str]:
    """The real API in a uvicorn subprocess (`workers` processes); yields its base URL and always stops it."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "APP_DATABASE_URL"}
    env["DATABASE_URL"] = settings.database_url
    argv = [sys.executable, "-m", "uvicorn", "deploy.asgi:app", "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    process = subprocess.Popen([*argv, "--log-level", "warning"], cwd=REPO_ROOT, env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise BenchError(f"the API server exited with code {process.returncode}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)  # not listening yet
            if time.monotonic() > deadline:
                raise BenchError("the API server did not answer /healthz within 60 s")
            time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class StatementCount:
    total: int
    set_local: int

    @property
    def excluding_set_local(self) -> int:
        return self.total - self.set_local

    def figures(self) -> dict[str, int]:
        return {"total": self.total, "excluding_set_local": self.excluding_set_local}


def count_request_statements(
    settings: Settings,
    token: str,
    bodies: Mapping[str, str | bytes],
    check: Callable[[str, httpx.Response], object],
) -> dict[str, StatementCount]:
    """Statements each GraphQL request body runs, counted in-process on the app's engine; `check` raises
    on a wrong answer. The first request also resolves the tenant code (cached afterwards): the second
    one is counted."""

    async def count() -> dict[str, StatementCount]:
        config = runtime.api_config(settings)
        app = create_app(config)
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        counts: dict[str, StatementCount] = {}
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=60) as client:
                for name, body in bodies.items():
                    for _ in range(2):
                        with record_statements(config.database.engine.sync_engine) as statements:
                            check(name, await client.post("/graphql", content=body, headers=headers))
                    set_local = sum(s.lstrip().upper().startswith("SET LOCAL") for s in statements)
                    counts[name] = StatementCount(len(statements), set_local)
        finally:
            await config.database.dispose()
        return counts

    return asyncio.run(count())


# Figures.


def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def summary(values: list[float]) -> dict[str, float | int]:
    return {
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


def server_version(connection: psycopg.Connection[Any]) -> str:
    row = connection.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        return platform.processor() or "unknown"
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    names = ("strawberry-graphql", "graphql-core", "starlette", "uvicorn", "sqlalchemy", "psycopg", "httpx")
    return {name: metadata.version(name) for name in names}


def machine(
    load_before: tuple[float, float, float], facts: Mapping[str, Any], *, with_platform: bool = True
) -> dict[str, Any]:
    """The machine a run measured on: CPUs, (the platform and Python,) `facts`, the load average before
    and after the run, and the packages' versions."""
    described: dict[str, Any] = {"cpu_count": os.cpu_count(), "cpu_model": cpu_model()}
    if with_platform:
        described.update(platform=platform.platform(), python=platform.python_version())
    return {
        **described,
        **facts,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "packages": versions(),
    }


def write_output(path: Path, figures: dict[str, Any], key: str) -> None:
    """Merge `figures` into the results file under `key`, keeping the other benchmarks' figures."""
    existing: dict[str, Any] = {}
    if path.exists():
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise BenchError(f"{path} does not hold a JSON object; not overwriting it")
        existing = loaded
    existing[key] = figures
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(existing, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def table(title: str, *columns: str) -> Table:
    """A table whose first column names the row and the others hold numbers."""
    result = Table(title=title)
    result.add_column(columns[0], no_wrap=True)
    for column in columns[1:]:
        result.add_column(column, justify="right")
    return result


def timings_table(title: str, groups: Iterable[Mapping[str, Mapping[str, float | int]]]) -> Table:
    """p50, p95, min and n of every measurement in `groups` (summaries by name)."""
    timings = table(title, "measurement", "p50", "p95", "min", "n")
    for group in groups:
        for name, values in group.items():
            timings.add_row(name, *(f"{values[key]:.2f}" for key in ("p50", "p95", "min")), str(values["n"]))
    return timings


# Running a benchmark.


def argument_parser(module: str, description: str) -> argparse.ArgumentParser:
    """The command line of `python -m tests.bench.<module>`, with the results file as --output."""
    parser = argparse.ArgumentParser(prog=f"python -m tests.bench.{module}", description=description)
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file, relative to the repo root"
    )
    return parser


def measure_and_record(
    measure: Callable[[], dict[str, Any]],
    output: Path,
    key: str,
    print_figures: Callable[[dict[str, Any], Console], None],
    console: Console | None = None,
) -> int:
    """Run the benchmark, merge its figures into `output` (relative to the repo root) under `key` and
    print them; the exit code is non-zero only when the benchmark fails."""
    console = console or Console()
    path = output if output.is_absolute() else REPO_ROOT / output
    try:
        figures = measure()
    except BenchError as error:
        console.print(f"[red]benchmark failed:[/] {error}")
        return 1
    write_output(path, figures, key=key)
    print_figures(figures, console)
    console.print(f"written to {path}")
    return 0
