"""Alembic environment: migrations run as the admin URL, tables are created by the owner role."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from deploy.settings import Settings

settings: Settings = context.config.attributes["settings"]


def run_migrations_online() -> None:
    url = settings.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `liaison migrate`")
run_migrations_online()
