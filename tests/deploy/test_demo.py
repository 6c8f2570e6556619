"""The demo's hints: the URL only once the server listens, and a sign-in mutation that runs as printed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx

from deploy.cli import local_url, sign_in_mutation, wait_until_listening
from deploy.seed import DEMO_PASSWORD
from deploy.settings import REPO_ROOT
from tests.deploy.conftest import liaison
from tests.helpers import Api, TenantInfo, free_port


async def test_the_printed_sign_in_mutation_runs(api: Api, alpha: TenantInfo) -> None:
    # The synthetic tenants get the demo's admin user, with the demo's password.
    printed = sign_in_mutation(alpha.code, "admin", DEMO_PASSWORD)
    response = await api.client.post("/graphql", json={"query": printed})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    login = body["data"]["login"]
    assert login["__typename"] == "LoginPayload" and login["expiresAt"]
    me = await api.gql("{ me { tenant roles } }", token=login["token"])
    assert me["me"] == {"tenant": alpha.code, "roles": ["city_admin"]}
    wrong = await api.client.post("/graphql", json={"query": sign_in_mutation(alpha.code, "admin", "nope")})
    assert wrong.json()["data"]["login"]["code"] == "INVALID_CREDENTIALS"


def serve(cli_env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "uvicorn", "deploy.asgi:app", "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(argv, env=cli_env, cwd=REPO_ROOT, stderr=subprocess.DEVNULL)


def test_wait_until_listening_returns_once_the_server_answers(cli_env: dict[str, str]) -> None:
    port = free_port()
    server = serve(cli_env, port)
    try:
        assert wait_until_listening(server, local_url("127.0.0.1", port), timeout=60)
        # The moment it returns, the printed URL works.
        page = httpx.get(f"http://127.0.0.1:{port}/graphql", headers={"Accept": "text/html"}, timeout=5)
        assert page.status_code == 200 and "graphiql" in page.text.lower()
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_wait_until_listening_says_no_when_the_server_exits(cli_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = serve(cli_env, port)  # cannot bind: uvicorn exits
        began = time.monotonic()
        assert not wait_until_listening(server, local_url("127.0.0.1", port), timeout=60)
        assert server.poll() is not None and time.monotonic() - began < 60


def test_demo_refuses_a_taken_port_before_seeding(cli_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        began = time.monotonic()
        done = liaison(cli_env, "demo", "--port", str(port))
    assert done.returncode == 2, done.stderr
    assert f"something already listens on 127.0.0.1:{port}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""
    assert time.monotonic() - began < 30  # no migration, no seeding


def test_local_url_reaches_wildcard_addresses() -> None:
    assert local_url("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert local_url("::", 8000) == "http://[::1]:8000"
    assert local_url("10.1.2.3", 81) == "http://10.1.2.3:81"
