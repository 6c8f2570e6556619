"""Users, argon2 password hashes, role assignments, and the tenant itself (provisioning)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tenants.context import TENANT_CODE_PATTERN, TenantContext, city_scope
from tenants.db import Database
from tenants.models import City, RoleAssignment, User
from tenants.roles import Role

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so both failures take the same time (made on first
    use: hashing costs ~0.3 s, which every process start would otherwise pay)."""
    return _hasher.hash("liaison-grid-no-such-user")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class Assignment:
    role: Role
    scope: str


@dataclass(frozen=True, slots=True)
class Identity:
    sub: str
    scopes: tuple[str, ...]
    roles: tuple[str, ...]


async def create_tenant(database: Database, code: str, name: str) -> int:
    """Create a city (a tenant) and return its tenant id."""
    if not TENANT_CODE_PATTERN.fullmatch(code):
        raise ValueError(
            "a tenant code is 2 to 32 lowercase letters, digits, '-' or '_', starting with a letter"
        )
    async with database.open() as session, session.begin():
        tenant_id = int(
            await session.scalar(text("SELECT nextval(pg_get_serial_sequence('cities', 'tenant_id'))"))
        )
        await database.apply(session, TenantContext.whole_tenant(tenant_id, "system:provision"))
        session.add(City(tenant_id=tenant_id, code=code, name=name, scope=city_scope(tenant_id)))
    return tenant_id


async def create_user(
    session: AsyncSession,
    tenant_id: int,
    *,
    username: str,
    password: str,
    display_name: str,
    home_scope: str,
    assignments: Sequence[Assignment],
) -> User:
    user = User(
        tenant_id=tenant_id,
        username=username,
        display_name=display_name,
        password_hash=hash_password(password),
        scope=home_scope,
    )
    session.add(user)
    await session.flush()
    session.add_all(
        RoleAssignment(tenant_id=tenant_id, user_id=user.id, role=a.role.value, scope=a.scope)
        for a in assignments
    )
    await session.flush()
    return user


async def authenticate(database: Database, tenant_id: int, username: str, password: str) -> Identity | None:
    """The identity for a correct username and password, or None (without saying which was wrong)."""
    async with database.scoped(TenantContext.whole_tenant(tenant_id, "system:login")) as session:
        user = await session.scalar(
            select(User).where(
                User.tenant_id == tenant_id, User.username == username, User.disabled_at.is_(None)
            )
        )
        if user is None:
            verify_password(_dummy_hash(), password)
            return None
        if not verify_password(user.password_hash, password):
            return None
        rows = (
            await session.execute(
                select(RoleAssignment.role, RoleAssignment.scope)
                .where(RoleAssignment.tenant_id == tenant_id, RoleAssignment.user_id == user.id)
                .order_by(RoleAssignment.scope, RoleAssignment.role)
            )
        ).all()
    if not rows:
        return None
    scopes = tuple(dict.fromkeys(scope for _, scope in rows))
    roles = tuple(dict.fromkeys(role for role, _ in rows))
    return Identity(sub=f"user:{user.id}", scopes=scopes, roles=roles)
