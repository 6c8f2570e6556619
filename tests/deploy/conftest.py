"""Running the `liaison` command as an operator would: a real process on the test database."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from deploy.settings import REPO_ROOT, Settings
from tests.conftest import TEST_SECRET


@pytest.fixture(scope="package")
def cli_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "CELERY_BROKER_URL": settings.celery_broker_url,
        "LIAISON_JWT_SECRET": TEST_SECRET,
        "COLUMNS": "200",
    }


def liaison(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
