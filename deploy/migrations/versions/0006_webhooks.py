"""Notification channels: a recipient's own inbox (notifications.owner_principal) and signed webhooks.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from deploy.migrations import ddl
from deploy.migrations.helpers import as_owner, drop_tables, protect, reset_role, settings, unprotect
from tenants.rls import IS_OWNER, TENANT_MATCHES, Visibility

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OWNER_MARKS_READ = "owner_mark_read"


def upgrade() -> None:
    as_owner()
    s = settings()
    op.add_column("notifications", sa.Column("owner_principal", sa.String(length=100), nullable=True))
    ddl.tenant_index("notifications", "owner_principal")
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
        *ddl.scoped_row("webhook_endpoints"),
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
        ddl.timestamp_now(),
        ddl.check("webhook_endpoints", "backoff_seconds", "backoff_seconds BETWEEN 1 AND 300"),
        ddl.check("webhook_endpoints", "max_attempts", "max_attempts BETWEEN 1 AND 50"),
        ddl.city_fk("webhook_endpoints"),
        ddl.tenant_unique("webhook_endpoints", "name"),
    )
    op.create_table(
        "webhook_deliveries",
        *ddl.child_row("webhook_deliveries", "endpoint_id", "webhook_endpoints"),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_status", sa.SmallInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        ddl.timestamp_now(),
        *ddl.optional_timestamps("delivered_at", "dead_at"),
        ddl.check("webhook_deliveries", "status", "status IN ('pending', 'delivered', 'dead')"),
        ddl.tenant_unique("webhook_deliveries", "endpoint_id", "source"),
    )
    ddl.tenant_index("webhook_deliveries", "status")
    protect("webhook_endpoints", Visibility.SCOPED)
    protect("webhook_deliveries", Visibility.SCOPED)
    reset_role()


def downgrade() -> None:
    as_owner()
    s = settings()
    drop_tables(("webhook_deliveries", "webhook_endpoints"))
    op.execute(f"DROP POLICY IF EXISTS {OWNER_MARKS_READ} ON notifications")
    op.execute(f"GRANT UPDATE ON notifications TO {s.app_role}, {s.tenant_role}")
    unprotect("notifications")
    protect("notifications", Visibility.SCOPED)
    op.drop_index("ix_notifications_tenant_id_owner_principal", table_name="notifications")
    op.drop_column("notifications", "owner_principal")
    reset_role()
