"""The "five ones" (五个一) as data: how many verified activities of a kind each deputy owes per period.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deploy.migrations import ddl
from deploy.migrations.helpers import as_owner, drop_tables, protect, reset_role
from tenants.rls import Visibility

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

PROTECTED = {"five_ones_rules": Visibility.TENANT}


def upgrade() -> None:
    as_owner()
    op.create_table(
        "five_ones_rules",
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("required", sa.SmallInteger(), nullable=False),
        ddl.tenant_pk("five_ones_rules", "kind"),
        ddl.city_fk("five_ones_rules"),
        ddl.check("five_ones_rules", "period", "period IN ('month', 'quarter', 'half', 'year')"),
        ddl.check("five_ones_rules", "required", "required BETWEEN 0 AND 100"),
    )
    for table, visibility in PROTECTED.items():
        protect(table, visibility)
    reset_role()


def downgrade() -> None:
    as_owner()
    drop_tables(reversed(list(PROTECTED)))
    reset_role()
