"""Duty activities (履职活动): the city's duty settings, activities with their evidence and verification,
phone check-ins, residents' registrations for reception days and ratings, and rectification items.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from deploy.migrations import ddl
from deploy.migrations.helpers import as_owner, drop_tables, protect, reset_role
from tenants.rls import Visibility

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# An activity, its check-ins, registrations and ratings lie in the activity's station; the deputy (and the
# resident who registered or rated) reads their own wherever they are. Rectification items are the staff's.
PROTECTED = {
    "duty_settings": Visibility.TENANT,
    "activities": Visibility.OWNED,
    "activity_checkins": Visibility.OWNED,
    "activity_registrations": Visibility.OWNED,
    "activity_ratings": Visibility.OWNED,
    "rectifications": Visibility.SCOPED,
}
KINDS = (
    "'visit', 'reception', 'policy_talk', 'research', 'problem_solved', 'duty_report', 'meeting', "
    "'deliberation', 'mediation'"
)


def upgrade() -> None:
    as_owner()
    op.create_table(
        "duty_settings",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("announce_days", sa.SmallInteger(), server_default="3", nullable=False),
        sa.Column("max_travel_kmh", sa.SmallInteger(), server_default="60", nullable=False),
        sa.Column("boundary_margin_meters", sa.Integer(), server_default="50", nullable=False),
        sa.Column("satisfaction_bar", sa.SmallInteger(), server_default="80", nullable=False),
        ddl.tenant_pk("duty_settings", "tenant_id"),
        ddl.city_fk("duty_settings"),
    )
    op.create_table(
        "activities",
        *ddl.scoped_row("activities"),
        sa.Column("deputy_id", sa.BigInteger(), nullable=False),
        sa.Column("station_id", sa.BigInteger(), nullable=False),
        sa.Column("owner_principal", sa.String(length=100), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("topics", JSONB, server_default="[]", nullable=False),
        sa.Column("starts_at", ddl.TIMESTAMP, nullable=False),
        sa.Column("households_visited", sa.Integer(), server_default="0", nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=True),
        sa.Column("match_id", sa.BigInteger(), nullable=True),
        sa.Column("linked", sa.String(length=64), nullable=True),
        sa.Column("photo_urls", JSONB, server_default="[]", nullable=False),
        sa.Column("minutes", sa.Text(), server_default="", nullable=False),
        sa.Column("attendees", sa.Integer(), server_default="0", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("verification_note", sa.Text(), nullable=True),
        sa.Column("verified_by", sa.String(length=100), nullable=True),
        sa.Column("outside_boundary", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("impossible_travel", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("synthetic", sa.Boolean(), server_default="false", nullable=False),
        ddl.timestamp_now(),
        *ddl.optional_timestamps("reported_at", "verified_at"),
        ddl.check("activities", "kind", f"kind IN ({KINDS})"),
        ddl.check(
            "activities",
            "state",
            "state IN ('planned', 'reported', 'verified', 'rejected', 'more_requested')",
        ),
        ddl.check("activities", "counts", "households_visited >= 0 AND attendees >= 0"),
        ddl.city_fk("activities"),
        ddl.parent_fk("activities", "deputy_id", "deputies"),
        ddl.parent_fk("activities", "station_id", "stations"),
        ddl.parent_fk("activities", "request_id", "requests"),
        ddl.parent_fk("activities", "match_id", "matches"),
    )
    op.create_table(
        "activity_checkins",
        *ddl.child_row("activity_checkins", "activity_id", "activities", ondelete="CASCADE"),
        sa.Column("deputy_id", sa.BigInteger(), nullable=False),
        sa.Column("owner_principal", sa.String(length=100), nullable=True),
        sa.Column("checked_in_at", ddl.TIMESTAMP, nullable=False),
        sa.Column("geom", ddl.point(), nullable=False),
        sa.Column("crs", sa.String(length=8), nullable=False),
        sa.Column("outside_meters", sa.Float(), nullable=True),
        sa.Column("speed_kmh", sa.Float(), nullable=True),
        sa.Column("outside_boundary", sa.Boolean(), nullable=False),
        sa.Column("impossible_travel", sa.Boolean(), nullable=False),
        ddl.timestamp_now(),
    )
    op.create_table(
        "activity_registrations",
        *ddl.child_row("activity_registrations", "activity_id", "activities", ondelete="CASCADE"),
        sa.Column("owner_principal", sa.String(length=100), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=True),
        sa.Column("slot", sa.String(length=32), nullable=True),
        ddl.timestamp_now(),
        ddl.tenant_unique("activity_registrations", "activity_id", "owner_principal"),
    )
    op.create_table(
        "activity_ratings",
        *ddl.child_row("activity_ratings", "activity_id", "activities", ondelete="CASCADE"),
        sa.Column("owner_principal", sa.String(length=100), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        ddl.timestamp_now(),
        ddl.check("activity_ratings", "score", "score BETWEEN 0 AND 100"),
        ddl.tenant_unique("activity_ratings", "activity_id", "owner_principal"),
    )
    op.create_table(
        "rectifications",
        *ddl.scoped_row("rectifications"),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("deputy_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=8), server_default="open", nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("closed_by", sa.String(length=100), nullable=True),
        ddl.timestamp_now(),
        *ddl.optional_timestamps("closed_at"),
        ddl.check("rectifications", "state", "state IN ('open', 'closed')"),
        ddl.city_fk("rectifications"),
        ddl.parent_fk("rectifications", "deputy_id", "deputies"),
    )
    ddl.gist_index("activities")
    ddl.tenant_index("activities", "deputy_id", "starts_at")
    ddl.tenant_index("activities", "owner_principal")
    ddl.gist_index("activity_checkins")
    ddl.tenant_index("activity_checkins", "deputy_id", "checked_in_at")
    ddl.tenant_index("activity_checkins", "activity_id")
    ddl.tenant_index("activity_registrations", "owner_principal")
    ddl.tenant_index("activity_ratings", "owner_principal")
    ddl.gist_index("rectifications")
    # One open item per subject: re-opening what is open already adds nothing.
    ddl.unique_where("uq_rectifications_open", "rectifications", ["tenant_id", "subject"], "state = 'open'")

    for table, visibility in PROTECTED.items():
        protect(table, visibility)
    reset_role()


def downgrade() -> None:
    as_owner()
    drop_tables(reversed(list(PROTECTED)))
    reset_role()
