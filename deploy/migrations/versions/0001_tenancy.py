"""Tenancy: extensions, roles, the city hierarchy, users, and their row-level security.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deploy.migrations.helpers import as_owner, protect, quote_literal, reset_role, settings, unprotect
from tenants.models import Ltree
from tenants.rls import Visibility

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


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
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("retired_at", TIMESTAMP),
    ]


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
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "districts",
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        *_hierarchy_columns(),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        sa.UniqueConstraint("tenant_id", "code"),
    )
    op.create_table(
        "streets",
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("district_id", sa.BigInteger, nullable=False),
        *_hierarchy_columns(),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.ForeignKeyConstraint(["tenant_id", "district_id"], ["districts.tenant_id", "districts.id"]),
        sa.UniqueConstraint("tenant_id", "code"),
    )
    op.create_index("ix_streets_tenant_id_district_id_code", "streets", ["tenant_id", "district_id", "code"])
    op.create_table(
        "stations",
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("street_id", sa.BigInteger, nullable=False),
        *_hierarchy_columns(),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.ForeignKeyConstraint(["tenant_id", "street_id"], ["streets.tenant_id", "streets.id"]),
        sa.UniqueConstraint("tenant_id", "code"),
    )
    op.create_index("ix_stations_tenant_id_street_id_code", "stations", ["tenant_id", "street_id", "code"])
    for table in ("districts", "streets", "stations"):
        op.create_index(f"ix_{table}_scope", table, ["scope"], postgresql_using="gist")

    op.create_table(
        "users",
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("disabled_at", TIMESTAMP),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        sa.UniqueConstraint("tenant_id", "username"),
    )
    op.create_table(
        "role_assignments",
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
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
    op.execute("REVOKE ALL ON FUNCTION liaison_tenant_id(text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION liaison_tenant_id(text) TO {settings().app_role}")
    # Operators' commands (audit verify) walk every tenant, each inside its own context.
    op.execute(
        """
        CREATE FUNCTION liaison_tenant_codes() RETURNS SETOF text
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
        AS $$ SELECT code FROM cities ORDER BY code $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION liaison_tenant_codes() FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION liaison_tenant_codes() TO {settings().app_role}")
    reset_role()


def downgrade() -> None:
    as_owner()
    op.execute("DROP FUNCTION IF EXISTS liaison_tenant_codes()")
    op.execute("DROP FUNCTION IF EXISTS liaison_tenant_id(text)")
    for table in ("role_assignments", "users", "stations", "streets", "districts", "cities"):
        unprotect(table)
        op.drop_table(table)
    reset_role()
