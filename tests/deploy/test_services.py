"""deploy/local/services.sh starts, reuses and stops only this checkout's own PostgreSQL and Redis.

Each test runs a copy of the script in a checkout of its own under a temporary directory (the script finds
its checkout from where it lies), with real servers on free ports; the checkout's own running instances are
only ever looked at. The temporary directory is one the `postgres` user cannot enter, so the private cluster
goes to /var/lib/liaison-grid/<hash>, as it does for a checkout under /root."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from deploy.settings import REPO_ROOT
from tests.helpers import free_port

SCRIPT = REPO_ROOT / "deploy" / "local" / "services.sh"
MAIN_PG_PORT = 55432


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[Path]:
    """A checkout holding only the script; whatever it starts is stopped (by pid) and removed afterwards."""
    root = tmp_path / "checkout"
    (root / "deploy" / "local").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "deploy" / "local" / "services.sh")
    yield root
    pid_file = root / ".local" / "redis" / "redis.pid"
    if pid_file.exists():
        stop_pid(int(pid_file.read_text().strip()), "redis-server")
    data = (root / ".local" / "pg").resolve()
    postmaster = data / "postmaster.pid"
    if postmaster.exists():
        stop_pid(int(postmaster.read_text().splitlines()[0]), "postgres")
    hashed = Path("/var/lib/liaison-grid") / hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    shutil.rmtree(hashed, ignore_errors=True)


def stop_pid(pid: int, name: str) -> None:
    """Stop a server this test started, if that pid is still that server."""
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != name:
            return
        os.kill(pid, signal.SIGTERM)
    except (FileNotFoundError, ProcessLookupError):
        return
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)


def run(root: Path, command: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    clean = {k: v for k, v in clean.items() if not k.startswith("LIAISON_")}
    return subprocess.run(
        ["bash", str(root / "deploy" / "local" / "services.sh"), command],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def foreign_redis(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A redis-server of someone else's (not started by the script): its port and pid."""
    port = free_port()
    directory = tmp_path / "foreign"
    directory.mkdir()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(directory)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            if client.ping():
                break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.set("owner", "someone else")
    yield port, process.pid
    process.terminate()
    process.wait(timeout=10)


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether process `pid` has exited (or is only a zombie waiting for its parent) within `within` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def main_postmaster_pid() -> int:
    return int((REPO_ROOT / ".local" / "pg" / "postmaster.pid").read_text().splitlines()[0])


def test_start_refuses_a_redis_of_another_and_stop_leaves_it(
    checkout: Path, foreign_redis: tuple[int, int]
) -> None:
    port, pid = foreign_redis
    env = {"LIAISON_REDIS_PORT": str(port), "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}
    started = run(checkout, "start", **env)
    assert started.returncode == 1, started.stdout + started.stderr
    (sentence,) = started.stderr.strip().splitlines()
    assert f"port {port} is taken by redis-server (pid {pid})" in sentence
    assert "not this checkout's Redis" in sentence and "LIAISON_REDIS_PORT" in sentence
    assert not (checkout / ".local" / "services.env").exists()

    stopped = run(checkout, "stop", **env, LIAISON_PG_PORT=str(free_port()))
    assert stopped.returncode == 0, stopped.stderr
    assert f"left redis-server (pid {pid}) on port {port} running" in stopped.stderr
    client = redis.Redis(port=port)
    assert client.ping() and client.get("owner") == b"someone else"
    assert client.info("server")["process_id"] == pid


def test_own_redis_is_reused_and_stopped_by_its_pid_file(
    checkout: Path, foreign_redis: tuple[int, int]
) -> None:
    foreign_port, foreign_pid = foreign_redis
    port = free_port()
    env = {"LIAISON_REDIS_PORT": str(port), "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}
    first = run(checkout, "start", **env)
    assert first.returncode == 0, first.stderr
    assert f"broker: redis://127.0.0.1:{port}/0" in first.stdout
    pid_file = checkout / ".local" / "redis" / "redis.pid"
    pid = int(pid_file.read_text())
    assert redis.Redis(port=port).info("server")["process_id"] == pid
    again = run(checkout, "start", **env)
    assert again.returncode == 0 and int(pid_file.read_text()) == pid  # reused, not a second server
    assert f"running (pid {pid}" in run(checkout, "status", **env).stdout

    # Asked for another port while running: it says so rather than start a second one or move this one.
    moved = run(checkout, "start", **{**env, "LIAISON_REDIS_PORT": str(free_port())})
    assert moved.returncode == 1 and f"this checkout's Redis (pid {pid})" in moved.stderr

    assert run(checkout, "stop", **env, LIAISON_PG_PORT=str(free_port())).returncode == 0
    assert gone(pid) and not pid_file.exists()

    # A pid file naming a live redis-server that is not ours (a reused pid) is neither stopped nor reused.
    pid_file.write_text(f"{foreign_pid}\n")
    assert run(checkout, "stop", **env, LIAISON_PG_PORT=str(free_port())).returncode == 0
    assert redis.Redis(port=foreign_port).ping()
    restarted = run(checkout, "start", **env)
    assert restarted.returncode == 0, restarted.stderr
    assert int(pid_file.read_text()) not in (pid, foreign_pid)
    assert redis.Redis(port=foreign_port).info("server")["process_id"] == foreign_pid


def test_start_refuses_a_postgresql_of_another_checkout(checkout: Path) -> None:
    """This checkout's own cluster answers on 55432; for the copy it is another checkout's server."""
    before = main_postmaster_pid()
    env = {"LIAISON_PG_PORT": str(MAIN_PG_PORT), "CELERY_BROKER_URL": "redis://127.0.0.1:9/0"}
    started = run(checkout, "start", **env)
    assert started.returncode == 1, started.stdout + started.stderr
    (sentence,) = started.stderr.strip().splitlines()
    assert f"port {MAIN_PG_PORT} is taken by postgres (pid {before})" in sentence
    assert "not this checkout's PostgreSQL" in sentence
    assert not (checkout / ".local" / "pg" / "PG_VERSION").exists()  # no cluster was made for nothing

    stopped = run(checkout, "stop", **env, LIAISON_REDIS_PORT=str(free_port()))
    assert stopped.returncode == 0, stopped.stderr
    assert f"left postgres (pid {before}) on port {MAIN_PG_PORT} running" in stopped.stderr
    assert main_postmaster_pid() == before and not gone(before, within=0.5)


def test_own_postgresql_starts_where_postgres_can_reach_it_and_is_reused(checkout: Path) -> None:
    port = free_port()
    env = {"LIAISON_PG_PORT": str(port), "CELERY_BROKER_URL": "redis://127.0.0.1:9/0"}
    first = run(checkout, "start", **env)
    assert first.returncode == 0, first.stderr
    assert f"database: postgresql://postgres@127.0.0.1:{port}/liaison" in first.stdout
    link = checkout / ".local" / "pg"
    assert link.is_symlink() and str(link.resolve()).startswith("/var/lib/liaison-grid/")
    postmaster = link.resolve() / "postmaster.pid"
    pid = int(postmaster.read_text().splitlines()[0])
    assert run(checkout, "start", **env).returncode == 0
    assert int(postmaster.read_text().splitlines()[0]) == pid  # reused

    elsewhere = run(checkout, "start", **{**env, "LIAISON_PG_PORT": str(free_port())})
    assert elsewhere.returncode == 1
    assert f"already runs on port {port}" in elsewhere.stderr

    assert run(checkout, "stop", **env, LIAISON_REDIS_PORT=str(free_port())).returncode == 0
    assert not postmaster.exists() and gone(pid)
    assert not gone(main_postmaster_pid(), within=0.5)  # the checkout's own cluster is untouched
