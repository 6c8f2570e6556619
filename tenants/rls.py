"""Row-level security DDL, shared by the migrations so every tenant table gets the same guard.

Policies call current_setting(name, true) directly and contain no sub-queries: Citus refuses
sub-queries in policies, and an unset setting yields NULL, so an unset context sees no rows.
"""

from __future__ import annotations

from enum import StrEnum

TENANT_MATCHES = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint"
CALLER_SCOPES = "NULLIF(current_setting('app.scopes', true), '')::ltree[]"
# The row lies inside one of the caller's scopes (the array holds an ancestor of it, or itself).
INSIDE_SCOPE = f"scope <@ {CALLER_SCOPES}"
# The row is an ancestor of one of the caller's scopes (a district user may read the city's row).
ANCESTOR_OF_SCOPE = f"scope @> {CALLER_SCOPES}"
IS_PRINCIPAL = "('user:' || id::text) = current_setting('app.principal', true)"
# The caller's one scope is the whole city: every row of the tenant is inside it. Comparing the two
# settings as text is cheap, while the ltree[] cast in the scope tests is redone for every row.
WHOLE_TENANT = "current_setting('app.scopes', true) = '{c' || current_setting('app.tenant_id', true) || '}'"


class Visibility(StrEnum):
    HIERARCHY = "hierarchy"  # read inside or above the caller's scope, write inside it
    SCOPED = "scoped"  # read and write inside the caller's scope
    USER = "user"  # scoped, and a user always sees their own row
    TENANT = "tenant"  # any scope of the tenant (rows with no place in the hierarchy)


def policy_statements(table: str, visibility: Visibility) -> list[str]:
    inside = f"{TENANT_MATCHES} AND ({WHOLE_TENANT} OR {INSIDE_SCOPE})"
    if visibility is Visibility.TENANT:
        read = write = TENANT_MATCHES
    elif visibility is Visibility.HIERARCHY:
        read = f"{TENANT_MATCHES} AND ({WHOLE_TENANT} OR {INSIDE_SCOPE} OR {ANCESTOR_OF_SCOPE})"
        write = inside
    elif visibility is Visibility.USER:
        read = write = f"{TENANT_MATCHES} AND ({WHOLE_TENANT} OR {INSIDE_SCOPE} OR {IS_PRINCIPAL})"
    else:
        read = write = inside
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY {table}_read ON {table} FOR SELECT USING ({read})",
        f"CREATE POLICY {table}_insert ON {table} FOR INSERT WITH CHECK ({write})",
        f"CREATE POLICY {table}_update ON {table} FOR UPDATE USING ({write}) WITH CHECK ({write})",
        f"CREATE POLICY {table}_delete ON {table} FOR DELETE USING ({write})",
    ]


def drop_policy_statements(table: str) -> list[str]:
    return [
        *(
            f"DROP POLICY IF EXISTS {table}_{action} ON {table}"
            for action in ("read", "insert", "update", "delete")
        ),
        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
    ]
