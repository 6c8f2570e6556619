"""Requests: what residents ran into (check codes, rating codes, idempotency keys, escalations counted apart).

- Satisfaction is out of 100: ratings 1-5 become 20-100 (x 20), and the threshold that was the old default
  (3) becomes the new one, 80; a threshold a city chose is scaled the same way (x 20).
- `city_margin_meters` (1000): how far outside the city's boundary a point may lie before it is refused.
- Requests keep the SHA-256 of their receipt's check code and (anonymous submitters) rating code, of the
  client's idempotency key and of what it submitted under it; and count their escalations apart from the
  colours. The Open311 token was the external id, in the clear: it becomes the check code (its hash).
- `request_followers`: the submitters of requests merged into another one, in the surviving request's scope.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deploy.migrations import ddl
from deploy.migrations.helpers import as_owner, drop_tables, protect, reset_role
from tenants.rls import Visibility

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

HASH = sa.String(length=64)


def upgrade() -> None:
    as_owner()
    op.add_column(
        "request_settings",
        sa.Column("city_margin_meters", sa.Integer(), server_default="1000", nullable=False),
    )
    op.alter_column("request_settings", "rating_threshold", server_default="80")
    op.execute(
        "UPDATE request_settings SET rating_threshold = "
        "CASE WHEN rating_threshold = 3 THEN 80 ELSE least(rating_threshold * 20, 100) END"
    )
    op.drop_constraint("ck_request_ratings_score", "request_ratings", type_="check")
    op.execute("UPDATE request_ratings SET score = score * 20")
    op.create_check_constraint(op.f("ck_request_ratings_score"), "request_ratings", "score BETWEEN 0 AND 100")
    op.execute("UPDATE requests SET rating = rating * 20 WHERE rating IS NOT NULL")

    for name in ("check_code_hash", "rating_code_hash", "idempotency_key_hash", "submission_hash"):
        op.add_column("requests", sa.Column(name, HASH, nullable=True))
    op.add_column("requests", sa.Column("escalations", sa.SmallInteger(), server_default="0", nullable=False))
    # The codes are upper-cased and stripped of separators before hashing (services/requests/codes.py).
    op.execute(
        "UPDATE requests SET external_id = NULL, check_code_hash = "
        "encode(sha256(convert_to(upper(translate(external_id, '- ', '')), 'UTF8')), 'hex') "
        "WHERE channel = 'open311' AND external_id IS NOT NULL"
    )
    op.execute(
        "UPDATE requests r SET escalations = e.n FROM ("
        "  SELECT tenant_id, subject_id, count(*) AS n FROM workflow_events"
        "  WHERE workflow = 'request' AND step = 'escalate' GROUP BY tenant_id, subject_id"
        ") e WHERE r.tenant_id = e.tenant_id AND r.id = e.subject_id"
    )
    ddl.tenant_index("requests", "check_code_hash", where="check_code_hash IS NOT NULL")
    ddl.unique_where(
        "uq_requests_idempotency",
        "requests",
        ["tenant_id", "idempotency_key_hash"],
        "idempotency_key_hash IS NOT NULL",
    )

    op.create_table(
        "request_followers",
        *ddl.child_row("request_followers", "request_id", "requests"),
        sa.Column("merged_id", sa.BigInteger(), nullable=False),
        sa.Column("owner_principal", sa.String(length=100), nullable=True),
        sa.Column("recipient", sa.String(length=100), nullable=True),
        ddl.timestamp_now(),
        ddl.parent_fk("request_followers", "merged_id", "requests"),
        ddl.tenant_unique("request_followers", "request_id", "merged_id"),
    )
    ddl.tenant_index("request_followers", "merged_id")
    protect("request_followers", Visibility.OWNED)
    reset_role()


def downgrade() -> None:
    as_owner()
    drop_tables(["request_followers"])
    op.drop_index("uq_requests_idempotency", table_name="requests")
    op.drop_index("ix_requests_tenant_id_check_code_hash", table_name="requests")
    # Open311 tokens cannot be recovered from their hashes: those requests keep no token.
    op.drop_column("requests", "escalations")
    for name in ("submission_hash", "idempotency_key_hash", "rating_code_hash", "check_code_hash"):
        op.drop_column("requests", name)
    op.execute("UPDATE requests SET rating = greatest(1, round(rating / 20.0)) WHERE rating IS NOT NULL")
    op.drop_constraint("ck_request_ratings_score", "request_ratings", type_="check")
    op.execute("UPDATE request_ratings SET score = greatest(1, round(score / 20.0))")
    op.create_check_constraint(op.f("ck_request_ratings_score"), "request_ratings", "score BETWEEN 1 AND 5")
    op.execute(
        "UPDATE request_settings SET rating_threshold = "
        "CASE WHEN rating_threshold = 80 THEN 3 ELSE greatest(1, round(rating_threshold / 20.0)) END"
    )
    op.alter_column("request_settings", "rating_threshold", server_default="3")
    op.drop_column("request_settings", "city_margin_meters")
    reset_role()
