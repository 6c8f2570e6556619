"""Grid cells and versioned boundaries of every level, all SRID 4326 and under row-level security."""

from __future__ import annotations

from datetime import datetime

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models import Base, Ltree

MULTIPOLYGON = Geometry(geometry_type="MULTIPOLYGON", srid=4326, spatial_index=False)


class GridCell(Base):
    """A grid cell (网格) under a station; its shape lives in `boundaries` (level 'grid')."""

    __tablename__ = "grid_cells"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "station_id"], ["stations.tenant_id", "stations.id"]),
        ForeignKeyConstraint(["tenant_id", "grid_worker_id"], ["users.tenant_id", "users.id"]),
        UniqueConstraint("tenant_id", "code"),
        Index("ix_grid_cells_tenant_id_station_id_code", "tenant_id", "station_id", "code"),
        Index("ix_grid_cells_scope", "scope", postgresql_using="gist"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    station_id: Mapped[int] = mapped_column(BigInteger)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(Ltree())
    grid_worker_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Boundary(Base):
    """One version of the shape of a district, street, station or grid cell.

    Redrawing closes the current version (valid_to) and adds a new one, so a lookup "as of" a date
    finds the shape valid then, and old requests keep their historical assignment.
    """

    __tablename__ = "boundaries"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        Index("ix_boundaries_geom", "geom", postgresql_using="gist"),
        Index(
            "ix_boundaries_grid_geom",
            "geom",
            postgresql_using="gist",
            postgresql_where=text("level = 'grid'"),
        ),
        Index(
            "uq_boundaries_current",
            "tenant_id",
            "level",
            "node_id",
            unique=True,
            postgresql_where=text("valid_to IS NULL"),
        ),
        Index(
            "ix_boundaries_tenant_id_level_node_id_valid_from", "tenant_id", "level", "node_id", "valid_from"
        ),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    level: Mapped[str] = mapped_column(String(16))
    node_id: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(Ltree())
    geom: Mapped[WKBElement] = mapped_column(MULTIPOLYGON)
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    valid_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    synthetic: Mapped[bool] = mapped_column(Boolean, server_default="false")
    source: Mapped[str] = mapped_column(String(200), server_default="")
