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

from deploy.migrations.helpers import as_owner, protect, reset_role, settings, unprotect
from tenants.models import Ltree
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
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("workflow", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("public", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("payload", JSONB, server_default="{}", nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["cities.tenant_id"], name=op.f("fk_workflow_events_tenant_id_cities")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_workflow_events")),
    )
    op.create_table(
        "timers",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", JSONB, server_default="{}", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"], name=op.f("fk_timers_tenant_id_cities")),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_timers")),
        sa.UniqueConstraint("tenant_id", "key", name=op.f("uq_timers_tenant_id_key")),
    )
    op.create_table(
        "request_categories",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("response_days", sa.SmallInteger(), nullable=False),
        sa.Column("resolution_days", sa.SmallInteger(), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('basic', 'personalised')", name=op.f("ck_request_categories_kind")),
        sa.CheckConstraint(
            "response_days >= 0 AND resolution_days >= 1", name=op.f("ck_request_categories_deadlines")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["cities.tenant_id"], name=op.f("fk_request_categories_tenant_id_cities")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_request_categories")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_request_categories_tenant_id_code")),
    )
    op.create_table(
        "holidays",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=100), server_default="", nullable=False),
        sa.CheckConstraint("kind IN ('holiday', 'workday')", name=op.f("ck_holidays_kind")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["cities.tenant_id"], name=op.f("fk_holidays_tenant_id_cities")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "day", name=op.f("pk_holidays")),
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
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["cities.tenant_id"], name=op.f("fk_request_settings_tenant_id_cities")
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_request_settings")),
    )
    op.create_table(
        "routing_rules",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("category_id", sa.BigInteger(), nullable=True),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("responsible", sa.String(length=16), nullable=False),
        sa.Column("department", sa.String(length=200), nullable=True),
        sa.Column("assignee", sa.String(length=100), nullable=True),
        sa.CheckConstraint(
            "responsible IN ('station', 'deputy', 'department')", name=op.f("ck_routing_rules_responsible")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "category_id"],
            ["request_categories.tenant_id", "request_categories.id"],
            name=op.f("fk_routing_rules_tenant_id_category_id_request_categories"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["cities.tenant_id"], name=op.f("fk_routing_rules_tenant_id_cities")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_routing_rules")),
    )
    op.create_table(
        "requests",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("ticket", sa.String(length=24), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
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
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("response_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolution_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("overdue", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("rating", sa.SmallInteger(), nullable=True),
        sa.Column("solved", sa.Boolean(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "supervision IN ('none', 'blue', 'yellow', 'red')", name=op.f("ck_requests_supervision")
        ),
        sa.CheckConstraint("char_length(description) <= 4000", name=op.f("ck_requests_description_length")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "category_id"],
            ["request_categories.tenant_id", "request_categories.id"],
            name=op.f("fk_requests_tenant_id_category_id_request_categories"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["cities.tenant_id"], name=op.f("fk_requests_tenant_id_cities")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_requests")),
        sa.UniqueConstraint("tenant_id", "ticket", name=op.f("uq_requests_tenant_id_ticket")),
    )
    op.create_table(
        "request_ratings",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("resolution_round", sa.SmallInteger(), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("solved", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("rated_by", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("score BETWEEN 1 AND 5", name=op.f("ck_request_ratings_score")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "request_id"],
            ["requests.tenant_id", "requests.id"],
            name=op.f("fk_request_ratings_tenant_id_request_id_requests"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_request_ratings")),
        sa.UniqueConstraint(
            "tenant_id",
            "request_id",
            "resolution_round",
            name=op.f("uq_request_ratings_tenant_id_request_id_resolution_round"),
        ),
    )
    op.create_table(
        "api_keys",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("details", JSONB, server_default="{}", nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["cities.tenant_id"], name=op.f("fk_api_keys_tenant_id_cities")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("tenant_id", "key_hash", name=op.f("uq_api_keys_tenant_id_key_hash")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_api_keys_tenant_id_name")),
    )
    op.create_index(
        "ix_workflow_events_subject",
        "workflow_events",
        ["tenant_id", "workflow", "subject_id", "id"],
        unique=False,
    )
    op.create_index("ix_timers_subject", "timers", ["tenant_id", "kind", "subject_id"], unique=False)
    op.create_index(
        "ix_timers_pending",
        "timers",
        ["tenant_id", "due_at"],
        unique=False,
        postgresql_where="fired_at IS NULL AND cancelled_at IS NULL",
    )
    op.create_index("ix_routing_rules_lookup", "routing_rules", ["tenant_id", "category_id"], unique=False)
    op.create_index(
        "ix_requests_tenant_id_submitted_at", "requests", ["tenant_id", "submitted_at"], unique=False
    )
    op.create_index("ix_requests_tenant_id_state", "requests", ["tenant_id", "state"], unique=False)
    op.create_index(
        "uq_requests_external",
        "requests",
        ["tenant_id", "channel", "external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_index(
        "ix_requests_tenant_id_owner_principal", "requests", ["tenant_id", "owner_principal"], unique=False
    )
    op.create_index("ix_requests_geom", "requests", ["geom"], unique=False, postgresql_using="gist")
    op.create_index("ix_requests_scope", "requests", ["scope"], unique=False, postgresql_using="gist")
    op.create_index(
        "ix_requests_tenant_id_category_id_submitted_at",
        "requests",
        ["tenant_id", "category_id", "submitted_at"],
        unique=False,
    )

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
    op.execute(f"REVOKE ALL ON FUNCTION {DUE_TIMERS} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {DUE_TIMERS} TO {settings().app_role}")
    reset_role()


def downgrade() -> None:
    as_owner()
    op.execute(f"DROP FUNCTION IF EXISTS {DUE_TIMERS}")
    for table in reversed(list(PROTECTED)):
        unprotect(table)
        op.drop_table(table)
    reset_role()
