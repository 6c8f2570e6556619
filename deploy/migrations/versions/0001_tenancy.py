"""Tenancy: extensions, roles, the city hierarchy, users, and their row-level security.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deploy.migrations import ddl
from deploy.migrations.functions import grant_execute
from deploy.migrations.helpers import as_owner, drop_tables, protect, quote_literal, reset_role, settings
from tenants.rls import Visibility

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _roles() -> None:
    s = settings()
    owner, app, tenant = s.owner_role, s.app_role, s.tenant_role
    # Role names are validated identifiers (deploy.settings); passwords are quoted literals.
    op.execute(
        f"""
        DO $$
        BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {quote_literal(owner)}) THEN
            CREATE ROLE {owner} LOGIN;
          END IF;
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {quote_literal(app)}) THEN
            CREATE ROLE {app} LOGIN;
          END IF;
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {quote_literal(tenant)}) THEN
            CREATE ROLE {tenant} NOLOGIN;
          END IF;
        END $$
        """  # noqa: S608
    )
    # The owner migrates and may read across tenants for operations; the app role serves requests and
    # must stay subject to every policy.
    op.execute(f"ALTER ROLE {owner} LOGIN BYPASSRLS PASSWORD {quote_literal(s.owner_password)}")
    # NOINHERIT: the app role holds the tenant role's policies only after SET ROLE, which the scoped
    # session does for a transaction whose one scope is the whole city.
    op.execute(
        f"ALTER ROLE {app} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT "
        f"PASSWORD {quote_literal(s.app_password)}"
    )
    op.execute(f"ALTER ROLE {tenant} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT")
    op.execute(f"GRANT {tenant} TO {app}")
    op.execute(f"GRANT {owner} TO CURRENT_USER")
    op.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {owner}")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {app}, {tenant}")
    op.execute(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}, {tenant}"
    )
    op.execute(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
        f"GRANT USAGE, SELECT ON SEQUENCES TO {app}, {tenant}"
    )


def _hierarchy_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        ddl.scope_column(),
        ddl.timestamp_now(),
        sa.Column("retired_at", ddl.TIMESTAMP),
    ]


def _create_level_below(table: str, parent: str, parent_id: str) -> None:
    """Streets below districts, stations below streets: each names its parent; codes unique in a tenant."""
    op.create_table(
        table,
        *ddl.tenant_row_key(),
        sa.Column(parent_id, sa.BigInteger, nullable=False),
        *_hierarchy_columns(),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.ForeignKeyConstraint(["tenant_id", parent_id], [f"{parent}.tenant_id", f"{parent}.id"]),
        sa.UniqueConstraint("tenant_id", "code"),
    )
    op.create_index(f"ix_{table}_tenant_id_{parent_id}_code", table, ["tenant_id", parent_id, "code"])


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS ltree")
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    _roles()
    as_owner()

    op.create_table(
        "cities",
        sa.Column("tenant_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("code", sa.String(32), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        ddl.scope_column(),
        ddl.timestamp_now(),
    )
    op.create_table(
        "districts",
        *ddl.tenant_row_key(),
        *_hierarchy_columns(),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        sa.UniqueConstraint("tenant_id", "code"),
    )
    _create_level_below("streets", "districts", "district_id")
    _create_level_below("stations", "streets", "street_id")
    for table in ("districts", "streets", "stations"):
        ddl.gist_index(table)

    op.create_table(
        "users",
        *ddl.tenant_row_key(),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        ddl.scope_column(),
        ddl.timestamp_now(),
        sa.Column("disabled_at", ddl.TIMESTAMP),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        sa.UniqueConstraint("tenant_id", "username"),
    )
    op.create_table(
        "role_assignments",
        *ddl.tenant_row_key(),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        ddl.scope_column(),
        ddl.timestamp_now(),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"
        ),
        sa.UniqueConstraint("tenant_id", "user_id", "role", "scope"),
    )

    protect("cities", Visibility.HIERARCHY)
    for table in ("districts", "streets", "stations"):
        protect(table, Visibility.HIERARCHY)
    protect("users", Visibility.USER)
    protect("role_assignments", Visibility.SCOPED)

    # Tokens name their tenant by code; this is the one question answered before a context exists.
    op.execute(
        """
        CREATE FUNCTION liaison_tenant_id(tenant_code text) RETURNS bigint
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
        AS $$ SELECT tenant_id FROM cities WHERE code = tenant_code $$
        """
    )
    grant_execute("liaison_tenant_id(text)", settings().app_role)
    # Operators' commands (audit verify) walk every tenant, each inside its own context.
    op.execute(
        """
        CREATE FUNCTION liaison_tenant_codes() RETURNS SETOF text
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
        AS $$ SELECT code FROM cities ORDER BY code $$
        """
    )
    grant_execute("liaison_tenant_codes()", settings().app_role)
    reset_role()


def downgrade() -> None:
    as_owner()
    op.execute("DROP FUNCTION IF EXISTS liaison_tenant_codes()")
    op.execute("DROP FUNCTION IF EXISTS liaison_tenant_id(text)")
    drop_tables(("role_assignments", "users", "stations", "streets", "districts", "cities"))
    reset_role()
