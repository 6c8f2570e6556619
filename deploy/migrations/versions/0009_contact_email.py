"""Requests keep the email a caller leaves (Open311 `email`, GraphQL `contactEmail`): personal data, never
public.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deploy.migrations.helpers import as_owner, reset_role

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    as_owner()
    op.add_column("requests", sa.Column("contact_email", sa.String(length=254), nullable=True))
    reset_role()


def downgrade() -> None:
    as_owner()
    op.drop_column("requests", "contact_email")
    reset_role()
