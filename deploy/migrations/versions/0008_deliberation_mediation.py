"""Deliberation councils (registrations, ballots) and three-level mediation (cases, parties, levels,
sessions).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from deploy.migrations import ddl
from deploy.migrations.helpers import as_owner, drop_tables, protect, reset_role
from tenants.rls import Visibility

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# A topic is readable above its scope too, so a resident (whose transaction is anchored below their home
# station) and the stations of a street read what is put to them; registrations, ballots, cases and
# parties are their owner's to read wherever they lie; the rest is for the staff of the scope.
PROTECTED = {
    "deliberations": Visibility.HIERARCHY,
    "deliberation_registrations": Visibility.OWNED,
    "deliberation_ballots": Visibility.OWNED,
    "mediation_cases": Visibility.OWNED,
    "mediation_parties": Visibility.OWNED,
    "mediation_levels": Visibility.SCOPED,
    "mediation_sessions": Visibility.SCOPED,
}
LEVELS = "level BETWEEN 1 AND 3"  # community mediator, deputy, departments


def upgrade() -> None:
    as_owner()
    op.create_table(
        "deliberations",
        *ddl.scoped_row("deliberations"),
        sa.Column("topic", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("place", sa.String(length=300), nullable=True),
        sa.Column("meeting_at", ddl.TIMESTAMP, nullable=False),
        sa.Column("registration_deadline", ddl.TIMESTAMP, nullable=False),
        sa.Column("voting_closes_at", ddl.TIMESTAMP, nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("quorum", sa.Integer(), nullable=False),
        sa.Column("approval_numerator", sa.SmallInteger(), nullable=False),
        sa.Column("approval_denominator", sa.SmallInteger(), nullable=False),
        sa.Column("approval_base", sa.String(length=16), server_default="attendees", nullable=False),
        sa.Column("capture_percent", sa.SmallInteger(), server_default="60", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attendees", sa.Integer(), nullable=True),
        sa.Column("yes_votes", sa.Integer(), nullable=True),
        sa.Column("no_votes", sa.Integer(), nullable=True),
        sa.Column("abstentions", sa.Integer(), nullable=True),
        sa.Column("quorum_met", sa.Boolean(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        ddl.timestamp_now(),
        *ddl.optional_timestamps("tallied_at", "published_at"),
        ddl.check("deliberations", "approval_base", "approval_base IN ('attendees', 'ballots')"),
        ddl.check(
            "deliberations",
            "approval",
            "approval_numerator >= 1 AND approval_numerator <= approval_denominator",
        ),
        ddl.check("deliberations", "capacity", "capacity >= 1"),
        ddl.check("deliberations", "capture_percent", "capture_percent BETWEEN 1 AND 100"),
        ddl.check("deliberations", "quorum", "quorum >= 1"),
        ddl.check("deliberations", "timeline", "registration_deadline <= voting_closes_at"),
        ddl.city_fk("deliberations"),
    )
    op.create_table(
        "deliberation_registrations",
        *ddl.child_row("deliberation_registrations", "deliberation_id", "deliberations"),
        sa.Column("owner_principal", sa.String(length=100), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("age_band", sa.String(length=16), nullable=False),
        sa.Column("tenure", sa.String(length=16), nullable=False),
        sa.Column("residency", sa.String(length=16), nullable=False),
        sa.Column("retired_cadre", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("queued_at", ddl.TIMESTAMP, nullable=False),
        *ddl.optional_timestamps("promoted_at", "cancelled_at", "attended_at"),
        ddl.check(
            "deliberation_registrations",
            "age_band",
            "age_band IN ('under_30', '30_44', '45_59', '60_74', '75_plus')",
        ),
        ddl.check("deliberation_registrations", "residency", "residency IN ('long_term', 'migrant_worker')"),
        ddl.check(
            "deliberation_registrations", "status", "status IN ('registered', 'waitlisted', 'cancelled')"
        ),
        ddl.check("deliberation_registrations", "tenure", "tenure IN ('owner', 'renter')"),
        ddl.tenant_unique("deliberation_registrations", "deliberation_id", "owner_principal"),
    )
    op.create_table(
        "deliberation_ballots",
        *ddl.tenant_row("deliberation_ballots"),
        sa.Column("deliberation_id", sa.BigInteger(), nullable=False),
        sa.Column("registration_id", sa.BigInteger(), nullable=False),
        ddl.scope_column(),
        sa.Column("owner_principal", sa.String(length=100), nullable=False),
        sa.Column("choice", sa.String(length=8), nullable=False),
        ddl.timestamp_now("cast_at"),
        ddl.check("deliberation_ballots", "choice", "choice IN ('yes', 'no', 'abstain')"),
        ddl.parent_fk("deliberation_ballots", "deliberation_id", "deliberations"),
        ddl.parent_fk("deliberation_ballots", "registration_id", "deliberation_registrations"),
        ddl.tenant_unique("deliberation_ballots", "deliberation_id", "registration_id"),
    )
    op.create_table(
        "mediation_cases",
        *ddl.scoped_row("mediation_cases"),
        sa.Column("case_type", sa.String(length=24), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=True),
        sa.Column("owner_principal", sa.String(length=100), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("level", sa.SmallInteger(), server_default="1", nullable=False),
        sa.Column("mediator", sa.String(length=100), nullable=True),
        sa.Column("departments", JSONB, server_default="[]", nullable=False),
        sa.Column("deadlines", JSONB, server_default="{}", nullable=False),
        *ddl.optional_timestamps("level_due_at"),
        sa.Column("agreement", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("opened_at", ddl.TIMESTAMP, nullable=False),
        *ddl.optional_timestamps("closed_at"),
        ddl.check(
            "mediation_cases",
            "case_type",
            "case_type IN ('neighbours', 'property_management', 'family', 'labour', 'consumer', 'other')",
        ),
        ddl.check("mediation_cases", "description_length", "char_length(description) <= 4000"),
        ddl.check("mediation_cases", "level", LEVELS),
        ddl.parent_fk("mediation_cases", "request_id", "requests"),
        ddl.city_fk("mediation_cases"),
    )
    op.create_table(
        "mediation_parties",
        *_case_row("mediation_parties"),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("owner_principal", sa.String(length=100), nullable=True),
        ddl.check("mediation_parties", "role", "role IN ('applicant', 'respondent', 'other')"),
        ddl.tenant_pk("mediation_parties"),
    )
    op.create_table(
        "mediation_levels",
        *_case_row("mediation_levels"),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("mediator", sa.String(length=100), nullable=True),
        sa.Column("departments", JSONB, server_default="[]", nullable=False),
        sa.Column("started_at", ddl.TIMESTAMP, nullable=False),
        sa.Column("due_at", ddl.TIMESTAMP, nullable=False),
        *ddl.optional_timestamps("ended_at"),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("agreement", sa.Text(), nullable=True),
        ddl.check("mediation_levels", "outcome", "outcome IN ('agreement', 'failed', 'timeout')"),
        ddl.check("mediation_levels", "level", LEVELS),
        ddl.tenant_pk("mediation_levels"),
        ddl.tenant_unique("mediation_levels", "case_id", "level"),
    )
    op.create_table(
        "mediation_sessions",
        *_case_row("mediation_sessions"),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("held_on", sa.Date(), nullable=False),
        sa.Column("participants", JSONB, server_default="[]", nullable=False),
        sa.Column("notes", sa.Text(), server_default="", nullable=False),
        sa.Column("recorded_by", sa.String(length=100), nullable=False),
        ddl.timestamp_now(),
        ddl.check("mediation_sessions", "level", LEVELS),
        ddl.tenant_pk("mediation_sessions"),
    )
    ddl.gist_index("deliberations")
    op.create_index(
        "ix_deliberation_registrations_queue",
        "deliberation_registrations",
        ["tenant_id", "deliberation_id", "status", "queued_at"],
    )
    op.create_index(
        "ix_deliberation_registrations_owner", "deliberation_registrations", ["tenant_id", "owner_principal"]
    )
    ddl.tenant_index("mediation_cases", "owner_principal")
    ddl.gist_index("mediation_cases")
    ddl.tenant_index("mediation_parties", "case_id")
    ddl.tenant_index("mediation_levels", "started_at")
    ddl.tenant_index("mediation_sessions", "case_id")

    for table, visibility in PROTECTED.items():
        protect(table, visibility)
    reset_role()


def _case_row(table: str) -> list[sa.schema.SchemaItem]:
    """What a case's parties, levels and sessions begin with: the case, which takes them with it."""
    return ddl.child_row(table, "case_id", "mediation_cases", ondelete="CASCADE")


def downgrade() -> None:
    as_owner()
    drop_tables(reversed(list(PROTECTED)))
    reset_role()
