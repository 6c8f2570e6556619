"""Plumbing every domain reuses: the hash-chained audit log, the outbox, in-app notifications.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from deploy.migrations import ddl
from deploy.migrations.functions import grant_execute
from deploy.migrations.helpers import as_owner, drop_tables, protect, reset_role, settings
from tenants.rls import Visibility

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    as_owner()
    app = settings().app_role
    op.create_table(
        "audit_log",
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("at", ddl.TIMESTAMP, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        ddl.scope_column(),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "seq"),
        sa.ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
    )
    op.create_table(
        "audit_heads",
        sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
    )
    # History is appended, never rewritten, by the application.
    tenant = settings().tenant_role
    op.execute(f"REVOKE UPDATE, DELETE ON audit_log FROM {app}, {tenant}")
    op.execute(f"REVOKE DELETE ON audit_heads FROM {app}, {tenant}")

    op.create_table(
        "outbox",
        *ddl.tenant_row_key(),
        ddl.scope_column(),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("kwargs", JSONB, nullable=False),
        ddl.timestamp_now(),
        sa.Column("sent_at", ddl.TIMESTAMP),
        sa.Column("attempts", sa.Integer, server_default="0", nullable=False),
        sa.Column("last_error", sa.Text),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
    )
    op.create_index(
        "ix_outbox_unsent", "outbox", ["tenant_id", "id"], postgresql_where=sa.text("sent_at IS NULL")
    )

    op.create_table(
        "notifications",
        *ddl.tenant_row_key(),
        ddl.scope_column(),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("body", sa.Text, server_default="", nullable=False),
        sa.Column("payload", JSONB, server_default="{}", nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        ddl.timestamp_now(),
        sa.Column("read_at", ddl.TIMESTAMP),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        sa.UniqueConstraint("tenant_id", "source"),
    )

    protect("audit_log", Visibility.SCOPED)
    protect("audit_heads", Visibility.TENANT)
    protect("outbox", Visibility.SCOPED)
    protect("notifications", Visibility.SCOPED)

    # The relay asks which tenants have unsent messages, then works inside each tenant's own context.
    op.execute(
        """
        CREATE FUNCTION liaison_tenants_with_unsent_outbox() RETURNS SETOF bigint
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
        AS $$ SELECT DISTINCT tenant_id FROM outbox WHERE sent_at IS NULL ORDER BY 1 $$
        """
    )
    grant_execute("liaison_tenants_with_unsent_outbox()", app)
    reset_role()


def downgrade() -> None:
    as_owner()
    op.execute("DROP FUNCTION IF EXISTS liaison_tenants_with_unsent_outbox()")
    drop_tables(("notifications", "outbox", "audit_heads", "audit_log"))
    reset_role()
