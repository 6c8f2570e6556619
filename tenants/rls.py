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
# Rows a principal owns (a resident's own request, a party's own invitation), wherever they lie.
IS_OWNER = "owner_principal = current_setting('app.principal', true)"
# The caller's scopes include the whole city (the array holds an ancestor of the city's path: itself).
WHOLE_CITY = f"{CALLER_SCOPES} @> ('c' || tenant_id::text)::ltree"


class Visibility(StrEnum):
    HIERARCHY = "hierarchy"  # read inside or above the caller's scope, write inside it
    SCOPED = "scoped"  # read and write inside the caller's scope
    USER = "user"  # scoped, and a user always sees their own row
    TENANT = "tenant"  # read from any scope of the tenant, written from the whole city (tenant-wide rows)
    OWNED = "owned"  # scoped, and the principal in owner_principal always sees (not writes) the row


def policy_statements(table: str, visibility: Visibility, *, app_role: str, tenant_role: str) -> list[str]:
    """Policies for the two roles that serve requests.

    `app_role` is bound by the caller's scopes. `tenant_role` is what a transaction whose one scope is
    the whole city switches to (SET LOCAL ROLE): it sees its tenant and nothing else, and skips the scope
    tests, whose ltree[] cast PostgreSQL would otherwise redo for every row.
    """
    inside = f"{TENANT_MATCHES} AND {INSIDE_SCOPE}"
    if visibility is Visibility.TENANT:
        read, write = TENANT_MATCHES, f"{TENANT_MATCHES} AND {WHOLE_CITY}"
    elif visibility is Visibility.HIERARCHY:
        read, write = f"{TENANT_MATCHES} AND ({INSIDE_SCOPE} OR {ANCESTOR_OF_SCOPE})", inside
    elif visibility is Visibility.USER:
        read = write = f"{TENANT_MATCHES} AND ({INSIDE_SCOPE} OR {IS_PRINCIPAL})"
    elif visibility is Visibility.OWNED:
        read, write = f"{TENANT_MATCHES} AND ({INSIDE_SCOPE} OR {IS_OWNER})", inside
    else:
        read = write = inside
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        *_policies(table, "scoped", app_role, read, write),
        *_policies(table, "tenant", tenant_role, TENANT_MATCHES, TENANT_MATCHES),
    ]


def _policies(table: str, prefix: str, role: str, read: str, write: str) -> list[str]:
    return [
        f"CREATE POLICY {prefix}_read ON {table} FOR SELECT TO {role} USING ({read})",
        f"CREATE POLICY {prefix}_insert ON {table} FOR INSERT TO {role} WITH CHECK ({write})",
        f"CREATE POLICY {prefix}_update ON {table} FOR UPDATE TO {role} USING ({write}) WITH CHECK ({write})",
        f"CREATE POLICY {prefix}_delete ON {table} FOR DELETE TO {role} USING ({write})",
    ]


def drop_policy_statements(table: str) -> list[str]:
    actions = ("read", "insert", "update", "delete")
    return [
        *(
            f"DROP POLICY IF EXISTS {prefix}_{action} ON {table}"
            for prefix in ("scoped", "tenant")
            for action in actions
        ),
        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
    ]
