"""Isolation is enforced by PostgreSQL: every tenant table is guarded, and the guard holds for raw SQL."""

from __future__ import annotations

import psycopg
import pytest

from tenants.context import TenantContext
from tests.helpers import TenantInfo

TENANT_TABLES = """
    SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
           (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
      AND EXISTS (SELECT 1 FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
    ORDER BY c.relname
"""


def tenant_tables(dsn: str) -> list[tuple[str, bool, bool, int]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(TENANT_TABLES).fetchall()


def with_context(conn: psycopg.Connection[tuple[object, ...]], context: TenantContext) -> None:
    conn.execute(context.set_local_statement())


def test_every_table_with_a_tenant_id_has_forced_rls_and_policies(owner_dsn: str) -> None:
    tables = tenant_tables(owner_dsn)
    names = {name for name, *_ in tables}
    assert {
        "cities",
        "districts",
        "streets",
        "stations",
        "users",
        "role_assignments",
        "audit_log",
        "outbox",
    } <= names
    unguarded = [
        (name, enabled, forced, policies)
        for name, enabled, forced, policies in tables
        if not (enabled and forced and policies >= 1)
    ]
    assert unguarded == []


def test_the_app_role_cannot_bypass_rls(app_dsn: str) -> None:
    with psycopg.connect(app_dsn) as conn:
        superuser, bypass = conn.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone() or (True, True)
        owned = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
            "WHERE r.rolname = current_user AND c.relkind = 'r'"
        ).fetchone()
    assert (superuser, bypass) == (False, False)
    assert owned == (0,)


def test_the_catalogue_check_catches_a_forgotten_table(owner_dsn: str) -> None:
    with psycopg.connect(owner_dsn) as conn:
        conn.execute("CREATE TABLE forgotten (tenant_id bigint, note text)")
        try:
            rows = conn.execute(TENANT_TABLES).fetchall()
            assert ("forgotten", False, False, 0) in rows
        finally:
            conn.rollback()


async def test_no_context_sees_no_rows_in_any_tenant_table(
    app_dsn: str, owner_dsn: str, alpha: TenantInfo, beta: TenantInfo
) -> None:
    tables = [name for name, *_ in tenant_tables(owner_dsn)]
    with psycopg.connect(owner_dsn) as owner, psycopg.connect(app_dsn) as app:
        populated = [t for t in tables if owner.execute(f"SELECT count(*) FROM {t}").fetchone() != (0,)]
        assert {"cities", "districts", "streets", "stations", "users"} <= set(populated)
        for table in tables:
            assert app.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
        # A setting left empty by an earlier transaction still means "nothing".
        with_context(app, TenantContext.whole_tenant(alpha.tenant_id, "system:test"))
        app.commit()
        for table in tables:
            assert app.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table


@pytest.fixture
def districts_of_alpha(owner_dsn: str, alpha: TenantInfo) -> list[tuple[int, str]]:
    with psycopg.connect(owner_dsn) as conn:
        return conn.execute(
            "SELECT id, scope::text FROM districts WHERE tenant_id = %s ORDER BY code", (alpha.tenant_id,)
        ).fetchall()


def test_a_district_session_cannot_touch_a_sibling_with_raw_sql(
    app_dsn: str, alpha: TenantInfo, districts_of_alpha: list[tuple[int, str]]
) -> None:
    (own_id, own_scope), (sibling_id, sibling_scope) = districts_of_alpha[0], districts_of_alpha[1]
    context = TenantContext(alpha.tenant_id, (own_scope,), "user:1")
    with psycopg.connect(app_dsn) as conn:
        with_context(conn, context)
        visible = {row[0] for row in conn.execute("SELECT id FROM districts")}
        assert visible == {own_id}
        cities = conn.execute("SELECT scope::text FROM cities").fetchall()
        assert cities == [(alpha.scope,)]  # the city is an ancestor: readable
        streets = conn.execute("SELECT DISTINCT district_id FROM streets").fetchall()
        assert streets == [(own_id,)]
        stations_outside = conn.execute(
            "SELECT count(*) FROM stations WHERE NOT scope <@ %s::ltree", (own_scope,)
        ).fetchone()
        assert stations_outside == (0,)
        assert conn.execute(
            "SELECT count(*) FROM streets WHERE scope <@ %s::ltree", (sibling_scope,)
        ).fetchone() == (0,)

        updated = conn.execute("UPDATE districts SET name = 'hacked' WHERE id = %s", (sibling_id,)).rowcount
        deleted = conn.execute("DELETE FROM stations WHERE scope <@ %s::ltree", (sibling_scope,)).rowcount
        renamed_city = conn.execute("UPDATE cities SET name = 'hacked'").rowcount
        assert (updated, deleted, renamed_city) == (0, 0, 0)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO districts (tenant_id, code, name, scope) VALUES (%s, 'evil', 'evil', %s::ltree)",
                (alpha.tenant_id, f"{alpha.scope}.d999999"),
            )
        conn.rollback()
        with_context(conn, context)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "UPDATE streets SET scope = %s::ltree WHERE district_id = %s", (f"{sibling_scope}.s1", own_id)
            )
        conn.rollback()


def test_one_tenant_never_sees_another(app_dsn: str, alpha: TenantInfo, beta: TenantInfo) -> None:
    with psycopg.connect(app_dsn) as conn:
        with_context(conn, TenantContext.whole_tenant(alpha.tenant_id, "user:1"))
        tenants = {row[0] for row in conn.execute("SELECT DISTINCT tenant_id FROM stations")}
        assert tenants == {alpha.tenant_id}
        # Naming the other tenant explicitly changes nothing.
        assert conn.execute(
            "SELECT count(*) FROM districts WHERE tenant_id = %s", (beta.tenant_id,)
        ).fetchone() == (0,)
        assert (
            conn.execute("UPDATE districts SET name = 'x' WHERE tenant_id = %s", (beta.tenant_id,)).rowcount
            == 0
        )
        conn.rollback()


def test_settings_are_transaction_local(app_dsn: str, alpha: TenantInfo) -> None:
    with psycopg.connect(app_dsn) as conn:
        with_context(conn, TenantContext.whole_tenant(alpha.tenant_id, "user:1"))
        assert conn.execute("SELECT count(*) FROM districts").fetchone() != (0,)
        conn.commit()
        assert conn.execute("SELECT current_setting('app.tenant_id', true)").fetchone() == ("",)
        assert conn.execute("SELECT count(*) FROM districts").fetchone() == (0,)


def test_settings_that_disagree_see_nothing(app_dsn: str, alpha: TenantInfo, beta: TenantInfo) -> None:
    """Raw SQL can set anything; a tenant id with another tenant's scopes opens no door."""
    with psycopg.connect(app_dsn) as conn:
        conn.execute(
            f"SET LOCAL app.tenant_id = '{beta.tenant_id}'; SET LOCAL app.scopes = '{{{alpha.scope}}}'; "
            "SET LOCAL app.principal = 'user:1'"
        )
        for table in ("cities", "districts", "streets", "stations", "users"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
        conn.rollback()


def test_users_are_visible_inside_the_scope_and_to_themselves(
    app_dsn: str, owner_dsn: str, alpha: TenantInfo, districts_of_alpha: list[tuple[int, str]]
) -> None:
    own_scope = districts_of_alpha[0][1]
    with psycopg.connect(owner_dsn) as owner:
        admin_id = owner.execute(
            "SELECT id FROM users WHERE tenant_id = %s AND username = 'admin'", (alpha.tenant_id,)
        ).fetchone()
        assert admin_id is not None
        owner.execute(
            "INSERT INTO users (tenant_id, username, display_name, password_hash, scope) "
            "VALUES (%s, 'district-clerk', '区工作人员', 'x', %s::ltree)",
            (alpha.tenant_id, own_scope),
        )
        owner.commit()
    with psycopg.connect(app_dsn) as conn:
        with_context(conn, TenantContext(alpha.tenant_id, (own_scope,), "user:999999"))
        visible = {row[0] for row in conn.execute("SELECT username FROM users")}
        assert visible == {"district-clerk"}  # the city-level admin is above this scope
        conn.rollback()
        with_context(conn, TenantContext(alpha.tenant_id, (own_scope,), f"user:{admin_id[0]}"))
        visible = {row[0] for row in conn.execute("SELECT username FROM users")}
        assert visible == {"district-clerk", "admin"}  # and a user always sees their own row
        conn.rollback()


def test_the_tenant_role_sees_its_tenant_only(app_dsn: str, alpha: TenantInfo, beta: TenantInfo) -> None:
    """A whole-tenant transaction switches to the tenant role: bound by the tenant, nothing else."""
    statement = TenantContext.whole_tenant(alpha.tenant_id, "user:1").set_local_statement("liaison_tenant")
    assert statement.endswith("SET LOCAL ROLE liaison_tenant")
    with psycopg.connect(app_dsn) as conn:
        conn.execute("SET LOCAL ROLE liaison_tenant")
        for table in ("cities", "districts", "stations", "users", "audit_log", "outbox"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
        conn.rollback()
        conn.execute(statement)
        assert conn.execute("SELECT current_user").fetchone() == ("liaison_tenant",)
        tenants = {row[0] for row in conn.execute("SELECT DISTINCT tenant_id FROM stations")}
        assert tenants == {alpha.tenant_id}
        assert (
            conn.execute("UPDATE districts SET name = 'x' WHERE tenant_id = %s", (beta.tenant_id,)).rowcount
            == 0
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO districts (tenant_id, code, name, scope) VALUES (%s, 'evil', 'evil', %s::ltree)",
                (beta.tenant_id, f"{beta.scope}.d999999"),
            )
        conn.rollback()
        # The app role does not inherit the tenant role's policies: membership is NOINHERIT.
        assert conn.execute("SELECT rolinherit FROM pg_roles WHERE rolname = current_user").fetchone() == (
            False,
        )


def test_a_scoped_context_never_switches_role(alpha: TenantInfo) -> None:
    scoped = TenantContext(alpha.tenant_id, (f"{alpha.scope}.d1",), "user:1")
    assert "ROLE" not in scoped.set_local_statement("liaison_tenant")
    several = TenantContext(alpha.tenant_id, (alpha.scope, f"{alpha.scope}.d1"), "user:1")
    assert "ROLE" not in several.set_local_statement("liaison_tenant")


def test_tenant_wide_rows_are_read_anywhere_and_written_from_the_whole_city_only(
    app_dsn: str, owner_dsn: str, alpha: TenantInfo, districts_of_alpha: list[tuple[int, str]]
) -> None:
    """Categories, holidays and request settings belong to the whole city: a district reads them, and only a
    transaction whose scopes include the city changes them."""
    with psycopg.connect(owner_dsn) as owner:
        categories = owner.execute(
            "SELECT count(*) FROM request_categories WHERE tenant_id = %s", (alpha.tenant_id,)
        ).fetchone()
    assert categories is not None and categories[0] > 0
    district = TenantContext(alpha.tenant_id, (districts_of_alpha[0][1],), "user:1")
    city = TenantContext.whole_tenant(alpha.tenant_id, "user:1")
    with psycopg.connect(app_dsn) as conn:
        with_context(conn, district)
        assert conn.execute("SELECT count(*) FROM request_categories").fetchone() == categories
        assert conn.execute("UPDATE request_categories SET name = 'hacked'").rowcount == 0
        assert conn.execute("DELETE FROM request_categories").rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO holidays (tenant_id, day, kind, name) VALUES (%s, '2031-01-01', 'holiday', 'x')",
                (alpha.tenant_id,),
            )
        conn.rollback()
        # The same statements from the whole city (as the app role, without switching to the tenant role).
        with_context(conn, city)
        assert conn.execute("UPDATE request_categories SET name = name").rowcount == categories[0]
        conn.execute(
            "INSERT INTO holidays (tenant_id, day, kind, name) VALUES (%s, '2031-01-01', 'holiday', 'x')",
            (alpha.tenant_id,),
        )
        conn.rollback()
