"""The app role holds only what it needs: it appends to the audit log through two functions that take the
order of links from the chain's head, and changes tenant-wide rows only from a whole-city scope.

- `liaison_audit_next()` moves the caller's tenant's head one link on and answers the new link's number and
  the previous link's hash; `liaison_audit_write(...)` stores that link, inside the caller's scopes, and
  moves the head's hash. The tenant is the transaction's own (`app.tenant_id`), never an argument, so the app
  can no longer insert links at positions of its choosing or rewind a head: INSERT on `audit_log` and
  INSERT/UPDATE on `audit_heads` are revoked.
- Tenant-wide tables (categories, holidays, request settings, audit heads) are written only by a transaction
  whose scopes include the whole city: a city admin bound to one district reads them and changes nothing.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

from deploy.migrations.functions import grant_execute
from deploy.migrations.helpers import as_owner, protect, reset_role, settings, unprotect
from tenants.rls import Visibility

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TENANT_WIDE = ("request_categories", "holidays", "request_settings", "audit_heads")
NEXT = "liaison_audit_next()"
WRITE = "liaison_audit_write(bigint, bigint, timestamptz, text, text, text, ltree, jsonb, text)"


def upgrade() -> None:
    as_owner()
    s = settings()
    roles = f"{s.app_role}, {s.tenant_role}"
    for table in TENANT_WIDE:
        unprotect(table)
        protect(table, Visibility.TENANT)
    # PL/pgSQL reading the tenant into a variable, not SQL functions with parameters: Citus routes the
    # former to the tenant's shard and cannot plan the latter.
    op.execute(
        """
        CREATE FUNCTION liaison_audit_next() RETURNS TABLE (seq bigint, prev_hash text)
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public
        AS $$
        DECLARE
          tenant bigint := NULLIF(current_setting('app.tenant_id', true), '')::bigint;
        BEGIN
          IF tenant IS NULL THEN
            RAISE EXCEPTION 'no tenant context' USING ERRCODE = 'insufficient_privilege';
          END IF;
          RETURN QUERY
            INSERT INTO audit_heads AS h (tenant_id, last_seq, last_hash)
            VALUES (tenant, 1, repeat('0', 64))
            ON CONFLICT (tenant_id) DO UPDATE SET last_seq = h.last_seq + 1
            RETURNING h.last_seq, h.last_hash::text;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION liaison_audit_write(
          p_tenant bigint, p_seq bigint, p_at timestamptz, p_actor text, p_action text,
          p_subject text, p_scope ltree, p_payload jsonb, p_hash text
        ) RETURNS void
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public
        AS $$
        DECLARE
          tenant bigint := NULLIF(current_setting('app.tenant_id', true), '')::bigint;
          scopes ltree[] := NULLIF(current_setting('app.scopes', true), '')::ltree[];
          head audit_heads%ROWTYPE;
        BEGIN
          IF tenant IS DISTINCT FROM p_tenant OR scopes IS NULL OR NOT (p_scope <@ scopes) THEN
            RAISE EXCEPTION 'an audit link must lie inside the caller''s tenant and scopes'
              USING ERRCODE = 'insufficient_privilege';
          END IF;
          SELECT * INTO head FROM audit_heads WHERE tenant_id = tenant FOR UPDATE;
          IF NOT FOUND OR head.last_seq <> p_seq OR EXISTS (
            SELECT 1 FROM audit_log WHERE tenant_id = tenant AND seq = p_seq
          ) THEN
            RAISE EXCEPTION 'link % was not reserved by liaison_audit_next()', p_seq
              USING ERRCODE = 'insufficient_privilege';
          END IF;
          INSERT INTO audit_log
            (tenant_id, seq, at, actor, action, subject, scope, payload, prev_hash, hash)
          VALUES
            (tenant, p_seq, p_at, p_actor, p_action, p_subject, p_scope, p_payload, head.last_hash, p_hash);
          UPDATE audit_heads SET last_hash = p_hash WHERE tenant_id = tenant;
        END
        $$
        """
    )
    for function in (NEXT, WRITE):
        grant_execute(function, s.app_role, s.tenant_role)
    op.execute(f"REVOKE INSERT ON audit_log FROM {roles}")
    op.execute(f"REVOKE INSERT, UPDATE ON audit_heads FROM {roles}")
    reset_role()


def downgrade() -> None:
    as_owner()
    s = settings()
    roles = f"{s.app_role}, {s.tenant_role}"
    op.execute(f"GRANT INSERT ON audit_log TO {roles}")
    op.execute(f"GRANT INSERT, UPDATE ON audit_heads TO {roles}")
    op.execute(f"DROP FUNCTION IF EXISTS {WRITE}")
    op.execute(f"DROP FUNCTION IF EXISTS {NEXT}")
    # The policies of 0004 and 0002 let any scope of the tenant write these tables.
    for table in TENANT_WIDE:
        unprotect(table)
        for statement in _any_scope_policies(table):
            op.execute(statement)
    reset_role()


def _any_scope_policies(table: str) -> list[str]:
    s = settings()
    tenant = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint"
    statements = [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
    ]
    for prefix, role in (("scoped", s.app_role), ("tenant", s.tenant_role)):
        for action, clause in (
            ("read", "FOR SELECT"),
            ("insert", "FOR INSERT"),
            ("update", "FOR UPDATE"),
            ("delete", "FOR DELETE"),
        ):
            using = "" if action == "insert" else f" USING ({tenant})"
            check = f" WITH CHECK ({tenant})" if action in ("insert", "update") else ""
            statements.append(f"CREATE POLICY {prefix}_{action} ON {table} {clause} TO {role}{using}{check}")
    return statements
