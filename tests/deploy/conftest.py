"""Running the `liaison` command as an operator would: a real process on the test database."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deploy.settings import REPO_ROOT, Settings
from tests.helpers import process_env


@pytest.fixture(scope="package")
def cli_env(settings: Settings) -> dict[str, str]:
    return process_env(settings.database_url, settings.celery_broker_url, COLUMNS="200")


def liaison(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
