"""Residents' requests: categories, holidays, routing rules, work orders, ratings, Open311 keys; and the
workflow history and timers every workflow shares.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import JSONB

from deploy.migrations import ddl
from deploy.migrations.functions import grant_execute
from deploy.migrations.helpers import as_owner, drop_tables, protect, reset_role, settings
from tenants.rls import Visibility

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PROTECTED = {
    "workflow_events": Visibility.SCOPED,
    "timers": Visibility.SCOPED,
    "request_categories": Visibility.TENANT,
    "holidays": Visibility.TENANT,
    "request_settings": Visibility.TENANT,
    "routing_rules": Visibility.SCOPED,
    "requests": Visibility.OWNED,
    "request_ratings": Visibility.SCOPED,
    "api_keys": Visibility.SCOPED,
}
DUE_TIMERS = "liaison_tenants_with_due_timers(timestamptz)"


def upgrade() -> None:
    as_owner()
    op.create_table(
        "workflow_events",
        *ddl.scoped_row("workflow_events"),
        sa.Column("workflow", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("public", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("payload", JSONB, server_default="{}", nullable=False),
        ddl.timestamp_now("at"),
        ddl.city_fk("workflow_events"),
    )
    op.create_table(
        "timers",
        *ddl.scoped_row("timers"),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("due_at", ddl.TIMESTAMP, nullable=False),
        sa.Column("payload", JSONB, server_default="{}", nullable=False),
        ddl.timestamp_now(),
        *ddl.optional_timestamps("fired_at", "cancelled_at"),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        ddl.city_fk("timers"),
        ddl.tenant_unique("timers", "key"),
    )
    op.create_table(
        "request_categories",
        *ddl.tenant_row("request_categories"),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("response_days", sa.SmallInteger(), nullable=False),
        sa.Column("resolution_days", sa.SmallInteger(), nullable=False),
        *ddl.optional_timestamps("retired_at"),
        ddl.check("request_categories", "kind", "kind IN ('basic', 'personalised')"),
        ddl.check("request_categories", "deadlines", "response_days >= 0 AND resolution_days >= 1"),
        ddl.city_fk("request_categories"),
        ddl.tenant_unique("request_categories", "code"),
    )
    op.create_table(
        "holidays",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=100), server_default="", nullable=False),
        ddl.check("holidays", "kind", "kind IN ('holiday', 'workday')"),
        ddl.city_fk("holidays"),
        ddl.tenant_pk("holidays", "day"),
    )
    op.create_table(
        "request_settings",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("timezone", sa.String(length=64), server_default="Asia/Shanghai", nullable=False),
        sa.Column("rating_threshold", sa.SmallInteger(), server_default="3", nullable=False),
        sa.Column("duplicate_radius_meters", sa.Integer(), server_default="200", nullable=False),
        sa.Column("duplicate_window_hours", sa.Integer(), server_default="72", nullable=False),
        sa.Column("due_soon_hours", sa.Integer(), server_default="24", nullable=False),
        sa.Column("escalation_days", sa.SmallInteger(), server_default="3", nullable=False),
        sa.Column("open311_public", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("default_department", sa.String(length=200), server_default="区职能部门", nullable=False),
        ddl.city_fk("request_settings"),
        # One row a tenant: the key is the tenant alone.
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_request_settings")),
    )
    op.create_table(
        "routing_rules",
        *ddl.tenant_row("routing_rules"),
        sa.Column("category_id", sa.BigInteger(), nullable=True),
        ddl.scope_column(),
        sa.Column("responsible", sa.String(length=16), nullable=False),
        sa.Column("department", sa.String(length=200), nullable=True),
        sa.Column("assignee", sa.String(length=100), nullable=True),
        ddl.check("routing_rules", "responsible", "responsible IN ('station', 'deputy', 'department')"),
        ddl.parent_fk("routing_rules", "category_id", "request_categories"),
        ddl.city_fk("routing_rules"),
    )
    op.create_table(
        "requests",
        *ddl.tenant_row("requests"),
        sa.Column("ticket", sa.String(length=24), nullable=False),
        ddl.scope_column(),
        sa.Column("category_id", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=True),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.Column("address", sa.String(length=500), nullable=True),
        sa.Column("photo_urls", JSONB, server_default="[]", nullable=False),
        sa.Column("h3_cell", sa.BigInteger(), nullable=True),
        sa.Column("grid_cell_id", sa.BigInteger(), nullable=True),
        sa.Column("station_id", sa.BigInteger(), nullable=True),
        sa.Column("street_id", sa.BigInteger(), nullable=True),
        sa.Column("district_id", sa.BigInteger(), nullable=True),
        sa.Column("owner_principal", sa.String(length=100), nullable=True),
        sa.Column("contact_name", sa.String(length=100), nullable=True),
        sa.Column("contact_phone", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("level", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("responsible", sa.String(length=16), nullable=False),
        sa.Column("assignee", sa.String(length=100), nullable=True),
        sa.Column("department", sa.String(length=200), nullable=True),
        sa.Column("supervision", sa.String(length=8), server_default="none", nullable=False),
        sa.Column("merged_into_id", sa.BigInteger(), nullable=True),
        sa.Column("resolution_round", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("reopen_count", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("submitted_at", ddl.TIMESTAMP, nullable=False),
        sa.Column("response_due_at", ddl.TIMESTAMP, nullable=False),
        sa.Column("resolution_due_at", ddl.TIMESTAMP, nullable=False),
        *ddl.optional_timestamps("responded_at", "resolved_at", "closed_at"),
        sa.Column("overdue", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("rating", sa.SmallInteger(), nullable=True),
        sa.Column("solved", sa.Boolean(), nullable=True),
        ddl.timestamp_now("updated_at"),
        ddl.check("requests", "supervision", "supervision IN ('none', 'blue', 'yellow', 'red')"),
        ddl.check("requests", "description_length", "char_length(description) <= 4000"),
        ddl.parent_fk("requests", "category_id", "request_categories"),
        ddl.city_fk("requests"),
        ddl.tenant_unique("requests", "ticket"),
    )
    op.create_table(
        "request_ratings",
        *ddl.child_row("request_ratings", "request_id", "requests"),
        sa.Column("resolution_round", sa.SmallInteger(), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("solved", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("rated_by", sa.String(length=100), nullable=False),
        ddl.timestamp_now("at"),
        ddl.check("request_ratings", "score", "score BETWEEN 1 AND 5"),
        ddl.tenant_unique("request_ratings", "request_id", "resolution_round"),
    )
    op.create_table(
        "api_keys",
        *ddl.tenant_row("api_keys"),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        ddl.scope_column(),
        ddl.timestamp_now(),
        *ddl.optional_timestamps("revoked_at"),
        sa.Column("details", JSONB, server_default="{}", nullable=False),
        ddl.city_fk("api_keys"),
        ddl.tenant_unique("api_keys", "key_hash"),
        ddl.tenant_unique("api_keys", "name"),
    )
    op.create_index(
        "ix_workflow_events_subject", "workflow_events", ["tenant_id", "workflow", "subject_id", "id"]
    )
    op.create_index("ix_timers_subject", "timers", ["tenant_id", "kind", "subject_id"])
    op.create_index(
        "ix_timers_pending",
        "timers",
        ["tenant_id", "due_at"],
        postgresql_where=sa.text("fired_at IS NULL AND cancelled_at IS NULL"),
    )
    op.create_index("ix_routing_rules_lookup", "routing_rules", ["tenant_id", "category_id"])
    ddl.tenant_index("requests", "submitted_at")
    ddl.tenant_index("requests", "state")
    ddl.unique_where(
        "uq_requests_external", "requests", ["tenant_id", "channel", "external_id"], "external_id IS NOT NULL"
    )
    ddl.tenant_index("requests", "owner_principal")
    ddl.gist_index("requests", "geom")
    ddl.gist_index("requests", "scope")
    ddl.tenant_index("requests", "category_id", "submitted_at")

    for table, visibility in PROTECTED.items():
        protect(table, visibility)
    # The timer sweep asks which tenants have due timers, then works inside each tenant's own context.
    op.execute(
        """
        CREATE FUNCTION liaison_tenants_with_due_timers(now timestamptz) RETURNS SETOF bigint
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
        AS $$ SELECT DISTINCT tenant_id FROM timers
              WHERE fired_at IS NULL AND cancelled_at IS NULL AND due_at <= now ORDER BY 1 $$
        """
    )
    grant_execute(DUE_TIMERS, settings().app_role)
    reset_role()


def downgrade() -> None:
    as_owner()
    op.execute(f"DROP FUNCTION IF EXISTS {DUE_TIMERS}")
    drop_tables(reversed(list(PROTECTED)))
    reset_role()
