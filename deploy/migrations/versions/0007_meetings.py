"""Six-party joint meetings (六方联席会议): meetings, invitations, action items, the notices they sent; and
the beat's leadership row (which process holds the beat lock).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deploy.migrations.helpers import as_owner, protect, reset_role, settings, unprotect
from tenants.models import Ltree
from tenants.rls import TENANT_MATCHES, Visibility

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PROTECTED = {
    "meetings": Visibility.SCOPED,
    "meeting_invitations": Visibility.OWNED,
    "meeting_actions": Visibility.OWNED,
    "meeting_notices": Visibility.SCOPED,
}
# A party reads the meetings it is invited to, wherever it sits: the principal is in the meeting's own
# array, so the policy needs no sub-query (Citus refuses those).
MEETING_STATES = (
    "state IN ('proposed', 'inviting', 'confirmed', 'held', 'minuted', 'voted', 'supervising', "
    "'closed', 'cancelled')"
)
PARTY_KINDS = (
    "party_kind IN ('deputy', 'party_organisation', 'residents_committee', 'owners_committee', "
    "'social_organisation', 'enterprise')"
)
PARTICIPANT_READ = (
    f"{TENANT_MATCHES} AND current_setting('app.principal', true) = ANY(participant_principals)"
)


def upgrade() -> None:
    as_owner()
    op.create_table(
        "meetings",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("station_id", sa.BigInteger(), nullable=False),
        sa.Column("topic", sa.String(length=300), nullable=False),
        sa.Column("agenda", sa.Text(), server_default="", nullable=False),
        sa.Column("place", sa.String(length=300), nullable=True),
        sa.Column("video_link", sa.String(length=500), nullable=True),
        sa.Column("request_ids", sa.ARRAY(sa.BigInteger()), server_default="{}", nullable=False),
        sa.Column("proposed_times", sa.ARRAY(sa.DateTime(timezone=True)), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reply_deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("round", sa.SmallInteger(), server_default="1", nullable=False),
        sa.Column("required_kinds", sa.ARRAY(sa.String(length=32)), nullable=False),
        sa.Column("min_kinds", sa.SmallInteger(), server_default="6", nullable=False),
        sa.Column("represented_kinds", sa.ARRAY(sa.String(length=32)), server_default="{}", nullable=False),
        sa.Column(
            "participant_principals", sa.ARRAY(sa.String(length=100)), server_default="{}", nullable=False
        ),
        sa.Column("pass_numerator", sa.SmallInteger(), server_default="1", nullable=False),
        sa.Column("pass_denominator", sa.SmallInteger(), server_default="2", nullable=False),
        sa.Column("minutes", sa.Text(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("votes_yes", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("votes_no", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("votes_abstain", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("closing_report", sa.Text(), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("organiser", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            MEETING_STATES,
            name=op.f("ck_meetings_state"),
        ),
        sa.CheckConstraint("char_length(topic) BETWEEN 1 AND 300", name=op.f("ck_meetings_topic_length")),
        sa.CheckConstraint("min_kinds BETWEEN 1 AND 6", name=op.f("ck_meetings_min_kinds")),
        sa.CheckConstraint(
            "pass_numerator > 0 AND pass_numerator <= pass_denominator", name=op.f("ck_meetings_threshold")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "station_id"],
            ["stations.tenant_id", "stations.id"],
            name=op.f("fk_meetings_tenant_id_station_id_stations"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_meetings")),
    )
    op.create_table(
        "meeting_invitations",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("meeting_id", sa.BigInteger(), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("party_kind", sa.String(length=32), nullable=False),
        sa.Column("owner_principal", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="invited", nullable=False),
        sa.Column("round", sa.SmallInteger(), server_default="1", nullable=False),
        sa.Column("substitute_for_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("replied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attended", sa.Boolean(), nullable=True),
        sa.Column("vote", sa.String(length=8), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            PARTY_KINDS,
            name=op.f("ck_meeting_invitations_party_kind"),
        ),
        sa.CheckConstraint(
            "state IN ('invited', 'confirmed', 'declined')", name=op.f("ck_meeting_invitations_state")
        ),
        sa.CheckConstraint(
            "vote IS NULL OR vote IN ('yes', 'no', 'abstain')", name=op.f("ck_meeting_invitations_vote")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "meeting_id"],
            ["meetings.tenant_id", "meetings.id"],
            name=op.f("fk_meeting_invitations_tenant_id_meeting_id_meetings"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_meeting_invitations")),
        sa.UniqueConstraint(
            "tenant_id",
            "meeting_id",
            "owner_principal",
            name=op.f("uq_meeting_invitations_tenant_id_meeting_id_owner_principal"),
        ),
    )
    op.create_table(
        "meeting_actions",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("meeting_id", sa.BigInteger(), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("party_kind", sa.String(length=32), nullable=False),
        sa.Column("owner_principal", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("overdue", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("progress", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            PARTY_KINDS,
            name=op.f("ck_meeting_actions_party_kind"),
        ),
        sa.CheckConstraint("state IN ('open', 'done')", name=op.f("ck_meeting_actions_state")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "meeting_id"],
            ["meetings.tenant_id", "meetings.id"],
            name=op.f("fk_meeting_actions_tenant_id_meeting_id_meetings"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_meeting_actions")),
    )
    op.create_table(
        "meeting_notices",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("meeting_id", sa.BigInteger(), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("recipient", sa.String(length=100), nullable=True),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "meeting_id"],
            ["meetings.tenant_id", "meetings.id"],
            name=op.f("fk_meeting_notices_tenant_id_meeting_id_meetings"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_meeting_notices")),
        sa.UniqueConstraint("tenant_id", "source", name=op.f("uq_meeting_notices_tenant_id_source")),
    )
    op.create_index("ix_meetings_scope", "meetings", ["scope"], unique=False, postgresql_using="gist")
    op.create_index("ix_meetings_tenant_id_state", "meetings", ["tenant_id", "state"], unique=False)
    op.create_index(
        "ix_meeting_invitations_tenant_id_owner_principal",
        "meeting_invitations",
        ["tenant_id", "owner_principal"],
        unique=False,
    )
    op.create_index(
        "ix_meeting_actions_tenant_id_meeting_id",
        "meeting_actions",
        ["tenant_id", "meeting_id"],
        unique=False,
    )
    op.create_index(
        "ix_meeting_notices_tenant_id_meeting_id",
        "meeting_notices",
        ["tenant_id", "meeting_id"],
        unique=False,
    )

    op.create_table(
        "beat_leaders",
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column(
            "last_tick_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("ticks", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("sent", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("holder", name=op.f("pk_beat_leaders")),
    )
    for table, visibility in PROTECTED.items():
        protect(table, visibility)
    app = settings().app_role
    op.execute(f"CREATE POLICY participant_read ON meetings FOR SELECT TO {app} USING ({PARTICIPANT_READ})")
    reset_role()


def downgrade() -> None:
    as_owner()
    op.drop_table("beat_leaders")
    op.execute("DROP POLICY IF EXISTS participant_read ON meetings")
    for table in reversed(list(PROTECTED)):
        unprotect(table)
        op.drop_table(table)
    reset_role()
