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


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor = 'x'",
        "DELETE FROM audit_log",
        "INSERT INTO audit_log (tenant_id, seq, at, actor, action, subject, scope, payload, prev_hash, hash) "
        "VALUES ({t}, 99, now(), 'user:1', 'forged', 'x', 'c{t}', '{{}}', 'p', 'h')",
        "UPDATE audit_heads SET last_seq = 1, last_hash = 'rewound'",
        "INSERT INTO audit_heads (tenant_id, last_seq, last_hash) VALUES ({t}, 1000, 'h')",
        "DELETE FROM audit_heads",
    ],
)
async def test_the_app_role_cannot_write_history_or_its_head(
    database: Database, app_dsn: str, statement: str
) -> None:
    tenant_id = await chain(database, f"audit-grant-{abs(hash(statement)) % 10**6}", links=1)
    with psycopg.connect(app_dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(TenantContext.whole_tenant(tenant_id, "system:test").set_local_statement())
        conn.execute(statement.format(t=tenant_id))


WRITE = "SELECT liaison_audit_write(%s, %s, now(), 'user:1', 'forged', 'x', %s, '{}', 'h')"


async def test_the_append_functions_keep_the_order_of_links(database: Database, app_dsn: str) -> None:
    """A link can be written only at the position the head has just handed out, inside the caller's tenant
    and scopes; whatever is refused leaves the chain as it was."""
    tenant_id = await chain(database, "audit-functions", links=2)
    other = await chain(database, "audit-functions-other", links=1)
    city = TenantContext.whole_tenant(tenant_id, "system:test")
    district = TenantContext(tenant_id, (f"c{tenant_id}.d1",), "user:9")
    refused = [
        (city, (tenant_id, 1, f"c{tenant_id}")),  # an old position, nothing reserved
        (city, (tenant_id, 3, f"c{tenant_id}")),  # the next position, not reserved
        (city, (other, 3, f"c{other}")),  # another tenant's chain
        (district, (tenant_id, 3, f"c{tenant_id}")),  # outside the caller's scopes
    ]
    for context, arguments in refused:
        with psycopg.connect(app_dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(context.set_local_statement())
            conn.execute(WRITE, arguments)
    with psycopg.connect(app_dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM liaison_audit_next()")  # no tenant context at all
    assert (await verify(database, tenant_id)).checked == 2
    assert (await verify(database, other)).checked == 1
    with psycopg.connect(app_dsn) as conn:
        conn.execute(district.set_local_statement())
        seq, _ = conn.execute("SELECT * FROM liaison_audit_next()").fetchone() or (0, "")
        conn.execute(WRITE, (tenant_id, seq, f"c{tenant_id}.d1.s2"))
    report = await verify(database, tenant_id)
    # The function keeps the order; a forged hash is still caught by the verifier.
    assert (seq, report.first_broken_seq) == (3, 3)
    assert report.reason is not None and "hash" in report.reason
