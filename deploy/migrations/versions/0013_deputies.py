"""Deputies: the city's skills vocabulary, deputy records, their links to stations and volunteer teams.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

from deploy.migrations import ddl
from deploy.migrations.helpers import as_owner, drop_tables, protect, reset_role
from tenants.rls import Visibility

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# The vocabulary is the city's; a deputy record is read inside and above the caller's scope (a station's
# liaison reads the deputies its street keeps); links and volunteers are the scope's staff's.
PROTECTED = {
    "deputy_skills": Visibility.TENANT,
    "deputies": Visibility.HIERARCHY,
    "deputy_stations": Visibility.SCOPED,
    "deputy_volunteers": Visibility.HIERARCHY,
}
SKILLS = ARRAY(sa.String(length=40))


def upgrade() -> None:
    as_owner()
    op.create_table(
        "deputy_skills",
        *ddl.tenant_row("deputy_skills"),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("categories", ARRAY(sa.String(length=32)), server_default="{}", nullable=False),
        ddl.city_fk("deputy_skills"),
        ddl.tenant_unique("deputy_skills", "code"),
    )
    op.create_table(
        "deputies",
        *ddl.scoped_row("deputies"),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("term_start", sa.Date(), nullable=False),
        sa.Column("term_end", sa.Date(), nullable=True),
        sa.Column("constituency", sa.String(length=200), server_default="", nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("skills", SKILLS, server_default="{}", nullable=False),
        sa.Column("monthly_capacity", sa.Integer(), server_default="10", nullable=False),
        sa.Column("principal", sa.String(length=100), nullable=True),
        sa.Column("synthetic", sa.Boolean(), server_default="false", nullable=False),
        *ddl.optional_timestamps("routing_suspended_at"),
        ddl.timestamp_now(),
        ddl.check("deputies", "level", "level IN ('national', 'municipal', 'district')"),
        ddl.check("deputies", "monthly_capacity", "monthly_capacity >= 0"),
        ddl.check("deputies", "term", "term_end IS NULL OR term_end >= term_start"),
        ddl.city_fk("deputies"),
    )
    op.create_table(
        "deputy_stations",
        *ddl.tenant_row("deputy_stations"),
        sa.Column("deputy_id", sa.BigInteger(), nullable=False),
        sa.Column("station_id", sa.BigInteger(), nullable=False),
        ddl.scope_column(),
        sa.Column("linked_by", sa.String(length=100), nullable=False),
        ddl.timestamp_now(),
        ddl.city_fk("deputy_stations"),
        ddl.parent_fk("deputy_stations", "deputy_id", "deputies", ondelete="CASCADE"),
        ddl.parent_fk("deputy_stations", "station_id", "stations"),
        ddl.tenant_unique("deputy_stations", "deputy_id", "station_id"),
    )
    op.create_table(
        "deputy_volunteers",
        *ddl.child_row("deputy_volunteers", "deputy_id", "deputies", ondelete="CASCADE"),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("skills", SKILLS, server_default="{}", nullable=False),
        ddl.timestamp_now(),
    )
    ddl.gist_index("deputies")
    ddl.tenant_index("deputies", "principal")
    ddl.gist_index("deputy_stations")
    ddl.tenant_index("deputy_stations", "station_id")
    ddl.tenant_index("deputy_volunteers", "deputy_id")

    for table, visibility in PROTECTED.items():
        protect(table, visibility)
    reset_role()


def downgrade() -> None:
    as_owner()
    drop_tables(reversed(list(PROTECTED)))
    reset_role()
