"""What a worker process needs to run tasks: the database, and one event loop for the process's lifetime."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenants.db import Database

T = TypeVar("T")

_database: Database | None = None
_loop: asyncio.AbstractEventLoop | None = None


def configure_database(database: Database) -> None:
    global _database
    _database = database


def database() -> Database:
    if _database is None:
        raise RuntimeError("the worker has no database: start it with `liaison worker`")
    return _database


def run(coroutine_factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on the process's loop (pooled async connections are bound to one loop)."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop.run_until_complete(coroutine_factory())
