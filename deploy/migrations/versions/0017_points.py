"""The points ledger (履职积分): the city's effective-dated point rules and an append-only ledger of entries,
each pointing to what earned it; the app may add and read entries, never change or remove one.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deploy.migrations import ddl
from deploy.migrations.helpers import as_owner, drop_tables, protect, reset_role, settings
from tenants.rls import Visibility

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# An entry lies where what earned it lies (the activity's or request's station); the deputy reads their own
# wherever they are.
PROTECTED = {"point_rules": Visibility.TENANT, "point_entries": Visibility.OWNED}


def upgrade() -> None:
    as_owner()
    op.create_table(
        "point_rules",
        *ddl.tenant_row("point_rules"),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("points", sa.SmallInteger(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        ddl.timestamp_now(),
        ddl.city_fk("point_rules"),
        ddl.tenant_unique("point_rules", "event", "effective_from"),
        ddl.check("point_rules", "points", "points BETWEEN -100 AND 100"),
    )
    op.create_table(
        "point_entries",
        *ddl.scoped_row("point_entries"),
        sa.Column("deputy_id", sa.BigInteger(), nullable=False),
        sa.Column("owner_principal", sa.String(length=100), nullable=True),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("source_kind", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.Column("rule_id", sa.BigInteger(), nullable=True),
        sa.Column("corrects_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("earned_at", ddl.TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        ddl.timestamp_now(),
        ddl.city_fk("point_entries"),
        ddl.parent_fk("point_entries", "deputy_id", "deputies"),
        ddl.parent_fk("point_entries", "rule_id", "point_rules"),
        ddl.parent_fk("point_entries", "corrects_id", "point_entries"),
        ddl.check("point_entries", "correction", "(corrects_id IS NULL) = (event <> 'correction')"),
    )
    ddl.gist_index("point_entries")
    ddl.tenant_index("point_entries", "deputy_id", "earned_at")
    ddl.tenant_index("point_entries", "owner_principal")
    # What earned an entry earns it once: awarding again (a retried step, a re-run job) adds nothing.
    ddl.unique_where(
        "uq_point_entries_earned",
        "point_entries",
        ["tenant_id", "deputy_id", "event", "source_kind", "source_id"],
        "corrects_id IS NULL",
    )
    for table, visibility in PROTECTED.items():
        protect(table, visibility)
    s = settings()
    op.execute(f"REVOKE UPDATE, DELETE ON point_entries FROM {s.app_role}, {s.tenant_role}")
    reset_role()


def downgrade() -> None:
    as_owner()
    drop_tables(reversed(list(PROTECTED)))
    reset_role()
