"""The typed request context: the caller, the request's unit of work, and fresh DataLoaders."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from services.unit_of_work import UnitOfWork
from tenants.db import Database
from tenants.principals import Principal, TenantDirectory
from tenants.tokens import TokenCodec

if TYPE_CHECKING:
    from schema.hierarchy.loaders import HierarchyLoaders


@dataclass(frozen=True)
class ApiConfig:
    database: Database
    tokens: TokenCodec
    token_ttl: timedelta = timedelta(hours=8)
    production: bool = False
    introspection: bool = True
    max_depth: int = 15
    max_aliases: int = 30
    max_tokens: int = 5000
    # The largest /graphql request body (a district's boundary in setBoundary is about 60 KB); larger: 413.
    max_body_bytes: int = 1024 * 1024
    # Resolves tenant codes in tokens; by default over the same database.
    directory: TenantDirectory = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.directory is None:
            object.__setattr__(self, "directory", TenantDirectory(self.database))


class NotAuthenticated(Exception):
    pass


@dataclass
class Context:
    request: Request
    response: Response
    config: ApiConfig
    principal: Principal | None
    work: UnitOfWork | None = None
    failed: bool = False
    _db_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _loaders: HierarchyLoaders | None = field(default=None, repr=False)
    # Per-request DataLoaders of the other domains, by name (each domain creates its own on first use).
    domain_loaders: dict[str, Any] = field(default_factory=dict, repr=False)

    def require_principal(self) -> Principal:
        if self.principal is None:
            raise NotAuthenticated("sign in first: send 'Authorization: Bearer <token>'")
        return self.principal

    @asynccontextmanager
    async def db(self) -> AsyncIterator[AsyncSession]:
        """The request's one tenant-scoped transaction, opened on first use.

        Sibling resolvers run concurrently, and a session allows one statement at a time: the lock
        takes them in turn.
        """
        async with self._db_lock:
            if self.work is None:
                self.work = UnitOfWork(self.config.database, self.require_principal().context)
            yield await self.work.session()

    def close(self) -> None:
        if self._loaders is not None:
            self._loaders.close()
            self._loaders = None

    @property
    def loaders(self) -> HierarchyLoaders:
        if self._loaders is None:
            from schema.hierarchy.loaders import HierarchyLoaders

            self._loaders = HierarchyLoaders(self)
        return self._loaders


Info = strawberry.Info[Context, Any]
