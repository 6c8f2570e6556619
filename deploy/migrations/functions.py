"""SQL functions the migrations create or change: who may execute them, which are leakproof."""

from __future__ import annotations

from collections.abc import Iterable

from alembic import op

from deploy.migrations.helpers import quote_literal


def grant_execute(function: str, *roles: str) -> None:
    """Let only `roles` call `function` (PostgreSQL lets PUBLIC execute a new function)."""
    op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {function} TO {', '.join(roles)}")


def mark_leakproof(functions: Iterable[str], *, leakproof: bool, warning: str | None = None) -> None:
    """Mark functions (not) LEAKPROOF, which needs a superuser; without one, raise `warning` if given.

    Under row-level security PostgreSQL uses a condition as an index condition only if its operator is
    LEAKPROOF."""
    marker = "LEAKPROOF" if leakproof else "NOT LEAKPROOF"
    statements = " ".join(f"ALTER FUNCTION {function} {marker};" for function in functions)
    otherwise = f"RAISE WARNING {quote_literal(warning)};" if warning else "NULL;"
    op.execute(
        f"""
        DO $$
        BEGIN
          IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            {statements}
          ELSE
            {otherwise}
          END IF;
        END $$
        """  # noqa: S608 (fixed function names)
    )
