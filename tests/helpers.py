from __future__ import annotations

import asyncio
import functools
import os
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import redis
from shapely import MultiPolygon, Polygon
from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncSession

from deploy.seed import seed_synthetic
from geo.boundaries import add_grid_cell
from schema.context import ApiConfig
from schema.schema import build_schema
from services.matching.optimiser import Candidate
from services.meetings.service import Actor
from services.outbox.service import Publisher
from services.unit_of_work import UnitOfWork
from tenants.context import TenantContext, city_scope
from tenants.db import Database
from tenants.identity import Assignment, create_user
from tenants.models import User
from tenants.principals import resident_scope
from tenants.roles import Role

T = TypeVar("T")
TEST_SECRET = "test-secret-for-hs256-tokens-only-in-tests-0123456789"


def process_env(database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    """The environment of a process a test starts (a worker, a command): the test database and broker,
    and nothing the shell exports about services (Celery reads CELERY_* itself, before its own settings)."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CELERY_") and key not in {"APP_DATABASE_URL", "DATABASE_URL"}
    }
    return {
        **inherited,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "LIAISON_JWT_SECRET": TEST_SECRET,
        **extra,
    }


@dataclass(frozen=True)
class TenantInfo:
    code: str
    tenant_id: int

    @property
    def scope(self) -> str:
        return city_scope(self.tenant_id)


class Api:
    def __init__(self, client: httpx.AsyncClient, config: ApiConfig) -> None:
        self.client = client
        self.config = config

    def token(
        self,
        tenant: TenantInfo | str,
        roles: list[str],
        scopes: list[str] | None = None,
        *,
        sub: str = "operator:test",
        ttl: timedelta = timedelta(minutes=10),
    ) -> str:
        code = tenant.code if isinstance(tenant, TenantInfo) else tenant
        default = [tenant.scope] if isinstance(tenant, TenantInfo) else ["c1"]
        return self.config.tokens.issue(sub=sub, tenant=code, scopes=scopes or default, roles=roles, ttl=ttl)

    async def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        all_headers = {**(headers or {})}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        return await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=all_headers
        )

    def input_type(self, mutation: str) -> str:
        """The GraphQL type of the `input` argument of `mutation`, as the API's schema declares it."""
        return mutation_arguments(self.config)[mutation]["input"]

    async def gql(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> Any:
        """Data of a query that must succeed."""
        response = await self.post(query, variables, token)
        assert response.status_code == 200, response.text
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    @contextmanager
    def count_statements(self) -> Iterator[list[str]]:
        with record_statements(self.config.database.engine.sync_engine) as statements:
            yield statements


@functools.cache
def mutation_arguments(config: ApiConfig) -> dict[str, dict[str, str]]:
    """The GraphQL type of every argument of every mutation of the API's schema."""
    mutation_type = build_schema(config)._schema.mutation_type
    assert mutation_type is not None
    return {
        name: {argument: str(spec.type) for argument, spec in field.args.items()}
        for name, field in mutation_type.fields.items()
    }


@contextmanager
def record_statements(engine: Engine) -> Iterator[list[str]]:
    """The statements `engine` sends to the database while the block runs."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def free_port() -> int:
    """A loopback port nothing listens on (for a server a test or a benchmark starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_for(probe: Callable[[], Awaitable[T]], *, within: float = 30.0, interval: float = 0.2) -> T:
    """Poll until probe returns a truthy value (work done by another process)."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing happened within {within} s")
        await asyncio.sleep(interval)


def start_redis_server(port: int, directory: Path, *options: str) -> subprocess.Popen[bytes]:
    """A redis-server on loopback `port` keeping its files in `directory` (with `options`, such as its
    persistence), returned once it answers PING."""
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    argv += ["--protected-mode", "no", *options]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            if redis.Redis(port=port, socket_timeout=1).ping():
                return process
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def commit_step(
    database: Database,
    context: TenantContext,
    publisher: Publisher,
    work: Callable[[AsyncSession], Awaitable[T]],
) -> T:
    """One transaction in `context`, rolled back if `work` raises; its outbox is published by `publisher`
    after the commit."""
    unit = UnitOfWork(database, context, publisher=publisher)
    session = await unit.session()
    try:
        result = await work(session)
    except BaseException:
        await unit.rollback()
        raise
    await unit.commit()
    return result


def meeting_organiser(tenant_id: int, station_scope: str) -> Actor:
    """A station liaison who organises the station's meetings."""
    return Actor(TenantContext(tenant_id, (station_scope,), "user:organiser"), frozenset({"station_liaison"}))


def meeting_party(tenant_id: int, principal: str) -> Actor:
    """A resident invited to a meeting."""
    return Actor(TenantContext(tenant_id, (resident_scope(tenant_id),), principal), frozenset({"resident"}))


def scalar(dsn: str, statement: str, *args: Any) -> int:
    """The whole number `statement` selects (0 for no row or NULL), on a connection of its own."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(statement, args).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


class MeetingEffects:
    """Every effect of a meeting, counted in the database."""

    def __init__(self, dsn: str, tenant_id: int, meeting_id: int) -> None:
        self.dsn, self.tenant_id, self.meeting_id = dsn, tenant_id, meeting_id

    def count(self, table: str, condition: str, *args: Any) -> int:
        """Rows of the tenant's `table` that meet `condition`."""
        statement = f"SELECT count(*) FROM {table} WHERE tenant_id = %s AND {condition}"
        return scalar(self.dsn, statement, self.tenant_id, *args)

    @property
    def sources(self) -> str:
        """The LIKE pattern of the sources of the meeting's notifications."""
        return f"meeting:{self.meeting_id}:%"

    def notices(self) -> int:
        return self.count("meeting_notices", "meeting_id = %s", self.meeting_id)

    def outbox_notices(self) -> int:
        return self.count("outbox", "task = 'notifications.send' AND kwargs->>'source' LIKE %s", self.sources)

    def delivered(self) -> int:
        return self.count("notifications", "source LIKE %s", self.sources)

    def unsent(self) -> int:
        return self.count("outbox", "sent_at IS NULL")

    async def settle(self, expected: int, within: float = 40.0) -> None:
        """Wait until `expected` notices exist and are delivered, then check that no more appear."""

        async def done() -> bool:
            counts = await asyncio.to_thread(
                lambda: (self.notices(), self.outbox_notices(), self.delivered())
            )
            return all(c >= expected for c in counts)

        await wait_for(done, within=within)
        await asyncio.sleep(1.0)
        assert (self.notices(), self.outbox_notices(), self.delivered()) == (expected, expected, expected)


async def seed_stations(
    database: Database,
    owner_dsn: str,
    code: str,
    *,
    districts: int = 1,
    streets: int,
    stations: int,
    seed: int,
    order_by: str = "id",
) -> tuple[TenantInfo, list[tuple[int, str]]]:
    """A synthetic tenant of a test's own, and its stations as (id, scope) ordered by `order_by`."""
    result = await seed_synthetic(
        database, code, districts=districts, streets=streets, stations=stations, seed=seed
    )
    with psycopg.connect(owner_dsn) as conn:
        rows = conn.execute(
            f"SELECT id, scope::text FROM stations WHERE tenant_id = %s ORDER BY {order_by}",
            (result.tenant_id,),
        ).fetchall()
    return TenantInfo(code, result.tenant_id), [(int(row[0]), str(row[1])) for row in rows]


async def add_square_cell(
    session: AsyncSession, tenant_id: int, station: tuple[int, str], code: str, name: str, square: Polygon
) -> int:
    """A grid cell of `station` (id, scope) covering `square`; its id."""
    station_id, station_scope = station
    return await add_grid_cell(
        session,
        tenant_id=tenant_id,
        station_id=station_id,
        station_scope=station_scope,
        code=code,
        name=name,
        geometry=MultiPolygon([square]),
    )


def select_rows(dsn: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """The rows `sql` selects, on a connection of its own."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


async def owner_rows(owner_dsn: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """The rows `sql` selects, read in a thread (the event loop keeps going)."""
    return await asyncio.to_thread(select_rows, owner_dsn, sql, *params)


async def notices_asked(owner_dsn: str, tenant_id: int, source: str) -> list[dict[str, Any]]:
    """The arguments of the notification tasks the tenant's outbox asked for from `source`, in order."""
    rows = await owner_rows(
        owner_dsn,
        "SELECT kwargs FROM outbox WHERE tenant_id = %s AND task = 'notifications.send'"
        " AND kwargs->>'source' LIKE %s ORDER BY id",
        tenant_id,
        f"{source}:%",
    )
    return [row[0] for row in rows]


async def create_station_user(
    session: AsyncSession,
    tenant_id: int,
    station_scope: str,
    username: str,
    display_name: str,
    *,
    password: str,
    role: Role = Role.DEPUTY,
) -> User:
    """A user who lives at the station and holds `role` there (a deputy unless told)."""
    return await create_user(
        session,
        tenant_id,
        username=username,
        password=password,
        display_name=display_name,
        home_scope=station_scope,
        assignments=[Assignment(role, station_scope)],
    )


async def audit_actions(owner_dsn: str, tenant_id: int, subject: str) -> list[str]:
    """The actions the tenant's audit chain holds about `subject`, in order."""
    rows = await owner_rows(
        owner_dsn,
        "SELECT action FROM audit_log WHERE tenant_id = %s AND subject = %s ORDER BY seq",
        tenant_id,
        subject,
    )
    return [str(action) for (action,) in rows]


def brute_force(candidates: list[Candidate], capacity: dict[int, int]) -> float:
    """The best total of an assignment, by trying every one (each demand to one of its candidates or none)."""
    by_demand: dict[int, list[Candidate]] = {}
    for c in candidates:
        by_demand.setdefault(c.demand, []).append(c)
    demands = sorted(by_demand)
    best = 0.0
    left = dict(capacity)

    def walk(index: int, total: float) -> None:
        nonlocal best
        if index == len(demands):
            best = max(best, total)
            return
        walk(index + 1, total)
        for c in by_demand[demands[index]]:
            if c.score > 0 and left.get(c.resource, 0) > 0:
                left[c.resource] -= 1
                walk(index + 1, total + c.score)
                left[c.resource] += 1

    walk(0, 0.0)
    return best
