"""Shared pieces of the migrations: roles, ownership and grants, row-level security."""

from __future__ import annotations

from collections.abc import Iterable

from alembic import context, op

from deploy.settings import Settings
from tenants.rls import Visibility, drop_policy_statements, policy_statements


def settings() -> Settings:
    found: Settings = context.config.attributes["settings"]
    return found


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def as_owner() -> None:
    """Create what follows as the owner role, so the app role is never the owner of a table."""
    op.execute(f"SET LOCAL ROLE {settings().owner_role}")


def reset_role() -> None:
    op.execute("RESET ROLE")


def protect(table: str, visibility: Visibility) -> None:
    s = settings()
    for statement in policy_statements(table, visibility, app_role=s.app_role, tenant_role=s.tenant_role):
        op.execute(statement)


def unprotect(table: str) -> None:
    for statement in drop_policy_statements(table):
        op.execute(statement)


def drop_tables(tables: Iterable[str]) -> None:
    """Drop each table with its policies, in the order given (dependants first)."""
    for table in tables:
        unprotect(table)
        op.drop_table(table)
