"""The Starlette app: /graphql (GraphQL over HTTP, GraphiQL outside production), vector tiles under /tiles,
and /healthz."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.types.unset import UNSET

from schema.auth import AuthenticationFailed, authenticate
from schema.context import ApiConfig, Context
from schema.hierarchy.compiled import read_operation, try_compiled
from schema.open311 import open311_routes
from schema.schema import build_schema
from schema.tiles import tile_routes
from tenants.principals import Principal

GRAPHQL_RESPONSE = "application/graphql-response+json"


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

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        if not isinstance(request, Request):
            return await super().run(request, context, root_value)
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

    def _negotiate(self, request: Request, response: Response) -> Response:
        """Answer in application/graphql-response+json when the client asks for it (GraphQL over HTTP);
        then a request that never reached execution is a 400."""
        if (
            GRAPHQL_RESPONSE not in request.headers.get("accept", "")
            or response.media_type != "application/json"
        ):
            return response
        response.headers["content-type"] = f"{GRAPHQL_RESPONSE}; charset=utf-8"
        if response.status_code == 200:
            body = json.loads(bytes(response.body))
            errors = body.get("errors") if isinstance(body, dict) else None
            # Parse and validation errors carry no path: execution never started.
            if errors and body.get("data") is None and all("path" not in error for error in errors):
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
            Route("/graphql", graphql, methods=["GET", "POST"]),
            *tile_routes(config),
            *open311_routes(config),
        ],
        lifespan=lifespan,
    )
