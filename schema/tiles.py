"""Vector tiles of the grid network over HTTP: /tiles/{layer}/{z}/{x}/{y}.mvt and /tiles/{layer}.json.

- The caller is the bearer token's principal (the same authentication as /graphql); each request runs one
  tenant-scoped transaction, so a tile holds only what row-level security and the caller's scopes allow.
- Checks, in order: a NUL character in a parameter 400; unknown layer 404; z/x/y that name no tile 400;
  no token 401, invalid token 401, a scope outside the token's tenant 403 (the same one-line reasons as
  /graphql). Unauthenticated callers therefore learn nothing the public URL scheme does not already say.
- A tile with nothing in it is a 200 with an empty body (a valid MVT with no layers), so it caches and
  revalidates like any other tile.
- Tiles depend on the token: `Cache-Control: private` with a short max-age, `Vary: Authorization`, and a
  strong ETag (a hash of the bytes) honoured through If-None-Match with a 304.
- A tile that reached the feature cap says so with `X-Tile-Truncated: true`.
- The `heat` layer (/tiles/heat/{z}/{x}/{y}.mvt?from=&to=&category=&state=) draws the caller's grid cells
  with their requests submitted in [from, to) (ISO 8601 with an offset; by default the last 30 days up
  to now), optionally of some categories and states (repeat the parameter, or separate with commas).
  Staff only: a resident's token gets 403. A bad window or filter is a 400 with the reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from geo.heat import HeatInputError, Window
from geo.tiles import (
    FIELDS,
    HEAT_DESCRIPTION,
    HEAT_FIELDS,
    HEAT_LAYER,
    HEAT_MINZOOM,
    LAYERS,
    MAX_FEATURES,
    MIN_ZOOM,
    TILEJSON_MAX_ZOOM,
    WORLD_BOUNDS,
    BadTile,
    TileLayer,
    check_tile,
    layer_bounds,
    render_heat_tile,
    render_tile,
)
from schema.auth import AuthenticationFailed, authenticate
from schema.context import ApiConfig
from schema.permissions import SIGN_IN_FIRST
from services.unit_of_work import unit_of_work
from tenants.principals import Principal
from tenants.roles import Role

MVT_MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
TILEJSON_MEDIA_TYPE = "application/json"
CACHE_CONTROL = "private, max-age=60"
REALM = 'Bearer realm="liaison-grid"'
# Plain ASCII digits only (int() would also take " 7", "+7", "٧").
_COORDINATE = re.compile(r"[0-9]+")
_MAX_DIGITS = 12  # far beyond 2**22 - 1, and short enough to parse

Endpoint = Callable[[Request], Awaitable[Response]]


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _refuse(status_code: int, reason: str, headers: dict[str, str] | None = None) -> _Refused:
    return _Refused(PlainTextResponse(reason, status_code=status_code, headers=headers))


def _text(request: Request) -> None:
    """Path and query parameters PostgreSQL could not store (a NUL character) are a 400."""
    for name, value in [*request.path_params.items(), *request.query_params.multi_items()]:
        if "\x00" in name or "\x00" in value:
            raise _refuse(400, f"the parameter {name[:20]!r} holds a NUL character")


def _layer(request: Request) -> TileLayer:
    name = request.path_params["layer"]
    layer = LAYERS.get(name)
    if layer is None:
        raise _refuse(404, f"no tile layer {name!r}; the layers are {', '.join(LAYERS)}")
    return layer


def _coordinates(request: Request) -> tuple[int, int, int]:
    values = []
    for name in ("z", "x", "y"):
        raw = request.path_params[name]
        if not _COORDINATE.fullmatch(raw):
            raise _refuse(400, f"{name} must be a non-negative integer, not {raw[:20]!r}")
        if len(raw) > _MAX_DIGITS:
            raise _refuse(400, f"{name} is out of range")
        values.append(int(raw))
    z, x, y = values
    try:
        check_tile(z, x, y)
    except BadTile as error:
        raise _refuse(400, str(error)) from None
    return z, x, y


async def _principal(config: ApiConfig, request: Request) -> Principal:
    try:
        principal = await authenticate(config, request)
    except AuthenticationFailed as error:
        invalid = error.status_code == 401
        challenge = {"WWW-Authenticate": f'{REALM}, error="invalid_token"'} if invalid else None
        raise _refuse(error.status_code, error.reason, challenge) from None
    if principal is None:
        raise _refuse(401, SIGN_IN_FIRST, {"WWW-Authenticate": REALM})
    return principal


async def _staff(config: ApiConfig, request: Request) -> Principal:
    principal = await _principal(config, request)
    if not principal.has_any_role(*(role for role in Role if role is not Role.RESIDENT)):
        raise _refuse(403, "only staff may read heat tiles")
    return principal


HEAT_DEFAULT_WINDOW = timedelta(days=30)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def _moment(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    # An unescaped '+' of an offset arrives as a space.
    value = raw.strip().replace(" ", "+")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _refuse(400, f"{name} must be an ISO 8601 time such as 2026-11-25T00:00:00+08:00") from None
    if moment.tzinfo is None:
        raise _refuse(400, f"{name} needs a time zone offset, e.g. 2026-11-25T00:00:00+08:00")
    # Far enough from datetime's ends that the default window (to - 30 days) stays representable.
    if not EARLIEST <= moment <= LATEST:
        raise _refuse(400, f"{name} lies outside the years 1970 to 9998")
    return moment


def _listed(request: Request, name: str) -> tuple[str, ...] | None:
    values = [part.strip() for raw in request.query_params.getlist(name) for part in raw.split(",")]
    found = tuple(value for value in values if value)
    return found or None


def _heat_window(request: Request, principal: Principal) -> Window:
    end = _moment(request, "to") or datetime.now(UTC)
    start = _moment(request, "from") or end - HEAT_DEFAULT_WINDOW
    try:
        return Window(
            principal.tenant_id,
            principal.scopes,
            start,
            end,
            _listed(request, "category"),
            _listed(request, "state"),
        )
    except HeatInputError as error:
        raise _refuse(400, str(error)) from None


def etag_of(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/"x" matches "x"."""
    if if_none_match is None:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def _cached(request: Request, data: bytes, media_type: str, extra: dict[str, str] | None = None) -> Response:
    etag = etag_of(data)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": "Authorization", **(extra or {})}
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


def tile_routes(config: ApiConfig, *, max_features: int = MAX_FEATURES) -> list[Route]:
    """The /tiles routes; `max_features` caps the features of one tile."""

    async def tile(request: Request) -> Response:
        try:
            _text(request)
            layer = _layer(request)
            z, x, y = _coordinates(request)
            principal = await _principal(config, request)
        except _Refused as refused:
            return refused.response
        async with unit_of_work(config.database, principal.context) as session:
            found = await render_tile(
                session,
                layer,
                tenant_id=principal.tenant_id,
                scopes=principal.scopes,
                z=z,
                x=x,
                y=y,
                max_features=max_features,
            )
        extra = {"X-Tile-Truncated": "true"} if found.truncated else None
        return _cached(request, found.data, MVT_MEDIA_TYPE, extra)

    async def tilejson(request: Request) -> Response:
        try:
            _text(request)
            layer = _layer(request)
            principal = await _principal(config, request)
        except _Refused as refused:
            return refused.response
        async with unit_of_work(config.database, principal.context) as session:
            bounds = await layer_bounds(
                session, layer, tenant_id=principal.tenant_id, scopes=principal.scopes
            )
        document = tilejson_document(layer, str(request.base_url), bounds)
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        return _cached(request, body, TILEJSON_MEDIA_TYPE)

    async def heat_tile(request: Request) -> Response:
        try:
            _text(request)
            z, x, y = _coordinates(request)
            principal = await _staff(config, request)
            window = _heat_window(request, principal)
        except _Refused as refused:
            return refused.response
        async with unit_of_work(config.database, principal.context) as session:
            found = await render_heat_tile(
                session,
                tenant_id=principal.tenant_id,
                scopes=principal.scopes,
                z=z,
                x=x,
                y=y,
                start=window.start,
                end=window.end,
                categories=window.categories,
                states=window.states,
                max_features=max_features,
            )
        extra = {"X-Tile-Truncated": "true"} if found.truncated else None
        return _cached(request, found.data, MVT_MEDIA_TYPE, extra)

    async def heat_tilejson(request: Request) -> Response:
        try:
            _text(request)
            principal = await _staff(config, request)
            _heat_window(request, principal)
        except _Refused as refused:
            return refused.response
        async with unit_of_work(config.database, principal.context) as session:
            bounds = await layer_bounds(
                session, LAYERS["grid"], tenant_id=principal.tenant_id, scopes=principal.scopes
            )
        document = heat_tilejson_document(str(request.base_url), request.url.query, bounds)
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        return _cached(request, body, TILEJSON_MEDIA_TYPE)

    return [
        Route(f"/tiles/{HEAT_LAYER}.json", heat_tilejson, methods=["GET"], name="heat_tilejson"),
        Route(f"/tiles/{HEAT_LAYER}/{{z}}/{{x}}/{{y}}.mvt", heat_tile, methods=["GET"], name="heat_tile"),
        Route("/tiles/{layer}.json", tilejson, methods=["GET"], name="tilejson"),
        Route("/tiles/{layer}/{z}/{x}/{y}.mvt", tile, methods=["GET"], name="tile"),
    ]


def tilejson_document(
    layer: TileLayer, base_url: str, bounds: tuple[float, float, float, float] | None
) -> dict[str, object]:
    """TileJSON 3.0.0 for one layer; `bounds` are those of the caller's shapes (the world when none)."""
    if bounds is None:
        west, south, east, north = WORLD_BOUNDS
    else:
        # Outwards to 6 decimals (about 0.1 m), so the box still holds every shape.
        west, south, east, north = (
            _round_down(bounds[0]),
            _round_down(bounds[1]),
            _round_up(bounds[2]),
            _round_up(bounds[3]),
        )
    minzoom = max(layer.minzoom, MIN_ZOOM)
    return {
        "tilejson": "3.0.0",
        "name": f"liaison-grid {layer.name}",
        "description": layer.description,
        "version": "1.0.0",
        "scheme": "xyz",
        "tiles": [base_url.rstrip("/") + f"/tiles/{layer.name}/{{z}}/{{x}}/{{y}}.mvt"],
        "minzoom": minzoom,
        "maxzoom": TILEJSON_MAX_ZOOM,
        "bounds": [west, south, east, north],
        "vector_layers": [
            {
                "id": layer.name,
                "description": layer.description,
                "minzoom": minzoom,
                "maxzoom": TILEJSON_MAX_ZOOM,
                "fields": dict(FIELDS),
            }
        ],
    }


def _round_down(value: float) -> float:
    return math.floor(value * 1e6) / 1e6


def _round_up(value: float) -> float:
    return math.ceil(value * 1e6) / 1e6


def heat_tilejson_document(
    base_url: str, query: str, bounds: tuple[float, float, float, float] | None
) -> dict[str, object]:
    """TileJSON 3.0.0 of the heat layer; the tile URLs carry the same window and filters as `query`."""
    document = tilejson_document(LAYERS["grid"], base_url, bounds)
    suffix = f"?{query}" if query else ""
    layer = {
        "id": HEAT_LAYER,
        "description": HEAT_DESCRIPTION,
        "minzoom": HEAT_MINZOOM,
        "maxzoom": TILEJSON_MAX_ZOOM,
        "fields": dict(HEAT_FIELDS),
    }
    document.update(
        name=f"liaison-grid {HEAT_LAYER}",
        description=HEAT_DESCRIPTION,
        tiles=[base_url.rstrip("/") + f"/tiles/{HEAT_LAYER}/{{z}}/{{x}}/{{y}}.mvt{suffix}"],
        minzoom=HEAT_MINZOOM,
        vector_layers=[layer],
    )
    return document
