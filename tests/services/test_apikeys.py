"""Open311 api keys: only the hash is kept, a revoked key is refused, and the `liaison apikey` commands."""

from __future__ import annotations

import hashlib
import os

import psycopg
import pytest

from deploy.seed import seed_synthetic
from deploy.settings import Settings
from services.errors import DuplicateCode, InvalidInput, NotFound
from services.requests import apikeys
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tests.deploy.conftest import liaison
from tests.helpers import TEST_SECRET, TenantInfo


@pytest.fixture(scope="module")
async def keyville(database: Database) -> TenantInfo:
    result = await seed_synthetic(database, "keyville", districts=2, streets=1, stations=1, seed=4)
    return TenantInfo("keyville", result.tenant_id)


@pytest.fixture(scope="module")
def env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "CELERY_BROKER_URL": settings.celery_broker_url,
        "LIAISON_JWT_SECRET": TEST_SECRET,
        "COLUMNS": "200",
    }


def system(tenant: TenantInfo) -> TenantContext:
    return TenantContext.whole_tenant(tenant.tenant_id, "system:test")


async def test_only_the_hash_is_stored_and_a_revoked_key_is_refused(
    database: Database, keyville: TenantInfo, owner_dsn: str
) -> None:
    tenant_id = keyville.tenant_id
    async with unit_of_work(database, system(keyville)) as session:
        key, plaintext = await apikeys.create_api_key(session, tenant_id, "mobile app")
    assert len(plaintext) >= 40
    with psycopg.connect(owner_dsn) as conn:
        row = conn.execute(
            "SELECT key_hash, scope::text, details::text FROM api_keys WHERE tenant_id = %s AND id = %s",
            (tenant_id, key.id),
        ).fetchone()
    assert row is not None
    assert row[0] == hashlib.sha256(plaintext.encode()).hexdigest()
    assert row[1] == keyville.scope
    assert plaintext not in "".join(row)

    async with unit_of_work(database, system(keyville)) as session:
        found = await apikeys.lookup(session, tenant_id, plaintext)
        assert found is not None and found.id == key.id
        assert await apikeys.lookup(session, tenant_id, plaintext + "x") is None
        assert await apikeys.lookup(session, tenant_id, "") is None
        revoked = await apikeys.revoke(session, tenant_id, "mobile app")
        first = revoked.revoked_at
        assert first is not None
        assert await apikeys.lookup(session, tenant_id, plaintext) is None
        again = await apikeys.revoke(session, tenant_id, "mobile app")
        assert again.revoked_at == first


async def test_names_scopes_and_tenants(database: Database, keyville: TenantInfo, alpha: TenantInfo) -> None:
    tenant_id = keyville.tenant_id
    district = f"{keyville.scope}.d1"
    async with unit_of_work(database, system(keyville)) as session:
        key, plaintext = await apikeys.create_api_key(session, tenant_id, "district reader", district)
        assert apikeys.key_context(key).scopes == (district,)
        with pytest.raises(DuplicateCode):
            await apikeys.create_api_key(session, tenant_id, "district reader")
        with pytest.raises(InvalidInput):
            await apikeys.create_api_key(session, tenant_id, "elsewhere", alpha.scope)
        with pytest.raises(InvalidInput):
            await apikeys.create_api_key(session, tenant_id, "   ")
        with pytest.raises(NotFound):
            await apikeys.revoke(session, tenant_id, "nobody")
        names = [k.name for k in await apikeys.list_keys(session, tenant_id)]
        assert "district reader" in names
    # A key of one tenant opens nothing in another.
    async with unit_of_work(database, system(alpha)) as session:
        assert await apikeys.lookup(session, alpha.tenant_id, plaintext) is None


async def test_cli_create_list_revoke(env: dict[str, str], keyville: TenantInfo, database: Database) -> None:
    created = liaison(env, "apikey", "create", "--tenant", "keyville", "--name", "hotline bridge")
    assert created.returncode == 0, created.stderr
    plaintext = created.stdout.strip()
    assert "shown only once" in created.stderr
    async with unit_of_work(database, system(keyville)) as session:
        found = await apikeys.lookup(session, keyville.tenant_id, plaintext)
        assert found is not None and found.name == "hotline bridge"

    listed = liaison(env, "apikey", "list", "--tenant", "keyville")
    assert listed.returncode == 0, listed.stderr
    assert "hotline bridge" in listed.stdout and plaintext not in listed.stdout

    revoked = liaison(env, "apikey", "revoke", "--tenant", "keyville", "--name", "hotline bridge")
    assert revoked.returncode == 0, revoked.stderr
    async with unit_of_work(database, system(keyville)) as session:
        assert await apikeys.lookup(session, keyville.tenant_id, plaintext) is None


@pytest.mark.parametrize(
    ("args", "mentioned"),
    [
        (["create", "--tenant", "nowhere", "--name", "x"], "does not exist"),
        (["create", "--tenant", "keyville", "--name", "y", "--scope", "c999999"], "outside"),
        (["create", "--tenant", "keyville", "--name", "z", "--scope", "NOPE"], "has the code"),
        (["revoke", "--tenant", "keyville", "--name", "never made"], "no api key"),
        (["list", "--tenant", "nowhere"], "does not exist"),
        (["create", "--tenant", "keyville"], "--name"),
    ],
)
def test_cli_usage_errors_are_one_sentence(
    env: dict[str, str], keyville: TenantInfo, args: list[str], mentioned: str
) -> None:
    result = liaison(env, "apikey", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert mentioned in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
