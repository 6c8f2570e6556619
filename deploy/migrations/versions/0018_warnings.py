"""Red/yellow/blue warnings (红黄蓝三级预警): the city's warning rule as duty settings, one evaluation per
deputy and week (the job's idempotence key), and warnings with their acknowledgement, rectification note and
closing.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from deploy.migrations import ddl
from deploy.migrations.helpers import as_owner, drop_tables, protect, reset_role
from tenants.rls import Visibility

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# Both lie in the scope keeping the deputy's record; the deputy reads their own wherever they are.
PROTECTED = {"deputy_evaluations": Visibility.OWNED, "deputy_warnings": Visibility.OWNED}
LEVELS = (  # services.deputies.models.WARNING_LEVELS, as it was when this ran
    '[{"level": "red", "conditions": 3, "weeks": 4}, {"level": "yellow", "conditions": 2, "weeks": 2}, '
    '{"level": "blue", "conditions": 1, "weeks": 1}]'
)
SETTINGS = (
    sa.Column("warning_min_activities", sa.SmallInteger(), server_default="1", nullable=False),
    sa.Column("warning_resolution_bar", sa.SmallInteger(), server_default="80", nullable=False),
    sa.Column("warning_window_days", sa.SmallInteger(), server_default="90", nullable=False),
    sa.Column("warning_levels", JSONB, server_default=sa.text(f"'{LEVELS}'::jsonb"), nullable=False),
    sa.Column("suspend_after_weeks", sa.SmallInteger(), server_default="2", nullable=False),
)


def _deputy_row(table: str) -> list[sa.schema.SchemaItem]:
    return [
        *ddl.scoped_row(table),
        sa.Column("deputy_id", sa.BigInteger(), nullable=False),
        sa.Column("owner_principal", sa.String(length=100), nullable=True),
        ddl.city_fk(table),
        ddl.parent_fk(table, "deputy_id", "deputies"),
    ]


def upgrade() -> None:
    as_owner()
    for column in SETTINGS:
        op.add_column("duty_settings", column)
    op.create_table(
        "deputy_evaluations",
        *_deputy_row("deputy_evaluations"),
        sa.Column("week_start", sa.Date(), nullable=False),
        sa.Column("conditions", JSONB, server_default="[]", nullable=False),
        sa.Column("figures", JSONB, server_default="{}", nullable=False),
        sa.Column("streak", sa.SmallInteger(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=True),
        ddl.timestamp_now(),
        ddl.tenant_unique("deputy_evaluations", "deputy_id", "week_start"),
    )
    op.create_table(
        "deputy_warnings",
        *_deputy_row("deputy_warnings"),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("conditions", JSONB, server_default="[]", nullable=False),
        sa.Column("first_week", sa.Date(), nullable=False),
        sa.Column("last_week", sa.Date(), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("acknowledged_by", sa.String(length=100), nullable=True),
        sa.Column("rectification_note", sa.Text(), nullable=True),
        sa.Column("noted_by", sa.String(length=100), nullable=True),
        ddl.timestamp_now(),
        *ddl.optional_timestamps("acknowledged_at", "noted_at", "closed_at"),
        ddl.check("deputy_warnings", "level", "level IN ('blue', 'yellow', 'red')"),
        ddl.check("deputy_warnings", "state", "state IN ('open', 'acknowledged', 'closed')"),
    )
    ddl.gist_index("deputy_evaluations")
    ddl.tenant_index("deputy_evaluations", "owner_principal")
    ddl.gist_index("deputy_warnings")
    ddl.tenant_index("deputy_warnings", "deputy_id")
    ddl.tenant_index("deputy_warnings", "owner_principal")
    # One live warning per deputy: a new week raises or lowers it, or closes it.
    ddl.unique_where(
        "uq_deputy_warnings_live", "deputy_warnings", ["tenant_id", "deputy_id"], "state <> 'closed'"
    )
    for table, visibility in PROTECTED.items():
        protect(table, visibility)
    reset_role()


def downgrade() -> None:
    as_owner()
    drop_tables(reversed(list(PROTECTED)))
    for column in reversed(SETTINGS):
        op.drop_column("duty_settings", column.name)
    reset_role()
