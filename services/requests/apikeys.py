"""Open311 api keys: a random key shown once, only its SHA-256 kept; a scope bounds what the key may read."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.service import append
from services.errors import DuplicateCode, InvalidInput, NotFound
from services.requests.models import ApiKey
from tenants.context import SCOPE_PATTERN, TenantContext, city_scope, scope_is_within

MAX_NAME = 100


def key_hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def key_context(key: ApiKey) -> TenantContext:
    """The tenant context a key reads under: its own scope, and nothing else."""
    return TenantContext(key.tenant_id, (str(key.scope),), f"apikey:{key.id}")


async def create_api_key(
    session: AsyncSession, tenant_id: int, name: str, scope: str | None = None, *, actor: str = "system:cli"
) -> tuple[ApiKey, str]:
    """A new key named `name` reading inside `scope` (the whole tenant by default): the row and the key."""
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidInput(f"a key name is 1 to {MAX_NAME} characters", field="name")
    root = city_scope(tenant_id)
    path = scope or root
    if not SCOPE_PATTERN.fullmatch(path) or not scope_is_within(path, root):
        raise InvalidInput(
            f"scope {path!r} is not a path of this tenant (they start with {root})", field="scope"
        )
    if await _by_name(session, tenant_id, name) is not None:
        raise DuplicateCode(f"an api key named {name!r} already exists", field="name")
    plaintext = secrets.token_urlsafe(32)
    key = ApiKey(tenant_id=tenant_id, name=name, key_hash=key_hash(plaintext), scope=path)
    session.add(key)
    await session.flush()
    await append(
        session,
        tenant_id=tenant_id,
        actor=actor,
        action="apikey.create",
        subject=f"apikey:{key.id}",
        scope=path,
        payload={"name": name},
    )
    return key, plaintext


async def revoke(session: AsyncSession, tenant_id: int, name: str, *, actor: str = "system:cli") -> ApiKey:
    """Refuse the key from now on (idempotent: a revoked key keeps its first revocation time)."""
    key = await _by_name(session, tenant_id, name)
    if key is None:
        raise NotFound(f"no api key is named {name!r}", field="name")
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        await session.flush()
        await append(
            session,
            tenant_id=tenant_id,
            actor=actor,
            action="apikey.revoke",
            subject=f"apikey:{key.id}",
            scope=str(key.scope),
            payload={"name": key.name},
        )
    return key


async def list_keys(session: AsyncSession, tenant_id: int) -> list[ApiKey]:
    statement = select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.name)
    return list((await session.scalars(statement)).all())


async def lookup(session: AsyncSession, tenant_id: int, plaintext: str) -> ApiKey | None:
    """The live key with this plaintext; None for an unknown or revoked one."""
    if not plaintext:
        return None
    statement = select(ApiKey).where(
        ApiKey.tenant_id == tenant_id, ApiKey.key_hash == key_hash(plaintext), ApiKey.revoked_at.is_(None)
    )
    return (await session.scalars(statement)).one_or_none()


async def _by_name(session: AsyncSession, tenant_id: int, name: str) -> ApiKey | None:
    statement = select(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.name == name)
    return (await session.scalars(statement)).one_or_none()
