"""Settings as the processes use them: the API's bounded waits, and production refusing unsafe defaults."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from deploy import runtime
from deploy.settings import REPO_ROOT, Settings
from tests.deploy.conftest import liaison
from tests.helpers import free_port

STRONG_SECRET = "a-production-secret-that-is-long-enough-0123456789"
UNSAFE = (
    "LIAISON_OWNER_PASSWORD",
    "LIAISON_APP_PASSWORD",
    "APP_DATABASE_URL",
    "LIAISON_JWT_SECRET",
    "LIAISON_JWT_ALGORITHM",
    "LIAISON_JWT_PUBLIC_KEY_FILE",
    "LIAISON_JWT_PRIVATE_KEY_FILE",
)


async def shown(database_settings: Settings, *names: str, api: bool) -> list[str]:
    database = runtime.api_database(database_settings) if api else runtime.database(database_settings)
    try:
        async with database.engine.connect() as connection:
            return [str(await connection.scalar(text(f"SHOW {name}"))) for name in names]
    finally:
        await database.dispose()


async def test_the_api_bounds_its_waits_and_commands_do_not(settings: Settings) -> None:
    bounded = Settings(
        DATABASE_URL=settings.database_url,
        LIAISON_DB_POOL_TIMEOUT=0.75,
        LIAISON_STATEMENT_TIMEOUT=1.5,
        LIAISON_LOCK_TIMEOUT=0.25,
    )
    assert await shown(bounded, "statement_timeout", "lock_timeout", api=True) == ["1500ms", "250ms"]
    assert runtime.api_database(bounded).engine.pool.timeout() == 0.75  # type: ignore[attr-defined]
    # Commands (migrate, seed, import) and the workers wait as long as their work takes.
    assert await shown(bounded, "statement_timeout", "lock_timeout", api=False) == ["0", "0"]
    defaults = Settings(DATABASE_URL=settings.database_url)
    assert (defaults.db_pool_timeout, defaults.statement_timeout, defaults.lock_timeout) == (2.0, 10.0, 2.0)
    assert await shown(defaults, "statement_timeout", "lock_timeout", api=True) == ["10s", "2s"]


def production_env(cli_env: dict[str, str], **values: str) -> dict[str, str]:
    env = {key: value for key, value in cli_env.items() if key not in UNSAFE}
    return {**env, "LIAISON_PRODUCTION": "true", **values}


SAFE = {
    "LIAISON_OWNER_PASSWORD": "owner-secret-0",
    "LIAISON_APP_PASSWORD": "app-secret-0",
    "LIAISON_JWT_SECRET": STRONG_SECRET,
}


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"LIAISON_OWNER_PASSWORD": "liaison_owner"}, "LIAISON_OWNER_PASSWORD"),
        ({"LIAISON_OWNER_PASSWORD": ""}, "LIAISON_OWNER_PASSWORD"),
        ({"LIAISON_APP_PASSWORD": "liaison_app"}, "app role's password"),
        ({"APP_DATABASE_URL": "postgresql://liaison_app:liaison_app@127.0.0.1:9/x"}, "app role's password"),
        ({"LIAISON_JWT_SECRET": ""}, "LIAISON_JWT_SECRET"),
        ({"LIAISON_JWT_SECRET": "short-secret"}, "LIAISON_JWT_SECRET"),
        ({"LIAISON_JWT_ALGORITHM": "RS256"}, "LIAISON_JWT_PUBLIC_KEY_FILE"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "worker", "migrate"])
def test_production_refuses_the_readme_defaults(
    cli_env: dict[str, str], command: str, changes: dict[str, str], says: str
) -> None:
    env = production_env(cli_env, **{**SAFE, **changes})
    done = liaison(env, command, "--port", str(free_port())) if command == "serve" else liaison(env, command)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stdout == ""


def test_production_refuses_when_no_password_is_set(cli_env: dict[str, str]) -> None:
    done = liaison(production_env(cli_env), "serve", "--port", str(free_port()))
    assert done.returncode == 2
    assert done.stderr.startswith("liaison: LIAISON_PRODUCTION is true but LIAISON_OWNER_PASSWORD")


def test_celery_with_the_app_refuses_in_one_sentence(cli_env: dict[str, str]) -> None:
    argv = [sys.executable, "-m", "celery", "-A", "deploy.worker", "inspect", "ping"]
    done = subprocess.run(
        argv, env=production_env(cli_env), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("liaison: LIAISON_PRODUCTION is true but LIAISON_OWNER_PASSWORD")
    assert "Traceback" not in done.stderr


def test_uvicorn_import_refuses_and_never_listens(cli_env: dict[str, str]) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "deploy.asgi:app", "--port", str(port)]
    done = subprocess.run(
        argv, env=production_env(cli_env), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "liaison: LIAISON_PRODUCTION is true but LIAISON_OWNER_PASSWORD" in done.stderr
    assert "Traceback" not in done.stderr and "Uvicorn running" not in done.stderr


def test_production_with_real_secrets_serves(cli_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = production_env(cli_env, **SAFE)
    argv = [sys.executable, "-m", "deploy", "serve", "--port", str(port)]
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        server = subprocess.Popen(argv, env=env, cwd=REPO_ROOT, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /healthz within 60 s"
            time.sleep(0.2)
        # Production: no GraphiQL page.
        page = httpx.get(f"http://127.0.0.1:{port}/graphql", headers={"Accept": "text/html"}, timeout=5)
        assert page.status_code == 404
    finally:
        server.terminate()
        server.wait(timeout=20)
