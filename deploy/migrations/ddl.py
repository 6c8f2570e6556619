"""The columns, constraints and indexes every tenant table repeats, for the migrations' create_table.

The constraint helpers spell out the names the models' naming convention gives (tenants.models), so that
a migration keeps building the same names whatever the convention later becomes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

from tenants.models import Ltree

TIMESTAMP = sa.DateTime(timezone=True)


def tenant_row_key() -> list[sa.Column[Any]]:
    """The first two columns of a tenant table: its tenant, and the row's own generated id."""
    return [
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
    ]


def scope_column() -> sa.Column[Any]:
    return sa.Column("scope", Ltree(), nullable=False)


def tenant_row(table: str) -> list[sa.schema.SchemaItem]:
    """A tenant table's key columns and its primary key on them."""
    return [*tenant_row_key(), tenant_pk(table)]


def scoped_row(table: str) -> list[sa.schema.SchemaItem]:
    """A tenant table's key, and the scope its rows lie in."""
    return [*tenant_row(table), scope_column()]


def child_row(
    table: str, parent_id: str, parent: str, *, ondelete: str | None = None
) -> list[sa.schema.SchemaItem]:
    """The key of a row that belongs to a row of `parent` (named by `parent_id`), in the parent's scope."""
    return [
        *tenant_row(table),
        sa.Column(parent_id, sa.BigInteger(), nullable=False),
        scope_column(),
        parent_fk(table, parent_id, parent, ondelete=ondelete),
    ]


def timestamp_now(name: str = "created_at") -> sa.Column[Any]:
    """A timestamp column that records when the row was written."""
    return sa.Column(name, TIMESTAMP, server_default=sa.text("now()"), nullable=False)


def optional_timestamps(*names: str) -> list[sa.Column[Any]]:
    """Nullable timestamp columns: when something that may never happen happened."""
    return [sa.Column(name, TIMESTAMP, nullable=True) for name in names]


def city_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["cities.tenant_id"], name=op.f(f"fk_{table}_tenant_id_cities")
    )


def parent_fk(
    table: str, column: str, parent: str, *, ondelete: str | None = None
) -> sa.ForeignKeyConstraint:
    """The row's parent in `parent`, a table of the same tenant keyed by (tenant_id, id)."""
    return sa.ForeignKeyConstraint(
        ["tenant_id", column],
        [f"{parent}.tenant_id", f"{parent}.id"],
        name=op.f(f"fk_{table}_tenant_id_{column}_{parent}"),
        ondelete=ondelete,
    )


def tenant_pk(table: str, *key: str) -> sa.PrimaryKeyConstraint:
    """The primary key (tenant_id, *key); (tenant_id, id) when no key is given."""
    return sa.PrimaryKeyConstraint("tenant_id", *(key or ("id",)), name=op.f(f"pk_{table}"))


def tenant_unique(table: str, *columns: str) -> sa.UniqueConstraint:
    """Unique inside a tenant: (tenant_id, *columns)."""
    return sa.UniqueConstraint("tenant_id", *columns, name=op.f(f"uq_{table}_tenant_id_{'_'.join(columns)}"))


def check(table: str, name: str, condition: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(condition, name=op.f(f"ck_{table}_{name}"))


def tenant_index(table: str, *columns: str, where: str | None = None) -> None:
    """An index on (tenant_id, *columns), named as the naming convention would; partial with `where`."""
    op.create_index(
        f"ix_{table}_tenant_id_{'_'.join(columns)}",
        table,
        ["tenant_id", *columns],
        postgresql_where=sa.text(where) if where else None,
    )


def unique_where(name: str, table: str, columns: list[str], where: str) -> None:
    """A unique index over only the rows `where` holds: unique among those rows."""
    op.create_index(name, table, columns, unique=True, postgresql_where=sa.text(where))


def gist_index(table: str, column: str = "scope") -> None:
    """A GiST index: ltree ancestry tests on a scope, or spatial tests on a geometry."""
    op.create_index(f"ix_{table}_{column}", table, [column], postgresql_using="gist")


def point() -> Geometry:
    """A WGS84 point column's type, as GeoAlchemy2 reflects it (no index of its own: add a GiST one)."""
    return Geometry(
        geometry_type="POINT",
        srid=4326,
        dimension=2,
        spatial_index=False,
        from_text="ST_GeomFromEWKT",
        name="geometry",
    )
