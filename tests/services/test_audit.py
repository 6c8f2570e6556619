"""The audit chain: appends link by hash; edits, deletions and reorderings are each detected."""

from __future__ import annotations

import psycopg
import pytest

from services.audit import service as audit
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tenants.identity import create_tenant


async def chain(database: Database, code: str, links: int = 5) -> int:
    tenant_id = await create_tenant(database, code, f"审计 {code}")
    context = TenantContext.whole_tenant(tenant_id, "system:test")
    async with unit_of_work(database, context) as session:
        for n in range(links):
            await audit.append(
                session,
                tenant_id=tenant_id,
                actor="user:1",
                action="test.step",
                subject=f"thing:{n}",
                scope=context.scopes[0],
                payload={"n": n, "名": "值", "x": 0.1},
            )
    return tenant_id


async def verify(database: Database, tenant_id: int) -> audit.VerifyReport:
    async with unit_of_work(database, TenantContext.whole_tenant(tenant_id, "system:test")) as session:
        return await audit.verify(session, tenant_id)


def tamper(owner_dsn: str, *statements: str) -> None:
    with psycopg.connect(owner_dsn) as conn:
        for statement in statements:
            conn.execute(statement)


async def test_an_untouched_chain_verifies(database: Database) -> None:
    tenant_id = await chain(database, "audit-ok")
    report = await verify(database, tenant_id)
    assert (report.ok, report.checked) == (True, 5)


@pytest.mark.parametrize(
    ("code", "statements", "broken_at", "reason"),
    [
        (
            "audit-edit",
            ["UPDATE audit_log SET payload = '{{\"n\": 99}}' WHERE tenant_id = {t} AND seq = 3"],
            3,
            "do not match",
        ),
        (
            "audit-actor",
            ["UPDATE audit_log SET actor = 'user:2' WHERE tenant_id = {t} AND seq = 2"],
            2,
            "do not match",
        ),
        ("audit-delete", ["DELETE FROM audit_log WHERE tenant_id = {t} AND seq = 2"], 2, "missing"),
        (
            "audit-reorder",
            [
                "UPDATE audit_log SET seq = -1 WHERE tenant_id = {t} AND seq = 3",
                "UPDATE audit_log SET seq = 3 WHERE tenant_id = {t} AND seq = 4",
                "UPDATE audit_log SET seq = 4 WHERE tenant_id = {t} AND seq = -1",
            ],
            3,
            "does not point",
        ),
        ("audit-tail", ["DELETE FROM audit_log WHERE tenant_id = {t} AND seq = 5"], 5, "should end"),
    ],
)
async def test_tampering_is_detected(
    database: Database, owner_dsn: str, code: str, statements: list[str], broken_at: int, reason: str
) -> None:
    tenant_id = await chain(database, code)
    tamper(owner_dsn, *(statement.format(t=tenant_id) for statement in statements))
    report = await verify(database, tenant_id)
    assert report.first_broken_seq == broken_at
    assert report.reason is not None and reason in report.reason


def test_the_app_role_cannot_rewrite_history(app_dsn: str) -> None:
    with psycopg.connect(app_dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("UPDATE audit_log SET actor = 'x'")
    with psycopg.connect(app_dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM audit_log")
