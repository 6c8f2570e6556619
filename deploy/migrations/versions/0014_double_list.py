"""The double list (双清单): demands, resources and the stations they serve, matches (which become projects)
and the batch runs that proposed them.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from deploy.migrations import ddl
from deploy.migrations.functions import grant_execute
from deploy.migrations.helpers import as_owner, drop_tables, protect, reset_role, settings
from tenants.rls import Visibility

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# A demand is its station's; a resource is read inside and above the scope that keeps it; a match lies in
# its demand's station, and the resource's owner (a deputy's account) reads it wherever they are.
PROTECTED = {
    "demands": Visibility.SCOPED,
    "resources": Visibility.HIERARCHY,
    "resource_stations": Visibility.SCOPED,
    "match_runs": Visibility.SCOPED,
    "matches": Visibility.OWNED,
}
RESOURCE_RECORDS = "liaison_resource_records(timestamptz, bigint[])"


def upgrade() -> None:
    as_owner()
    op.create_table(
        "demands",
        *ddl.scoped_row("demands"),
        sa.Column("station_id", sa.BigInteger(), nullable=False),
        sa.Column("category_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.Column("households", sa.Integer(), server_default="1", nullable=False),
        sa.Column("urgency", sa.String(length=8), server_default="normal", nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=True),
        sa.Column("geom", ddl.point(), nullable=True),
        sa.Column("state", sa.String(length=8), server_default="open", nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("synthetic", sa.Boolean(), server_default="false", nullable=False),
        ddl.timestamp_now(),
        ddl.check("demands", "kind", "kind IN ('basic', 'personalised')"),
        ddl.check("demands", "households", "households >= 0"),
        ddl.check("demands", "urgency", "urgency IN ('normal', 'urgent', 'critical')"),
        ddl.check("demands", "source", "source IN ('request', 'survey', 'forum', 'visit')"),
        ddl.check("demands", "state", "state IN ('open', 'matched', 'closed')"),
        ddl.city_fk("demands"),
        ddl.parent_fk("demands", "station_id", "stations"),
        ddl.parent_fk("demands", "category_id", "request_categories"),
        ddl.parent_fk("demands", "request_id", "requests"),
    )
    op.create_table(
        "resources",
        *ddl.scoped_row("resources"),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("owner_kind", sa.String(length=16), nullable=False),
        sa.Column("offer", sa.String(length=8), nullable=False),
        sa.Column("skills", ARRAY(sa.String(length=40)), server_default="{}", nullable=False),
        sa.Column("monthly_capacity", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("owner_principal", sa.String(length=100), nullable=True),
        sa.Column("deputy_id", sa.BigInteger(), nullable=True),
        sa.Column("synthetic", sa.Boolean(), server_default="false", nullable=False),
        ddl.timestamp_now(),
        *ddl.optional_timestamps("retired_at"),
        ddl.check(
            "resources", "owner_kind", "owner_kind IN ('deputy', 'department', 'organisation', 'enterprise')"
        ),
        ddl.check("resources", "offer", "offer IN ('skill', 'service', 'funding', 'venue')"),
        ddl.check("resources", "monthly_capacity", "monthly_capacity >= 0"),
        ddl.city_fk("resources"),
        ddl.parent_fk("resources", "deputy_id", "deputies"),
    )
    op.create_table(
        "resource_stations",
        *ddl.tenant_row("resource_stations"),
        sa.Column("resource_id", sa.BigInteger(), nullable=False),
        sa.Column("station_id", sa.BigInteger(), nullable=False),
        ddl.scope_column(),
        ddl.city_fk("resource_stations"),
        ddl.parent_fk("resource_stations", "resource_id", "resources", ondelete="CASCADE"),
        ddl.parent_fk("resource_stations", "station_id", "stations"),
        ddl.tenant_unique("resource_stations", "resource_id", "station_id"),
    )
    op.create_table(
        "match_runs",
        *ddl.scoped_row("match_runs"),
        sa.Column("started_by", sa.String(length=100), nullable=False),
        sa.Column("demands", sa.Integer(), nullable=False),
        sa.Column("resources", sa.Integer(), nullable=False),
        sa.Column("candidates", sa.Integer(), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("total_score", sa.Float(), nullable=False),
        sa.Column("greedy_score", sa.Float(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        ddl.timestamp_now(),
        ddl.city_fk("match_runs"),
    )
    op.create_table(
        "matches",
        *ddl.scoped_row("matches"),
        sa.Column("demand_id", sa.BigInteger(), nullable=False),
        sa.Column("resource_id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("owner_principal", sa.String(length=100), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("terms", JSONB, server_default="{}", nullable=False),
        sa.Column("state", sa.String(length=16), server_default="proposed", nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("project_owner", sa.String(length=100), nullable=True),
        sa.Column("responsible_unit", sa.String(length=200), nullable=True),
        sa.Column("deadline", sa.Date(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("rating", sa.SmallInteger(), nullable=True),
        ddl.timestamp_now(),
        *ddl.optional_timestamps("decided_at", "closed_at"),
        ddl.check("matches", "state", "state IN ('proposed', 'accepted', 'declined', 'closed')"),
        ddl.check("matches", "rating", "rating IS NULL OR rating BETWEEN 0 AND 100"),
        ddl.city_fk("matches"),
        ddl.parent_fk("matches", "demand_id", "demands", ondelete="CASCADE"),
        ddl.parent_fk("matches", "resource_id", "resources"),
        ddl.parent_fk("matches", "run_id", "match_runs"),
    )
    ddl.gist_index("demands")
    ddl.tenant_index("demands", "state")
    ddl.unique_where("uq_demands_request", "demands", ["tenant_id", "request_id"], "request_id IS NOT NULL")
    ddl.gist_index("resources")
    ddl.tenant_index("resources", "deputy_id")
    ddl.gist_index("resource_stations")
    ddl.tenant_index("resource_stations", "station_id")
    ddl.gist_index("match_runs")
    ddl.gist_index("matches")
    ddl.tenant_index("matches", "resource_id", "created_at")
    ddl.tenant_index("matches", "owner_principal")
    # A demand has at most one match in play; a declined one leaves room for the next.
    ddl.unique_where(
        "uq_matches_live", "matches", ["tenant_id", "demand_id"], "state IN ('proposed', 'accepted')"
    )

    for table, visibility in PROTECTED.items():
        protect(table, visibility)
    # A resource's record counts its matches in every station it serves, also those outside the caller's
    # scope: only the figures of the resources asked about leave, in the caller's own tenant.
    op.execute(
        """
        CREATE FUNCTION liaison_resource_records(since timestamptz, ids bigint[])
        RETURNS TABLE (resource_id bigint, load bigint, satisfaction double precision)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
        AS $$ SELECT m.resource_id,
                     count(*) FILTER (WHERE m.created_at >= since AND m.state <> 'declined'),
                     avg(m.rating)::double precision
              FROM matches m
              WHERE m.tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint
                AND m.resource_id = ANY(ids)
              GROUP BY m.resource_id $$
        """
    )
    grant_execute(RESOURCE_RECORDS, settings().app_role, settings().tenant_role)
    reset_role()


def downgrade() -> None:
    as_owner()
    op.execute(f"DROP FUNCTION IF EXISTS {RESOURCE_RECORDS}")
    drop_tables(reversed(list(PROTECTED)))
    reset_role()
