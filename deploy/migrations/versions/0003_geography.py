"""Geography: grid cells and versioned boundaries (MultiPolygon, SRID 4326), GiST-indexed, under RLS.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

from deploy.migrations import ddl
from deploy.migrations.functions import grant_execute, mark_leakproof
from deploy.migrations.helpers import as_owner, drop_tables, protect, reset_role, settings
from tenants.rls import Visibility

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

POINT_IN_GRID = "liaison_point_in_tenant_grid(double precision, double precision, timestamptz)"


# Under row-level security PostgreSQL uses a condition as an index condition only if its operator is
# LEAKPROOF; PostGIS's bounding-box operators are not marked so, which would leave locate and the tiles
# scanning every row of a tenant. They compare boxes and raise no data-dependent errors. Marking them needs
# a superuser; without one the migration says so and the queries stay correct but slow.
BOX_OPERATORS = (
    "geometry_overlaps(geometry, geometry)",  # &&
    "geometry_contains(geometry, geometry)",  # ~
    "geometry_within(geometry, geometry)",  # @
)
NOT_SUPERUSER = (
    "not a superuser: PostGIS box operators stay non-leakproof, so spatial indexes go unused under "
    "row-level security"
)


def upgrade() -> None:
    mark_leakproof(BOX_OPERATORS, leakproof=True, warning=NOT_SUPERUSER)
    as_owner()
    op.create_table(
        "grid_cells",
        *ddl.tenant_row_key(),
        sa.Column("station_id", sa.BigInteger, nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        ddl.scope_column(),
        sa.Column("grid_worker_id", sa.BigInteger),
        ddl.timestamp_now(),
        sa.Column("retired_at", ddl.TIMESTAMP),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.ForeignKeyConstraint(["tenant_id", "station_id"], ["stations.tenant_id", "stations.id"]),
        sa.ForeignKeyConstraint(["tenant_id", "grid_worker_id"], ["users.tenant_id", "users.id"]),
        sa.UniqueConstraint("tenant_id", "code"),
    )
    ddl.tenant_index("grid_cells", "station_id", "code")
    ddl.gist_index("grid_cells")

    op.create_table(
        "boundaries",
        *ddl.tenant_row_key(),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("node_id", sa.BigInteger, nullable=False),
        ddl.scope_column(),
        sa.Column(
            "geom", Geometry(geometry_type="MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False
        ),
        ddl.timestamp_now("valid_from"),
        sa.Column("valid_to", ddl.TIMESTAMP),
        sa.Column("synthetic", sa.Boolean, server_default="false", nullable=False),
        sa.Column("source", sa.String(200), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        sa.CheckConstraint("level IN ('district', 'street', 'station', 'grid')", name="level"),
        sa.CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="validity"),
        sa.CheckConstraint("ST_IsValid(geom)", name="valid_geometry"),
    )
    ddl.gist_index("boundaries", "geom")
    # Point-to-cell lookups search grid cells only; an index of theirs alone returns ~1.3 candidates a point
    # instead of ~5 (measured 2.5x faster for bulk assignment).
    op.create_index(
        "ix_boundaries_grid_geom",
        "boundaries",
        ["geom"],
        postgresql_using="gist",
        postgresql_where=sa.text("level = 'grid'"),
    )
    ddl.unique_where(
        "uq_boundaries_current", "boundaries", ["tenant_id", "level", "node_id"], "valid_to IS NULL"
    )
    ddl.tenant_index("boundaries", "level", "node_id", "valid_from")
    protect("grid_cells", Visibility.HIERARCHY)
    protect("boundaries", Visibility.HIERARCHY)
    # A scoped caller locating a point outside their scope learns only that: whether some cell of their
    # own tenant (taken from the transaction's setting, never an argument) covers the point.
    op.execute(
        """
        CREATE FUNCTION liaison_point_in_tenant_grid(
          lon double precision, lat double precision, as_of timestamptz
        ) RETURNS boolean
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
        AS $$
          SELECT EXISTS (
            SELECT 1 FROM boundaries b
            WHERE b.tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint
              AND b.level = 'grid'
              AND ST_Covers(b.geom, ST_SetSRID(ST_MakePoint(lon, lat), 4326))
              AND b.valid_from <= as_of AND (b.valid_to IS NULL OR b.valid_to > as_of))
        $$
        """
    )
    s = settings()
    grant_execute(POINT_IN_GRID, s.app_role, s.tenant_role)
    reset_role()


def downgrade() -> None:
    as_owner()
    op.execute(f"DROP FUNCTION IF EXISTS {POINT_IN_GRID}")
    drop_tables(("boundaries", "grid_cells"))
    reset_role()
