"""Six-party joint meetings (六方联席会议): meetings, invitations, action items, the notices they sent; and
the beat's leadership row (which process holds the beat lock).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deploy.migrations import ddl
from deploy.migrations.helpers import as_owner, drop_tables, protect, reset_role, settings
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
        *ddl.scoped_row("meetings"),
        sa.Column("station_id", sa.BigInteger(), nullable=False),
        sa.Column("topic", sa.String(length=300), nullable=False),
        sa.Column("agenda", sa.Text(), server_default="", nullable=False),
        sa.Column("place", sa.String(length=300), nullable=True),
        sa.Column("video_link", sa.String(length=500), nullable=True),
        sa.Column("request_ids", sa.ARRAY(sa.BigInteger()), server_default="{}", nullable=False),
        sa.Column("proposed_times", sa.ARRAY(ddl.TIMESTAMP), nullable=False),
        sa.Column("starts_at", ddl.TIMESTAMP, nullable=False),
        sa.Column("reply_deadline", ddl.TIMESTAMP, nullable=False),
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
        ddl.timestamp_now("created_at"),
        ddl.timestamp_now("updated_at"),
        *ddl.optional_timestamps("confirmed_at", "held_at", "closed_at"),
        ddl.check("meetings", "state", MEETING_STATES),
        ddl.check("meetings", "topic_length", "char_length(topic) BETWEEN 1 AND 300"),
        ddl.check("meetings", "min_kinds", "min_kinds BETWEEN 1 AND 6"),
        ddl.check("meetings", "threshold", "pass_numerator > 0 AND pass_numerator <= pass_denominator"),
        ddl.parent_fk("meetings", "station_id", "stations"),
    )
    op.create_table(
        "meeting_invitations",
        *_party_row("meeting_invitations"),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="invited", nullable=False),
        sa.Column("round", sa.SmallInteger(), server_default="1", nullable=False),
        sa.Column("substitute_for_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        *ddl.optional_timestamps("replied_at", "escalated_at"),
        sa.Column("attended", sa.Boolean(), nullable=True),
        sa.Column("vote", sa.String(length=8), nullable=True),
        ddl.timestamp_now(),
        ddl.check("meeting_invitations", "party_kind", PARTY_KINDS),
        ddl.check("meeting_invitations", "state", "state IN ('invited', 'confirmed', 'declined')"),
        ddl.check("meeting_invitations", "vote", "vote IS NULL OR vote IN ('yes', 'no', 'abstain')"),
        ddl.tenant_unique("meeting_invitations", "meeting_id", "owner_principal"),
    )
    op.create_table(
        "meeting_actions",
        *_party_row("meeting_actions"),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("due_at", ddl.TIMESTAMP, nullable=False),
        sa.Column("state", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("overdue", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("progress", sa.Text(), nullable=True),
        ddl.timestamp_now(),
        *ddl.optional_timestamps("done_at"),
        ddl.check("meeting_actions", "party_kind", PARTY_KINDS),
        ddl.check("meeting_actions", "state", "state IN ('open', 'done')"),
    )
    op.create_table(
        "meeting_notices",
        *ddl.child_row("meeting_notices", "meeting_id", "meetings"),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("recipient", sa.String(length=100), nullable=True),
        sa.Column("source", sa.String(length=200), nullable=False),
        ddl.timestamp_now(),
        ddl.tenant_unique("meeting_notices", "source"),
    )
    ddl.gist_index("meetings")
    ddl.tenant_index("meetings", "state")
    ddl.tenant_index("meeting_invitations", "owner_principal")
    ddl.tenant_index("meeting_actions", "meeting_id")
    ddl.tenant_index("meeting_notices", "meeting_id")

    op.create_table(
        "beat_leaders",
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        ddl.timestamp_now("acquired_at"),
        ddl.timestamp_now("last_tick_at"),
        sa.Column("ticks", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("sent", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("holder", name=op.f("pk_beat_leaders")),
    )
    for table, visibility in PROTECTED.items():
        protect(table, visibility)
    app = settings().app_role
    op.execute(f"CREATE POLICY participant_read ON meetings FOR SELECT TO {app} USING ({PARTICIPANT_READ})")
    reset_role()


def _party_row(table: str) -> list[sa.schema.SchemaItem]:
    """What invitations and action items begin with: the meeting, and the party that owns the row."""
    return [
        *ddl.child_row(table, "meeting_id", "meetings"),
        sa.Column("party_kind", sa.String(length=32), nullable=False),
        sa.Column("owner_principal", sa.String(length=100), nullable=False),
    ]


def downgrade() -> None:
    as_owner()
    op.drop_table("beat_leaders")
    op.execute("DROP POLICY IF EXISTS participant_read ON meetings")
    drop_tables(reversed(list(PROTECTED)))
    reset_role()
