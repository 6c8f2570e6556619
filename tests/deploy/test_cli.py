"""The `liaison` command as an operator runs it: real processes on the test database."""

from __future__ import annotations

import subprocess

import jwt
import psycopg
import pytest

from tests.deploy.conftest import liaison
from tests.helpers import TEST_SECRET, TenantInfo


def liaison_seed_synthetic(
    cli_env: dict[str, str],
    tenant: str,
    *,
    districts: int,
    streets: int,
    stations: int,
    seed: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """`liaison seed synthetic` of a tenant of that shape (with the command's default seed unless given)."""
    shape = ["--districts", str(districts), "--streets", str(streets), "--stations", str(stations)]
    seeded = ["--seed", str(seed)] if seed is not None else []
    return liaison(cli_env, "seed", "synthetic", "--tenant", tenant, *shape, *seeded)


def test_token_is_signed_and_scoped(cli_env: dict[str, str], alpha: TenantInfo) -> None:
    done = liaison(
        cli_env, "token", "--tenant", "alpha", "--role", "district_staff", "--scope", "D002", "--ttl", "30m"
    )
    assert done.returncode == 0, done.stderr
    claims = jwt.decode(done.stdout.strip(), TEST_SECRET, algorithms=["HS256"], issuer="liaison-grid")
    assert claims["tenant"] == "alpha" and claims["roles"] == ["district_staff"]
    (scope,) = claims["scopes"]
    assert scope.startswith(alpha.scope + ".d")
    assert claims["exp"] - claims["iat"] == 1800
    whole = liaison(cli_env, "token", "--tenant", "alpha", "--role", "city_admin")
    assert jwt.decode(whole.stdout.strip(), TEST_SECRET, algorithms=["HS256"], issuer="liaison-grid")[
        "scopes"
    ] == [alpha.scope]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["token", "--tenant", "alpha", "--role", "emperor"], "role 'emperor' is unknown"),
        (["token", "--tenant", "atlantis", "--role", "deputy"], "does not exist"),
        (["token", "--tenant", "alpha", "--role", "deputy", "--scope", "NOPE"], "has the code 'NOPE'"),
        (["token", "--tenant", "alpha", "--role", "deputy", "--scope", "c999.d1"], "outside tenant"),
        (["token", "--tenant", "alpha", "--role", "deputy", "--ttl", "5x"], "is not a duration"),
        (["token", "--role", "deputy"], "Missing option '--tenant'"),
        (["seed", "synthetic", "--tenant", "x1", "--districts", "0"], "greater than or equal to 1"),
        (["seed", "synthetic", "--tenant", "Bad Code"], "a tenant code is"),
        (["no-such-command"], "No such command"),
    ],
)
def test_bad_arguments_exit_2_with_one_sentence(
    cli_env: dict[str, str], alpha: TenantInfo, args: list[str], says: str
) -> None:
    done = liaison(cli_env, *args)
    assert done.returncode == 2
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stdout == ""


def test_synthetic_seed_is_deterministic_and_rerunnable(cli_env: dict[str, str], owner_dsn: str) -> None:
    first = liaison_seed_synthetic(cli_env, "delta", districts=2, streets=2, stations=3, seed=5)
    assert first.returncode == 0, first.stderr
    again = liaison_seed_synthetic(cli_env, "delta", districts=2, streets=2, stations=3, seed=5)
    assert again.returncode == 0
    twin = liaison_seed_synthetic(cli_env, "delta-twin", districts=2, streets=2, stations=3, seed=5)
    assert twin.returncode == 0
    with psycopg.connect(owner_dsn) as conn:

        def tree(code: str) -> list[tuple[str, str]]:
            return conn.execute(
                "SELECT s.code, s.name FROM stations s JOIN cities c USING (tenant_id) WHERE c.code = %s "
                "ORDER BY s.code",
                (code,),
            ).fetchall()

        assert len(tree("delta")) == 12
        assert tree("delta") == tree("delta-twin")


def test_audit_verify_reports_a_broken_link(cli_env: dict[str, str], owner_dsn: str) -> None:
    seeded = liaison_seed_synthetic(cli_env, "epsilon", districts=1, streets=1, stations=1)
    assert seeded.returncode == 0
    intact = liaison(cli_env, "audit", "verify", "--tenant", "epsilon")
    assert intact.returncode == 0 and "intact" in intact.stdout
    with psycopg.connect(owner_dsn) as conn:
        conn.execute(
            "UPDATE audit_log SET action = 'forged' FROM cities "
            "WHERE cities.tenant_id = audit_log.tenant_id AND cities.code = 'epsilon' AND seq = 1"
        )
    broken = liaison(cli_env, "audit", "verify", "--tenant", "epsilon")
    assert broken.returncode == 1
    assert "link 1 is broken" in broken.stdout


def test_an_unreachable_database_is_one_sentence(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/liaison"}
    done = liaison(env, "token", "--tenant", "alpha", "--role", "deputy")
    assert done.returncode == 1
    assert "cannot reach the database" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
