"""Under load, fail fast: a request that cannot be served in bounded time is answered 503 with Retry-After,
never a 500 and never after an unbounded wait.

Admission first. One process works on at most as many requests at once as its database pool has connections
(`Database.max_connections`, twice LIAISON_DB_POOL_SIZE); a request arriving when all are taken waits, using
no CPU, up to the pool timeout for one to finish, then gets the 503 before anything is parsed. Without it the
event loop takes every request in, and past saturation all of them share the CPU and slow down together,
however short the database's own bounds (tests/bench/overload.py measured p99 latencies of 15-48 s).

Then the database's bounds (tenants/db.py; LIAISON_DB_POOL_TIMEOUT, LIAISON_STATEMENT_TIMEOUT,
LIAISON_LOCK_TIMEOUT): a pool checkout, one statement, one lock. Wherever one fires during a request (the
token's tenant look-up, a resolver, whose exception GraphQL turns into an entry of `errors`, the commit, a
tile or an Open311 handler), the whole response becomes the 503.

The 503 has its endpoint's shape:

- /graphql: `{"errors": [{"message": ..., "extensions": {"code": "UNAVAILABLE"}}]}`;
- /open311/v2/…(.json|.xml): the GeoReport error list, `[{"code": 503, "description": ...}]`;
- anything else (tiles): a plain-text sentence.

The request's transaction has rolled back by then (a failed GraphQL operation is not committed; an exception
rolls back), so retrying after `Retry-After` seconds is safe. A request that met an overload and still
succeeded (the compiled hierarchy path falls back to the normal one) keeps its answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from starlette.middleware import Middleware
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schema.open311 import FORMATS, PREFIX, Open311Error, error_response
from tenants.db import Database, is_overload, watch_overload

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2
MESSAGE = "the service is overloaded right now; try again in a few seconds"
CODE = "UNAVAILABLE"
GRAPHQL_RESPONSE = "application/graphql-response+json"
UNADMITTED = ("/healthz",)  # answered under any load: a liveness probe, no database
LOG_EVERY = 10.0  # seconds between two log lines about refused requests


def overload_middleware(database: Database) -> list[Middleware]:
    """The middleware list for Starlette(middleware=...): admission sized by the pool, and the 503s."""
    _quiet_overload_tracebacks()
    wait = database.pool_timeout if database.pool_timeout > 0 else None
    return [Middleware(OverloadMiddleware, max_in_flight=database.max_connections, admission_wait=wait)]


def _drop_overload_records(record: logging.LogRecord) -> bool:
    """GraphQL logs every resolver error with its traceback; an overload is answered (and logged) here."""
    error = record.exc_info[1] if record.exc_info else None
    return error is None or not is_overload(error)


def _quiet_overload_tracebacks() -> None:
    # Formatting thousands of tracebacks a second is CPU the process lacks when it is overloaded.
    logging.getLogger("strawberry.execution").addFilter(_drop_overload_records)


def unavailable(scope: Scope, retry_after: int = RETRY_AFTER_SECONDS) -> Response:
    """The 503 for the endpoint `scope` addresses."""
    path: str = scope.get("path", "")
    headers = {"Retry-After": str(retry_after)}
    response: Response
    if path.startswith("/graphql"):
        accept = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"accept"), "")
        media_type = GRAPHQL_RESPONSE if GRAPHQL_RESPONSE in accept else "application/json"
        body = {"errors": [{"message": MESSAGE, "extensions": {"code": CODE}}]}
        response = JSONResponse(body, status_code=503, headers=headers, media_type=media_type)
    elif path.startswith(PREFIX + "/"):
        fmt = path.rsplit(".", 1)[-1]
        response = error_response(fmt if fmt in FORMATS else "json", Open311Error(503, MESSAGE))
        response.headers.update(headers)
    else:
        response = PlainTextResponse(MESSAGE, status_code=503, headers=headers)
    return response


def _has_errors(body: bytes) -> bool:
    try:
        parsed: Any = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(parsed, dict) and bool(parsed.get("errors"))


class OverloadMiddleware:
    """Pure ASGI: admits at most `max_in_flight` HTTP requests at once (the others wait up to `admission_wait`
    seconds, None: no limit), and answers 503 for a request an overload failure decided."""

    def __init__(
        self,
        app: ASGIApp,
        max_in_flight: int | None = None,
        admission_wait: float | None = None,
        retry_after: int = RETRY_AFTER_SECONDS,
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.admission_wait = admission_wait
        self.retry_after = retry_after
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None
        self._refused = 0
        self._logged_at = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in UNADMITTED or self.max_in_flight is None:
            await self._serve(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:  # a semaphore belongs to one event loop
            self._slots, self._slots_loop = asyncio.Semaphore(self.max_in_flight), loop
        slots = self._slots
        try:
            await asyncio.wait_for(slots.acquire(), self.admission_wait)
        except TimeoutError:
            self._log(scope, "no free slot", None)
            await unavailable(scope, self.retry_after)(scope, receive, send)
            return
        try:
            await self._serve(scope, receive, send)
        finally:
            slots.release()

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with watch_overload() as seen:
            started = False
            held: list[Message] = []  # a response begun after an overload, until its body is complete

            async def watched_send(message: Message) -> None:
                nonlocal started
                if message["type"] == "http.response.start" and seen:
                    held.append(message)
                elif held:
                    held.append(message)
                    if not message.get("more_body", False):
                        started = True
                        await self._send_held(scope, receive, send, held, seen)
                else:
                    started = started or message["type"] == "http.response.start"
                    await send(message)

            try:
                await self.app(scope, receive, watched_send)
            except Exception as error:
                if started or not (seen or is_overload(error)):
                    raise
                self._log(scope, "overloaded", (seen or [error])[0])
                await unavailable(scope, self.retry_after)(scope, receive, send)

    async def _send_held(
        self, scope: Scope, receive: Receive, send: Send, held: list[Message], seen: list[BaseException]
    ) -> None:
        """A response produced after an overload: a failure becomes the 503, a success goes out as it is."""
        start = held[0]
        body = b"".join(message.get("body", b"") for message in held[1:])
        status: int = start["status"]
        failed = status >= 500 or (
            scope.get("path", "").startswith("/graphql") and status < 300 and _has_errors(body)
        )
        if not failed:
            for message in held:
                await send(message)
            return
        self._log(scope, "overloaded", seen[0] if seen else None)
        await unavailable(scope, self.retry_after)(scope, receive, send)

    def _log(self, scope: Scope, why: str, error: BaseException | None) -> None:
        """One line now and then (not one a request: logging is CPU too), with how many were refused."""
        self._refused += 1
        now = time.monotonic()
        if now - self._logged_at < LOG_EVERY:
            return
        reason = f": {type(error).__name__}: {str(error).splitlines()[0][:160]}" if error else ""
        logger.warning(
            "503 for %d request(s) since the last report; the latest %s %s (%s%s)",
            self._refused,
            scope.get("method"),
            scope.get("path"),
            why,
            reason,
        )
        self._refused, self._logged_at = 0, now
