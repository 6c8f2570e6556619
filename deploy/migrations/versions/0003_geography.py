"""Geography: grid cells and versioned boundaries (MultiPolygon, SRID 4326), GiST-indexed, under RLS.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

from deploy.migrations.helpers import as_owner, protect, reset_role, settings, unprotect
from tenants.models import Ltree
from tenants.rls import Visibility

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
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


def _leakproof_box_operators() -> None:
    statements = " ".join(f"ALTER FUNCTION {function} LEAKPROOF;" for function in BOX_OPERATORS)
    op.execute(
        f"""
        DO $$
        BEGIN
          IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            {statements}
          ELSE
            RAISE WARNING 'not a superuser: PostGIS box operators stay non-leakproof, so spatial '
                          'indexes go unused under row-level security';
          END IF;
        END $$
        """  # noqa: S608 (fixed function names)
    )


def upgrade() -> None:
    _leakproof_box_operators()
    as_owner()
    op.create_table(
        "grid_cells",
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("station_id", sa.BigInteger, nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column("grid_worker_id", sa.BigInteger),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("retired_at", TIMESTAMP),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.ForeignKeyConstraint(["tenant_id", "station_id"], ["stations.tenant_id", "stations.id"]),
        sa.ForeignKeyConstraint(["tenant_id", "grid_worker_id"], ["users.tenant_id", "users.id"]),
        sa.UniqueConstraint("tenant_id", "code"),
    )
    op.create_index(
        "ix_grid_cells_tenant_id_station_id_code", "grid_cells", ["tenant_id", "station_id", "code"]
    )
    op.create_index("ix_grid_cells_scope", "grid_cells", ["scope"], postgresql_using="gist")

    op.create_table(
        "boundaries",
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("node_id", sa.BigInteger, nullable=False),
        sa.Column("scope", Ltree(), nullable=False),
        sa.Column(
            "geom", Geometry(geometry_type="MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False
        ),
        sa.Column("valid_from", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("valid_to", TIMESTAMP),
        sa.Column("synthetic", sa.Boolean, server_default="false", nullable=False),
        sa.Column("source", sa.String(200), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        sa.CheckConstraint("level IN ('district', 'street', 'station', 'grid')", name="level"),
        sa.CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="validity"),
        sa.CheckConstraint("ST_IsValid(geom)", name="valid_geometry"),
    )
    op.create_index("ix_boundaries_geom", "boundaries", ["geom"], postgresql_using="gist")
    # Point-to-cell lookups search grid cells only; an index of theirs alone returns ~1.3 candidates a point
    # instead of ~5 (measured 2.5x faster for bulk assignment).
    op.create_index(
        "ix_boundaries_grid_geom",
        "boundaries",
        ["geom"],
        postgresql_using="gist",
        postgresql_where=sa.text("level = 'grid'"),
    )
    op.create_index(
        "uq_boundaries_current",
        "boundaries",
        ["tenant_id", "level", "node_id"],
        unique=True,
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_index(
        "ix_boundaries_tenant_id_level_node_id_valid_from",
        "boundaries",
        ["tenant_id", "level", "node_id", "valid_from"],
    )
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
    op.execute(f"REVOKE ALL ON FUNCTION {POINT_IN_GRID} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {POINT_IN_GRID} TO {s.app_role}, {s.tenant_role}")
    reset_role()


def downgrade() -> None:
    as_owner()
    op.execute(f"DROP FUNCTION IF EXISTS {POINT_IN_GRID}")
    for table in ("boundaries", "grid_cells"):
        unprotect(table)
        op.drop_table(table)
    reset_role()
