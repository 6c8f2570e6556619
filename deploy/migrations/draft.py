"""Draft the create_table operations of new models, to paste into a new migration and adjust:
`python -m deploy.migrations.draft TABLE...` (reads the models, not the database)."""

from __future__ import annotations

import sys

import sqlalchemy as sa
from alembic.autogenerate import render_python_code
from alembic.operations import ops

from deploy.models import metadata


def draft(tables: list[str]) -> str:
    wanted = sa.MetaData(naming_convention=metadata.naming_convention)
    for name in tables:
        metadata.tables[name].to_metadata(wanted)
    upgrade = ops.UpgradeOps(ops=[ops.CreateTableOp.from_table(wanted.tables[name]) for name in tables])
    for name in tables:
        for index in wanted.tables[name].indexes:
            upgrade.ops.append(ops.CreateIndexOp.from_index(index))
    return render_python_code(upgrade)


if __name__ == "__main__":
    print(draft(sys.argv[1:]))
