"""Notification channels: a recipient's own inbox (notifications.owner_principal) and signed webhooks.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from deploy.migrations.helpers import as_owner, protect, reset_role, settings, unprotect
from tenants.models import Ltree
from tenants.rls import IS_OWNER, TENANT_MATCHES, Visibility

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
OWNER_MARKS_READ = "owner_mark_read"


def upgrade() -> None:
    as_owner()
    s = settings()
    op.add_column("notifications", sa.Column("owner_principal", sa.String(length=100), nullable=True))
    op.create_index(
        "ix_notifications_tenant_id_owner_principal", "notifications", ["tenant_id", "owner_principal"]
    )
    unprotect("notifications")
    protect("notifications", Visibility.OWNED)
    # OWNED lets the recipient read, not write; marking a notice read is the one write a recipient
    # outside its scope (a resident) needs. The app may change nothing of a notice but read_at.
    owned = f"{TENANT_MATCHES} AND {IS_OWNER}"
    op.execute(
        f"CREATE POLICY {OWNER_MARKS_READ} ON notifications FOR UPDATE TO {s.app_role} "
        f"USING ({owned}) WITH CHECK ({owned})"
    )
    op.execute(f"REVOKE UPDATE ON notifications FROM {s.app_role}, {s.tenant_role}")
    op.execute(f"GRANT UPDATE (read_at) ON notifications TO {s.app_role}, {s.tenant_role}")

    op.create_table(
        "webhook_endpoints",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column(
            "kinds", postgresql.ARRAY(sa.String(length=100)), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("max_attempts", sa.SmallInteger(), server_default="8", nullable=False),
        sa.Column("backoff_seconds", sa.Integer(), server_default="10", nullable=False),
        sa.Column("personal_data", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "backoff_seconds BETWEEN 1 AND 300", name=op.f("ck_webhook_endpoints_backoff_seconds")
        ),
        sa.CheckConstraint("max_attempts BETWEEN 1 AND 50", name=op.f("ck_webhook_endpoints_max_attempts")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["cities.tenant_id"], name=op.f("fk_webhook_endpoints_tenant_id_cities")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_webhook_endpoints")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_webhook_endpoints_tenant_id_name")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("endpoint_id", sa.BigInteger(), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_status", sa.SmallInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.text("now()"), nullable=False),
        sa.Column("delivered_at", TIMESTAMP, nullable=True),
        sa.Column("dead_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'dead')", name=op.f("ck_webhook_deliveries_status")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "endpoint_id"],
            ["webhook_endpoints.tenant_id", "webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_tenant_id_endpoint_id_webhook_endpoints"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint(
            "tenant_id",
            "endpoint_id",
            "source",
            name=op.f("uq_webhook_deliveries_tenant_id_endpoint_id_source"),
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_tenant_id_status", "webhook_deliveries", ["tenant_id", "status"], unique=False
    )
    protect("webhook_endpoints", Visibility.SCOPED)
    protect("webhook_deliveries", Visibility.SCOPED)
    reset_role()


def downgrade() -> None:
    as_owner()
    s = settings()
    for table in ("webhook_deliveries", "webhook_endpoints"):
        unprotect(table)
        op.drop_table(table)
    op.execute(f"DROP POLICY IF EXISTS {OWNER_MARKS_READ} ON notifications")
    op.execute(f"GRANT UPDATE ON notifications TO {s.app_role}, {s.tenant_role}")
    unprotect("notifications")
    protect("notifications", Visibility.SCOPED)
    op.drop_index("ix_notifications_tenant_id_owner_principal", table_name="notifications")
    op.drop_column("notifications", "owner_principal")
    reset_role()
