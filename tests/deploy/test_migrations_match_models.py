"""The migrations build exactly the tables the models declare (columns, types, indexes, constraints)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from deploy.models import metadata
from deploy.settings import Settings


def _differences(settings: Settings) -> list[Any]:
    engine = create_engine(settings.owner_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, kind, parent: (
                        not (kind == "table" and name in {"alembic_version", "spatial_ref_sys"})
                    ),
                },
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def _shape(constraint: Any) -> tuple[str, tuple[str, ...]]:
    return constraint.table.name, tuple(column.name for column in constraint.columns)


def _ignoring_names(differences: list[Any]) -> list[Any]:
    """The first migrations let PostgreSQL name their unique constraints; a constraint that is only
    named differently is the same constraint."""
    removed = {_shape(d[1]) for d in differences if d[0] == "remove_constraint"}
    added = {_shape(d[1]) for d in differences if d[0] == "add_constraint"}
    renamed = removed & added
    return [
        d
        for d in differences
        if not (d[0] in {"remove_constraint", "add_constraint"} and _shape(d[1]) in renamed)
    ]


def test_every_model_table_exists_as_declared(settings: Settings) -> None:
    assert _ignoring_names(_differences(settings)) == []
