"""The outbox row stays the truth until the task's effect is recorded.

`done_at` is set by the consumer in the transaction of its effect; the relay sends again a row that was
handed to the broker but is not done after a timeout, and gives up after a bound of publications, marking
the row `dead_at` (its `last_error` kept) for operators (`liaison outbox dead`).

Rows sent before this revision count as done: their tasks ran under the old rules, and sending a whole
history again on upgrade would only repeat idempotent work.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deploy.migrations.ddl import TIMESTAMP
from deploy.migrations.helpers import as_owner, reset_role

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

OPEN = "done_at IS NULL AND dead_at IS NULL"
# Replaced in place (CREATE OR REPLACE), so the grant of 0002 to the app role stays.
TENANTS_WITH_OPEN_ROWS = """
    CREATE OR REPLACE FUNCTION liaison_tenants_with_unsent_outbox() RETURNS SETOF bigint
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$ SELECT DISTINCT tenant_id FROM outbox WHERE done_at IS NULL AND dead_at IS NULL ORDER BY 1 $$
"""
TENANTS_WITH_UNSENT_ROWS = """
    CREATE OR REPLACE FUNCTION liaison_tenants_with_unsent_outbox() RETURNS SETOF bigint
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$ SELECT DISTINCT tenant_id FROM outbox WHERE sent_at IS NULL ORDER BY 1 $$
"""


def upgrade() -> None:
    as_owner()
    op.add_column("outbox", sa.Column("done_at", TIMESTAMP))
    op.add_column("outbox", sa.Column("dead_at", TIMESTAMP))
    op.execute("UPDATE outbox SET done_at = sent_at WHERE sent_at IS NOT NULL")
    # What the relay reads: rows not done and not given up, whether never sent or sent and not done.
    op.drop_index("ix_outbox_unsent", table_name="outbox")
    op.create_index("ix_outbox_open", "outbox", ["tenant_id", "id"], postgresql_where=sa.text(OPEN))
    op.create_index(
        "ix_outbox_dead",
        "outbox",
        ["tenant_id", "id"],
        postgresql_where=sa.text("dead_at IS NOT NULL AND done_at IS NULL"),
    )
    op.execute(TENANTS_WITH_OPEN_ROWS)
    reset_role()


def downgrade() -> None:
    as_owner()
    op.execute(TENANTS_WITH_UNSENT_ROWS)
    op.drop_index("ix_outbox_dead", table_name="outbox")
    op.drop_index("ix_outbox_open", table_name="outbox")
    op.create_index(
        "ix_outbox_unsent", "outbox", ["tenant_id", "id"], postgresql_where=sa.text("sent_at IS NULL")
    )
    op.drop_column("outbox", "dead_at")
    op.drop_column("outbox", "done_at")
    reset_role()
