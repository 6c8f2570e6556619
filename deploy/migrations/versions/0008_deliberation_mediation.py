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

from deploy.migrations.helpers import as_owner, protect, reset_role, unprotect
from tenants.models import Ltree
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


def upgrade() -> None:
    as_owner()
    op.create_table(
        "deliberations",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("topic", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("place", sa.String(length=300), nullable=True),
        sa.Column("meeting_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registration_deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("voting_closes_at", sa.DateTime(timezone=True), nullable=False),
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
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tallied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "approval_base IN ('attendees', 'ballots')", name=op.f("ck_deliberations_approval_base")
        ),
        sa.CheckConstraint(
            "approval_numerator >= 1 AND approval_numerator <= approval_denominator",
            name=op.f("ck_deliberations_approval"),
        ),
        sa.CheckConstraint("capacity >= 1", name=op.f("ck_deliberations_capacity")),
        sa.CheckConstraint(
            "capture_percent BETWEEN 1 AND 100", name=op.f("ck_deliberations_capture_percent")
        ),
        sa.CheckConstraint("quorum >= 1", name=op.f("ck_deliberations_quorum")),
        sa.CheckConstraint(
            "registration_deadline <= voting_closes_at", name=op.f("ck_deliberations_timeline")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["cities.tenant_id"], name=op.f("fk_deliberations_tenant_id_cities")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_deliberations")),
    )
    op.create_table(
        "deliberation_registrations",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("deliberation_id", sa.BigInteger(), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("owner_principal", sa.String(length=100), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("age_band", sa.String(length=16), nullable=False),
        sa.Column("tenure", sa.String(length=16), nullable=False),
        sa.Column("residency", sa.String(length=16), nullable=False),
        sa.Column("retired_cadre", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attended_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "age_band IN ('under_30', '30_44', '45_59', '60_74', '75_plus')",
            name=op.f("ck_deliberation_registrations_age_band"),
        ),
        sa.CheckConstraint(
            "residency IN ('long_term', 'migrant_worker')",
            name=op.f("ck_deliberation_registrations_residency"),
        ),
        sa.CheckConstraint(
            "status IN ('registered', 'waitlisted', 'cancelled')",
            name=op.f("ck_deliberation_registrations_status"),
        ),
        sa.CheckConstraint(
            "tenure IN ('owner', 'renter')", name=op.f("ck_deliberation_registrations_tenure")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "deliberation_id"],
            ["deliberations.tenant_id", "deliberations.id"],
            name=op.f("fk_deliberation_registrations_tenant_id_deliberation_id_deliberations"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_deliberation_registrations")),
        sa.UniqueConstraint(
            "tenant_id",
            "deliberation_id",
            "owner_principal",
            name=op.f("uq_deliberation_registrations_tenant_id_deliberation_id_owner_principal"),
        ),
    )
    op.create_table(
        "deliberation_ballots",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("deliberation_id", sa.BigInteger(), nullable=False),
        sa.Column("registration_id", sa.BigInteger(), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("owner_principal", sa.String(length=100), nullable=False),
        sa.Column("choice", sa.String(length=8), nullable=False),
        sa.Column("cast_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("choice IN ('yes', 'no', 'abstain')", name=op.f("ck_deliberation_ballots_choice")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "deliberation_id"],
            ["deliberations.tenant_id", "deliberations.id"],
            name=op.f("fk_deliberation_ballots_tenant_id_deliberation_id_deliberations"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "registration_id"],
            ["deliberation_registrations.tenant_id", "deliberation_registrations.id"],
            name=op.f("fk_deliberation_ballots_tenant_id_registration_id_deliberation_registrations"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_deliberation_ballots")),
        sa.UniqueConstraint(
            "tenant_id",
            "deliberation_id",
            "registration_id",
            name=op.f("uq_deliberation_ballots_tenant_id_deliberation_id_registration_id"),
        ),
    )
    op.create_table(
        "mediation_cases",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("case_type", sa.String(length=24), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=True),
        sa.Column("owner_principal", sa.String(length=100), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("level", sa.SmallInteger(), server_default="1", nullable=False),
        sa.Column("mediator", sa.String(length=100), nullable=True),
        sa.Column("departments", JSONB, server_default="[]", nullable=False),
        sa.Column("deadlines", JSONB, server_default="{}", nullable=False),
        sa.Column("level_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("agreement", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "case_type IN ('neighbours', 'property_management', 'family', 'labour', 'consumer', 'other')",
            name=op.f("ck_mediation_cases_case_type"),
        ),
        sa.CheckConstraint(
            "char_length(description) <= 4000", name=op.f("ck_mediation_cases_description_length")
        ),
        sa.CheckConstraint("level BETWEEN 1 AND 3", name=op.f("ck_mediation_cases_level")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "request_id"],
            ["requests.tenant_id", "requests.id"],
            name=op.f("fk_mediation_cases_tenant_id_request_id_requests"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["cities.tenant_id"], name=op.f("fk_mediation_cases_tenant_id_cities")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_mediation_cases")),
    )
    op.create_table(
        "mediation_parties",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("owner_principal", sa.String(length=100), nullable=True),
        sa.CheckConstraint(
            "role IN ('applicant', 'respondent', 'other')", name=op.f("ck_mediation_parties_role")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "case_id"],
            ["mediation_cases.tenant_id", "mediation_cases.id"],
            name=op.f("fk_mediation_parties_tenant_id_case_id_mediation_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_mediation_parties")),
    )
    op.create_table(
        "mediation_levels",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("mediator", sa.String(length=100), nullable=True),
        sa.Column("departments", JSONB, server_default="[]", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("agreement", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('agreement', 'failed', 'timeout')", name=op.f("ck_mediation_levels_outcome")
        ),
        sa.CheckConstraint("level BETWEEN 1 AND 3", name=op.f("ck_mediation_levels_level")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "case_id"],
            ["mediation_cases.tenant_id", "mediation_cases.id"],
            name=op.f("fk_mediation_levels_tenant_id_case_id_mediation_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_mediation_levels")),
        sa.UniqueConstraint(
            "tenant_id", "case_id", "level", name=op.f("uq_mediation_levels_tenant_id_case_id_level")
        ),
    )
    op.create_table(
        "mediation_sessions",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("held_on", sa.Date(), nullable=False),
        sa.Column("participants", JSONB, server_default="[]", nullable=False),
        sa.Column("notes", sa.Text(), server_default="", nullable=False),
        sa.Column("recorded_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("level BETWEEN 1 AND 3", name=op.f("ck_mediation_sessions_level")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "case_id"],
            ["mediation_cases.tenant_id", "mediation_cases.id"],
            name=op.f("fk_mediation_sessions_tenant_id_case_id_mediation_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_mediation_sessions")),
    )
    op.create_index(
        "ix_deliberations_scope", "deliberations", ["scope"], unique=False, postgresql_using="gist"
    )
    op.create_index(
        "ix_deliberation_registrations_queue",
        "deliberation_registrations",
        ["tenant_id", "deliberation_id", "status", "queued_at"],
        unique=False,
    )
    op.create_index(
        "ix_deliberation_registrations_owner",
        "deliberation_registrations",
        ["tenant_id", "owner_principal"],
        unique=False,
    )
    op.create_index(
        "ix_mediation_cases_tenant_id_owner_principal",
        "mediation_cases",
        ["tenant_id", "owner_principal"],
        unique=False,
    )
    op.create_index(
        "ix_mediation_cases_scope", "mediation_cases", ["scope"], unique=False, postgresql_using="gist"
    )
    op.create_index(
        "ix_mediation_parties_tenant_id_case_id", "mediation_parties", ["tenant_id", "case_id"], unique=False
    )
    op.create_index(
        "ix_mediation_levels_tenant_id_started_at",
        "mediation_levels",
        ["tenant_id", "started_at"],
        unique=False,
    )
    op.create_index(
        "ix_mediation_sessions_tenant_id_case_id",
        "mediation_sessions",
        ["tenant_id", "case_id"],
        unique=False,
    )

    for table, visibility in PROTECTED.items():
        protect(table, visibility)
    reset_role()


def downgrade() -> None:
    as_owner()
    for table in reversed(list(PROTECTED)):
        unprotect(table)
        op.drop_table(table)
    reset_role()
