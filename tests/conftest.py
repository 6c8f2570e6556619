"""Fixtures on real parts: a fresh PostGIS database per run, the app role under RLS, a real Redis broker
and a real Celery worker process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from sqlalchemy.engine import make_url

from deploy import migrate
from deploy.seed import seed_synthetic
from deploy.settings import REPO_ROOT, Settings, load
from schema.app import create_app
from schema.context import ApiConfig
from services.celery_app import configure
from tenants.db import Database
from tenants.tokens import TokenCodec
from tests.helpers import TEST_SECRET, Api, TenantInfo, process_env


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _test_broker(url: str) -> str:
    """On Redis, a database of its own (7, or LIAISON_TEST_REDIS_DB), so a running demo, or another test
    run on the same machine, never sees the tests' tasks."""
    if not url.startswith("redis://"):
        return url
    number = int(os.environ.get("LIAISON_TEST_REDIS_DB", "7"))
    return re.sub(r"(/\d*)?$", f"/{number}", url, count=1)


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    base = load()
    name = f"liaison_test_{os.getpid()}"
    maintenance = _libpq(_with_database(base.database_url, "postgres"))
    with psycopg.connect(maintenance, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    broker = _test_broker(base.celery_broker_url)
    if broker.startswith("redis://"):
        redis.Redis.from_url(broker).flushdb()
    test_settings = Settings(
        DATABASE_URL=_with_database(base.database_url, name),
        CELERY_BROKER_URL=broker,
        # Derived from the test database's URL, whatever the shell exports.
        APP_DATABASE_URL=None,
        LIAISON_JWT_SECRET=TEST_SECRET,
    )
    migrate.upgrade(test_settings)
    configure(broker)
    yield test_settings
    with psycopg.connect(maintenance, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def owner_dsn(settings: Settings) -> str:
    return _libpq(settings.owner_url)


@pytest.fixture(scope="session")
def app_dsn(settings: Settings) -> str:
    return _libpq(settings.app_url)


@pytest.fixture(scope="session")
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = Database(settings.app_url, pool_size=5)
    yield db
    await db.dispose()


@pytest.fixture(scope="session")
def tokens() -> TokenCodec:
    return TokenCodec(secret=TEST_SECRET)


async def _tenant(database: Database, code: str, districts: int, streets: int, stations: int) -> TenantInfo:
    result = await seed_synthetic(
        database, code, districts=districts, streets=streets, stations=stations, seed=7
    )
    return TenantInfo(code=code, tenant_id=result.tenant_id)


@pytest.fixture(scope="session")
async def alpha(database: Database) -> TenantInfo:
    """A read-mostly tenant: 3 districts x 3 streets x 2 stations."""
    return await _tenant(database, "alpha", 3, 3, 2)


@pytest.fixture(scope="session")
async def beta(database: Database) -> TenantInfo:
    return await _tenant(database, "beta", 2, 2, 2)


@pytest.fixture(scope="session")
def api_config(database: Database, tokens: TokenCodec) -> ApiConfig:
    return ApiConfig(database=database, tokens=tokens)


@pytest.fixture(scope="session")
async def api(api_config: ApiConfig) -> AsyncIterator[Api]:
    app = create_app(api_config)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield Api(client, api_config)


@pytest.fixture(scope="session")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker process on the test broker and database."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    # Nothing the caller's shell exports for Celery (it reads CELERY_* itself) or the app's database
    # reaches the worker: it uses the run's own broker and database, as the test process does.
    env = process_env(settings.database_url, settings.celery_broker_url, APP_DATABASE_URL=settings.app_url)
    argv = [sys.executable, "-m", "celery", "-A", "deploy.worker", "worker", "--concurrency=1"]
    argv += [
        "--loglevel=info",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        f"--logfile={log}",
    ]
    process = subprocess.Popen(argv, env=env, cwd=REPO_ROOT)
    deadline = time.monotonic() + 60
    while not (log.exists() and "ready." in log.read_text()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the worker did not start:\n{log.read_text() if log.exists() else ''}")
        time.sleep(0.2)
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def worker_log(worker: subprocess.Popen[bytes], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "worker0" / "worker.log"
