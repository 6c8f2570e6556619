"""Typed models of the tenant (a city), its hierarchy and its users.

Every primary and foreign key starts with tenant_id so the schema can be distributed by tenant (Citus).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    MetaData,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import base as postgresql_base
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import UserDefinedType

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Ltree(UserDefinedType[str]):
    """PostgreSQL ltree, read and written as its text form ('c1.d3.s12')."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "ltree"

    def bind_expression(self, bindvalue: Any) -> ColumnElement[str]:
        return func.text2ltree(bindvalue, type_=self)

    def bind_processor(self, dialect: Dialect) -> None:
        return None

    def result_processor(self, dialect: Dialect, coltype: object) -> None:
        return None


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


class City(Base):
    """The tenant. Its tenant_id is the city's own id."""

    __tablename__ = "cities"

    tenant_id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(Ltree())
    created_at: Mapped[datetime] = _created_at()


class District(Base):
    __tablename__ = "districts"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        UniqueConstraint("tenant_id", "code"),
        Index("ix_districts_scope", "scope", postgresql_using="gist"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(Ltree())
    created_at: Mapped[datetime] = _created_at()
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Street(Base):
    __tablename__ = "streets"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "district_id"], ["districts.tenant_id", "districts.id"]),
        UniqueConstraint("tenant_id", "code"),
        Index("ix_streets_tenant_id_district_id_code", "tenant_id", "district_id", "code"),
        Index("ix_streets_scope", "scope", postgresql_using="gist"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    district_id: Mapped[int] = mapped_column(BigInteger)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(Ltree())
    created_at: Mapped[datetime] = _created_at()
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Station(Base):
    """A community liaison station; one per community (社区)."""

    __tablename__ = "stations"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "street_id"], ["streets.tenant_id", "streets.id"]),
        UniqueConstraint("tenant_id", "code"),
        Index("ix_stations_tenant_id_street_id_code", "tenant_id", "street_id", "code"),
        Index("ix_stations_scope", "scope", postgresql_using="gist"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    street_id: Mapped[int] = mapped_column(BigInteger)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(Ltree())
    created_at: Mapped[datetime] = _created_at()
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["cities.tenant_id"]),
        UniqueConstraint("tenant_id", "username"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    # The node the user belongs to; staff at that node and above may see the user.
    scope: Mapped[str] = mapped_column(Ltree())
    created_at: Mapped[datetime] = _created_at()
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RoleAssignment(Base):
    __tablename__ = "role_assignments"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"),
        UniqueConstraint("tenant_id", "user_id", "role", "scope"),
    )

    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    role: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(Ltree())
    created_at: Mapped[datetime] = _created_at()


# Reflection (the migrations-versus-models check) should know ltree columns.
postgresql_base.ischema_names["ltree"] = Ltree
