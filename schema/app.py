"""The Starlette app: /graphql (GraphQL over HTTP, GraphiQL outside production), vector tiles under /tiles,
and /healthz.

Before anything else reads it, /graphql refuses a request no execution should see with a 400 whose body is
one GraphQL error: BAD_REQUEST for a body that is not UTF-8 JSON holding an object or JSON nested too deeply,
INVALID_INPUT for a string PostgreSQL cannot store (a NUL character, a lone surrogate) anywhere in it, string
literals of the query included. A body over the limit is a 413.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cross_web import HTTPException
from graphql import GraphQLError
from graphql.language import Lexer, Source, TokenKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.http.parse_content_type import parse_content_type
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from schema.auth import AuthenticationFailed, authenticate
from schema.context import ApiConfig, Context
from schema.hierarchy.compiled import read_operation, try_compiled
from schema.open311 import open311_routes
from schema.overload import overload_middleware
from schema.schema import build_schema, with_codes
from schema.tiles import tile_routes
from tenants.principals import Principal

GRAPHQL_RESPONSE = "application/graphql-response+json"
MAX_JSON_DEPTH = 64


class Refused(Exception):
    """A request refused before execution: a 400 whose body is one GraphQL error with its code."""

    def __init__(self, reason: str, code: str = "BAD_REQUEST") -> None:
        super().__init__(reason)
        self.response = JSONResponse(
            {"errors": [{"message": reason, "extensions": {"code": code}}]}, status_code=400
        )


def _json(text: str | bytes, what: str) -> object:
    try:
        return json.loads(text.decode("utf-8-sig") if isinstance(text, bytes) else text)
    except UnicodeDecodeError:
        raise Refused(f"{what} is not UTF-8 text") from None
    except RecursionError:
        raise Refused(f"{what} is nested too deeply") from None
    except ValueError:  # not JSON, or a number too long to read
        raise Refused(f"{what} is not valid JSON") from None


def _check_document(document: object) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH, or holding a string (key or value) PostgreSQL cannot
    store: a NUL character or a lone surrogate."""
    stack = [(document, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise Refused(f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, str):
            if "\x00" in item:
                raise Refused("a string holds a NUL character (\\u0000)", "INVALID_INPUT")
            try:
                item.encode()
            except UnicodeEncodeError:
                raise Refused(
                    "a string holds a lone surrogate, which is not Unicode text", "INVALID_INPUT"
                ) from None
        elif isinstance(item, dict):
            stack.extend((part, depth + 1) for pair in item.items() for part in pair)
        elif isinstance(item, list):
            stack.extend((part, depth + 1) for part in item)


def _check_literals(query: str, max_tokens: int) -> None:
    """Refuse a query whose string literal holds a NUL (written \\u0000 or \\u{0})."""
    if "\\u" not in query:
        return
    lexer = Lexer(Source(query))
    try:
        for _ in range(max_tokens):
            token = lexer.advance()
            if token.kind is TokenKind.EOF:
                return
            if token.kind is TokenKind.STRING and "\x00" in (token.value or ""):
                raise Refused("a string in the query holds a NUL character (\\u0000)", "INVALID_INPUT")
    except GraphQLError:
        pass  # the parser says what is wrong


class LiaisonGraphQL(GraphQL[Context, None]):
    def __init__(self, config: ApiConfig) -> None:
        super().__init__(
            build_schema(config),
            graphql_ide=None if config.production else "graphiql",
            allow_queries_via_get=True,
        )
        self.config = config

    async def authenticate(self, request: Request | WebSocket) -> Principal | None:
        try:
            return await authenticate(self.config, request)
        except AuthenticationFailed as error:
            raise HTTPException(error.status_code, error.reason) from None

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        principal = await self.authenticate(request)
        assert isinstance(request, Request) and isinstance(response, Response)
        return Context(request=request, response=response, config=self.config, principal=principal)

    async def screen(self, request: Request) -> None:
        """Refuse what no execution should see (see the module's docstring): raises Refused."""
        if request.method == "POST":
            content_type, _ = parse_content_type(request.headers.get("content-type", ""))
            if "application/json" not in content_type:
                return  # strawberry refuses other content types
            data: Any = _json(await request.body(), "the request body")
            if not isinstance(data, dict):
                raise Refused("the request body must be a JSON object: query, variables, ...")
        else:
            data = dict(request.query_params)
            for name in ("variables", "extensions"):
                if data.get(name):
                    data[name] = _json(data[name], name)
            if any("\x00" in value for _, value in request.query_params.multi_items()):
                raise Refused("a query parameter holds a NUL character (%00)", "INVALID_INPUT")
        _check_document(data)
        if isinstance(query := data.get("query"), str):
            _check_literals(query, self.config.max_tokens)

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        if not isinstance(request, Request):
            return await super().run(request, context, root_value)
        try:
            await self.screen(request)
        except Refused as refused:
            return self._negotiate(request, refused.response)
        sub_response = await super().get_sub_response(request)
        request.state.liaison_sub_response = sub_response
        context = await self.get_context(request, sub_response)
        try:
            # Read-only hierarchy queries are answered by one SQL statement when they can be.
            operation = await read_operation(request)
            data = await try_compiled(self.schema, context, *operation) if operation else None
            if data is not None:
                response = Response('{"data":' + data + "}", media_type="application/json")
            else:
                response = await super().run(request, context, root_value)
        except HTTPException as error:
            await self._finish(context, commit=False)
            if request.method == "GET" and "mutation" in error.reason.lower():
                raise HTTPException(405, "mutations must be sent with POST") from None
            raise
        except BaseException:
            await self._finish(context, commit=False)
            raise
        await self._finish(context, commit=not context.failed)
        return self._negotiate(request, response)

    async def _finish(self, context: Context, *, commit: bool) -> None:
        try:
            if context.work is not None:
                await (context.work.commit() if commit else context.work.rollback())
        finally:
            context.close()

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        """The response object the context was built with, so permissions can set its status (401)."""
        prepared: Response | None = getattr(request.state, "liaison_sub_response", None)
        return prepared if prepared is not None else await super().get_sub_response(request)

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        if result.errors:
            result.errors = with_codes(result.errors, production=self.config.production)
        return await super().process_result(request, result)

    def _negotiate(self, request: Request, response: Response) -> Response:
        """Answer in application/graphql-response+json when the client asks for it (GraphQL over HTTP);
        then a request that never reached execution is a 400 without a `data` entry."""
        if (
            GRAPHQL_RESPONSE not in request.headers.get("accept", "")
            or response.media_type != "application/json"
        ):
            return response
        response.headers["content-type"] = f"{GRAPHQL_RESPONSE}; charset=utf-8"
        if response.status_code == 200:
            body = json.loads(bytes(response.body))
            errors = body.get("errors") if isinstance(body, dict) else None
            # Parse, validation and variable errors carry no path: execution never started.
            if errors and body.get("data") is None and all("path" not in error for error in errors):
                body.pop("data", None)
                response.body = json.dumps(body, separators=(",", ":")).encode()
                response.headers["content-length"] = str(len(response.body))
                response.status_code = 400
        return response


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(config: ApiConfig) -> Starlette:
    graphql = LiaisonGraphQL(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await config.database.dispose()

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/graphql", graphql, methods=["GET", "POST"], max_body_size=config.max_body_bytes),
            *tile_routes(config),
            *open311_routes(config),
        ],
        lifespan=lifespan,
        middleware=overload_middleware(config.database),
    )
