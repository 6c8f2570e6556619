"""Heat maps of requests: let the scope index work under row-level security.

The heat maps, statistics and heat tiles narrow requests to one scope with `scope <@ 'c1.d3'` (a single
ltree), which the GiST index `ix_requests_scope` answers. Under row-level security PostgreSQL uses a
condition as an index condition only when its operator is LEAKPROOF, and the ltree extension does not mark
its ancestor tests so: a district's heat map would then read every request of the window in the whole city
and filter. `ltree_risparent` (<@) and `ltree_isparent` (@>) compare two paths label by label and raise no
data-dependent errors. Marking them needs a superuser (as migration 0003 does for PostGIS's box
operators); without one the migration warns and the queries stay correct but slower.

No table is added: a daily per-cell rollup was measured against the plain aggregate on 1,000,000 requests
(tests/bench/heat.py) and kept out; see the README for the figures.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from deploy.migrations.functions import mark_leakproof

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NOT_SUPERUSER = (
    "not a superuser: ltree's <@ and @> stay non-leakproof, so the scope index of requests goes unused "
    "under row-level security"
)
ANCESTRY_FUNCTIONS = (
    "ltree_risparent(ltree, ltree)",  # ltree <@ ltree
    "ltree_isparent(ltree, ltree)",  # ltree @> ltree
)


def upgrade() -> None:
    mark_leakproof(ANCESTRY_FUNCTIONS, leakproof=True, warning=NOT_SUPERUSER)


def downgrade() -> None:
    mark_leakproof(ANCESTRY_FUNCTIONS, leakproof=False)
