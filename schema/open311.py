"""Open311 GeoReport v2 at /open311/v2/: the tenant's categories as services, and its requests.

- jurisdiction_id is the tenant code (optional with a bearer token, which names its tenant already).
- POST requests.{json|xml} takes an api_key (or a bearer token) and goes through the one intake pipeline
  as channel "open311". The answer carries the ticket as service_request_id and a token the caller can
  resolve later with GET tokens/{token}.
- Reads are bounded by the caller: a bearer token reads with its own scopes, an api key with its scope.
  Without credentials the tenant's requests are public (public fields only) unless the tenant has turned
  `open311_public` off, and then the answer is a 401.
- Every answer lists only the public fields of services/requests/public.py: never a name, phone or
  account of the person who asked.
- Errors are the spec's `[{"code": 400, "description": "..."}]` (or <errors><error>) with the same HTTP
  status: 400 bad or missing parameters (a NUL character in any, the path's included), 401 credentials
  needed, 403 refused credentials, 404 unknown id, 413 a body over MAX_BODY.
"""

from __future__ import annotations

import json
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from schema.auth import AuthenticationFailed, authenticate
from schema.context import ApiConfig
from services.errors import Conflict, InvalidInput
from services.requests import apikeys, public
from services.requests.codes import Idempotency
from services.requests.intake import Receipt, Submission, intake_context, submit
from services.requests.models import ApiKey
from services.requests.public import PublicCategory, PublicRequest, RequestFilter
from services.unit_of_work import unit_of_work
from tenants.context import TENANT_CODE_PATTERN, TenantContext
from tenants.principals import Principal
from tenants.roles import Role

PREFIX = "/open311/v2"
CHANNEL = "open311"
FORMATS = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
DEFAULT_WINDOW = timedelta(days=90)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
MAX_BODY = 64 * 1024
GROUPS = {"basic": "basic", "personalised": "personalised"}
Item = dict[str, Any]


class Open311Error(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


@dataclass(frozen=True)
class Caller:
    tenant_id: int
    principal: Principal | None
    key: ApiKey | None

    @property
    def credentials(self) -> bool:
        return self.principal is not None or self.key is not None

    def reading_context(self) -> TenantContext:
        if self.principal is not None:
            return self.principal.context
        if self.key is not None:
            return apikeys.key_context(self.key)
        return TenantContext.whole_tenant(self.tenant_id, "system:open311")


# Rendering ---------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _element(name: str, value: Any) -> ET.Element:
    element = ET.Element(name)
    if isinstance(value, list):
        singular = name[:-1] if name.endswith("s") else "item"
        element.extend(_element(singular, item) for item in value)
    elif isinstance(value, dict):
        element.extend(_element(key, item) for key, item in value.items())
    else:
        element.text = _text(value)
    return element


def render(fmt: str, body: list[Item] | Item, root: str, item: str, status: int = 200) -> Response:
    """JSON as the spec shows it, or XML with `root` holding one `item` element per entry."""
    if fmt == "xml":
        element = ET.Element(root)
        if isinstance(body, list):
            element.extend(_element(item, entry) for entry in body)
        else:
            element.extend(_element(key, value) for key, value in body.items())
        text = '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(element, encoding="unicode")
        return Response(text.encode(), status_code=status, media_type=FORMATS["xml"])
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Response(data.encode(), status_code=status, media_type=FORMATS["json"])


def error_response(fmt: str, error: Open311Error) -> Response:
    body = [{"code": error.status, "description": error.description}]
    headers = {"WWW-Authenticate": 'Bearer realm="liaison-grid"'} if error.status == 401 else {}
    response = render(fmt if fmt in FORMATS else "json", body, "errors", "error", error.status)
    response.headers.update(headers)
    return response


def _when(value: datetime | None, zone: ZoneInfo) -> str | None:
    return value.astimezone(zone).isoformat(timespec="seconds") if value is not None else None


def service_item(category: PublicCategory) -> Item:
    return {
        "service_code": category.code,
        "service_name": category.name,
        "description": (
            f"{category.name}：{category.response_days}个工作日内响应，{category.resolution_days}个工作日内办结"
        ),
        "metadata": False,
        "type": "realtime",
        "keywords": f"{category.code}, {category.name}",
        "group": GROUPS.get(category.kind, category.kind),
    }


def request_item(found: PublicRequest, zone: ZoneInfo) -> Item:
    return {
        "service_request_id": found.ticket,
        "status": "open" if found.is_open else "closed",
        "status_notes": found.status_note,
        "service_name": found.category_name,
        "service_code": found.category_code,
        "description": found.description,
        "agency_responsible": found.agency,
        "service_notice": None,
        "requested_datetime": _when(found.submitted_at, zone),
        "updated_datetime": _when(found.updated_at, zone),
        "expected_datetime": _when(found.resolution_due_at, zone),
        "address": found.address,
        "address_id": None,
        "zipcode": None,
        "lat": found.lat,
        "long": found.lon,
        "media_url": found.media_url,
    }


# Parameters ---------------------------------------------------------------------------------------------


async def _body(request: Request) -> bytes:
    """The request body, refused with a 413 as soon as it grows past MAX_BODY."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise Open311Error(413, f"the request body is larger than {MAX_BODY // 1024} KiB")
    return bytes(body)


def _unstorable(what: str, value: str) -> Open311Error | None:
    """A 400 for a text PostgreSQL cannot store: a NUL character, or a lone surrogate (from JSON)."""
    if "\x00" in value:
        return Open311Error(400, f"{what} holds a NUL character")
    try:
        value.encode()
    except UnicodeEncodeError:
        return Open311Error(400, f"{what} is not Unicode text")
    return None


async def parameters(request: Request) -> dict[str, str]:
    """The query string, and for a POST the form-encoded or JSON body (body values win)."""
    values = {key: value for key, value in request.query_params.items()}
    if request.method == "POST":
        body = await _body(request)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if content_type == "application/json":
                document = json.loads(body or b"{}")
                if not isinstance(document, dict):
                    raise Open311Error(400, "a JSON body must be an object of parameters")
                values.update({str(k): _text(v) for k, v in document.items() if v is not None})
            elif content_type in ("application/x-www-form-urlencoded", ""):
                values.update(parse_qsl(body.decode(), keep_blank_values=True))
            else:
                raise Open311Error(
                    400, "send the parameters form-encoded (application/x-www-form-urlencoded) or as JSON"
                )
        # ValueError: also a number too long to read; RecursionError: JSON nested too deeply.
        except (ValueError, RecursionError):
            raise Open311Error(400, "the request body is not valid form-encoded or JSON text") from None
    for key, value in values.items():
        what = f"the parameter {key[:40]!r}"
        refused = _unstorable(what, key) or _unstorable(what, value)
        if refused is not None:
            raise refused
    return values


def _optional(values: Mapping[str, str], name: str, limit: int = 4000) -> str | None:
    value = values.get(name, "").strip()
    if len(value) > limit:
        raise Open311Error(400, f"{name} is longer than {limit} characters")
    return value or None


def _coordinate(values: Mapping[str, str], name: str, bound: float) -> float | None:
    raw = _optional(values, name, 40)
    if raw is None:
        return None
    try:
        number = float(raw)
    except ValueError:
        raise Open311Error(400, f"{name} {raw!r} is not a number") from None
    if not -bound <= number <= bound:  # also refuses nan
        raise Open311Error(400, f"{name} {raw} is out of range (-{bound:g} to {bound:g})")
    return number


def _list(values: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in values.get(name, "").split(",") if part.strip())


def _datetime(values: Mapping[str, str], name: str, zone: ZoneInfo) -> datetime | None:
    raw = _optional(values, name, 40)
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise Open311Error(
            400, f"{name} {raw!r} is not a w3 date-time such as 2026-11-25T10:00:00+08:00"
        ) from None
    moment = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)
    # Far enough from datetime's ends that the default window (end - 90 days) stays representable.
    if not EARLIEST <= moment <= LATEST:
        raise Open311Error(400, f"{name} {raw!r} lies outside the years 1970 to 9998")
    return moment


def _is_cjk(text: str) -> bool:
    return all(unicodedata.name(ch, "").startswith("CJK") for ch in text)


def full_name(first: str | None, last: str | None) -> str | None:
    """Chinese names read family name first (张 + 三 = 张三); others first name first."""
    if first and last and _is_cjk(first + last):
        return last + first
    return " ".join(part for part in (first, last) if part) or None


# Callers ------------------------------------------------------------------------------------------------


class Open311:
    def __init__(self, config: ApiConfig) -> None:
        self.config = config

    async def caller(self, request: Request, values: Mapping[str, str]) -> Caller:
        try:
            principal = await authenticate(self.config, request)
        except AuthenticationFailed as error:
            raise Open311Error(error.status_code, error.reason) from None
        jurisdiction = _optional(values, "jurisdiction_id", 64)
        if jurisdiction is None:
            if principal is None:
                raise Open311Error(400, "jurisdiction_id is required (the tenant code, e.g. beijing)")
            tenant_id = principal.tenant_id
        else:
            is_code = TENANT_CODE_PATTERN.fullmatch(jurisdiction) is not None
            found = await self.config.directory.tenant_id(jurisdiction) if is_code else None
            if found is None:
                raise Open311Error(400, f"jurisdiction_id {jurisdiction!r} is unknown")
            if principal is not None and principal.tenant_id != found:
                raise Open311Error(403, f"your token is not valid for jurisdiction {jurisdiction!r}")
            tenant_id = found
        key = None
        plaintext = values.get("api_key", "").strip()
        if plaintext:
            system = TenantContext.whole_tenant(tenant_id, "system:open311")
            async with unit_of_work(self.config.database, system) as session:
                key = await apikeys.lookup(session, tenant_id, plaintext)
            if key is None:
                raise Open311Error(403, "the api_key is invalid or has been revoked")
        return Caller(tenant_id, principal, key)

    async def reader(self, request: Request, values: Mapping[str, str]) -> Caller:
        """A caller who may read; without credentials only when the tenant's requests are public."""
        caller = await self.caller(request, values)
        if not caller.credentials:
            system = TenantContext.whole_tenant(caller.tenant_id, "system:open311")
            async with unit_of_work(self.config.database, system) as session:
                settings = await public.settings(session, caller.tenant_id)
            if not settings.open311_public:
                raise Open311Error(
                    401, "this jurisdiction's requests are not public: send an api_key or a token"
                )
        return caller

    # Endpoints ------------------------------------------------------------------------------------------

    async def services(self, request: Request, values: Mapping[str, str], fmt: str) -> Response:
        caller = await self.reader(request, values)
        async with unit_of_work(self.config.database, caller.reading_context()) as session:
            found = await public.categories(session, caller.tenant_id)
        return render(fmt, [service_item(category) for category in found], "services", "service")

    async def service_definition(self, request: Request, values: Mapping[str, str], fmt: str) -> Response:
        code = request.path_params["code"]
        caller = await self.reader(request, values)
        async with unit_of_work(self.config.database, caller.reading_context()) as session:
            found = await public.categories(session, caller.tenant_id, code)
        if not found:
            raise Open311Error(404, f"there is no service {code!r}")
        return render(
            fmt, {"service_code": code, "attributes": []}, "service_definition", "service_definition"
        )

    async def requests(self, request: Request, values: Mapping[str, str], fmt: str) -> Response:
        return await (
            self.create(request, values, fmt)
            if request.method == "POST"
            else self.search(request, values, fmt)
        )

    async def create(self, request: Request, values: Mapping[str, str], fmt: str) -> Response:
        caller = await self.caller(request, values)
        if not caller.credentials:
            raise Open311Error(403, "an api_key is required to create a service request")
        code = _optional(values, "service_code", 32)
        if code is None:
            raise Open311Error(400, "service_code is required")
        lat = _coordinate(values, "lat", 90)
        lon = _coordinate(values, "long", 180)
        if (lat is None) != (lon is None):
            raise Open311Error(400, "give both lat and long, or neither")
        address = _optional(values, "address_string", 500)
        if lat is None and address is None:
            raise Open311Error(400, "a location is required: lat and long, or address_string")
        media = _optional(values, "media_url", 1000)
        owner = (
            caller.principal.sub if caller.principal and caller.principal.roles == {Role.RESIDENT} else None
        )
        # A retry with the same Idempotency-Key header (from the same key or token) answers the first one.
        idempotency_key = request.headers.get("idempotency-key")
        if caller.key is not None:
            sender = f"apikey:{caller.key.id}"
        else:
            assert caller.principal is not None
            sender = f"principal:{caller.principal.sub}"
        submission = Submission(
            category=code,
            description=_optional(values, "description") or "",
            channel=CHANNEL,
            lon=lon,
            lat=lat,
            crs=_optional(values, "crs", 16) or "WGS84",
            address=address,
            photo_urls=(media,) if media else (),
            contact_name=full_name(_optional(values, "first_name", 50), _optional(values, "last_name", 50)),
            contact_phone=_optional(values, "phone", 32),
            contact_email=_optional(values, "email", 254),
            owner_principal=owner,
            idempotency=Idempotency(idempotency_key, sender) if idempotency_key is not None else None,
        )
        try:
            async with unit_of_work(self.config.database, intake_context(caller.tenant_id)) as session:
                receipt = await submit(session, caller.tenant_id, submission)
        except InvalidInput as error:
            raise Open311Error(400, _invalid(error, code)) from None
        except Conflict as error:
            raise Open311Error(409, error.message) from None
        # The token is the receipt's check code (kept as a hash): GET tokens/{token} and requestProgress.
        item = {
            "service_request_id": receipt.ticket,
            "service_notice": notice(receipt),
            "account_id": _optional(values, "account_id", 100),
            "token": receipt.check_code,
        }
        return render(fmt, [item], "service_requests", "request", 201 if receipt.created else 200)

    async def search(self, request: Request, values: Mapping[str, str], fmt: str) -> Response:
        caller = await self.reader(request, values)
        async with unit_of_work(self.config.database, caller.reading_context()) as session:
            zone = ZoneInfo((await public.settings(session, caller.tenant_id)).timezone)
            where = request_filter(values, zone)
            found = await public.search(session, caller.tenant_id, where)
        return render(fmt, [request_item(r, zone) for r in found], "service_requests", "request")

    async def one_request(self, request: Request, values: Mapping[str, str], fmt: str) -> Response:
        ticket = request.path_params["id"]
        caller = await self.reader(request, values)
        async with unit_of_work(self.config.database, caller.reading_context()) as session:
            zone = ZoneInfo((await public.settings(session, caller.tenant_id)).timezone)
            found = await public.by_ticket(session, caller.tenant_id, ticket)
        if found is None:
            raise Open311Error(404, f"there is no service request {ticket!r}")
        return render(fmt, [request_item(found, zone)], "service_requests", "request")

    async def token(self, request: Request, values: Mapping[str, str], fmt: str) -> Response:
        token = request.path_params["id"]
        caller = await self.reader(request, values)
        async with unit_of_work(self.config.database, caller.reading_context()) as session:
            ticket = await public.ticket_for_token(session, caller.tenant_id, CHANNEL, token)
        if ticket is None:
            raise Open311Error(404, f"there is no service request for token {token!r}")
        return render(fmt, [{"service_request_id": ticket, "token": token}], "service_requests", "request")


def _invalid(error: InvalidInput, code: str) -> str:
    if error.field == "category":
        return f"service_code {code!r} is unknown"
    return error.message


def notice(receipt: Receipt) -> str:
    if receipt.routed:
        return f"已收到，编号 {receipt.ticket}"
    return f"已收到，编号 {receipt.ticket}；位置不在任何网格内，等待人工分派"


def request_filter(values: Mapping[str, str], zone: ZoneInfo, now: datetime | None = None) -> RequestFilter:
    statuses = set(_list(values, "status"))
    unknown = statuses - {"open", "closed"}
    if unknown:
        raise Open311Error(400, f"status {sorted(unknown)[0]!r} is neither open nor closed")
    start = _datetime(values, "start_date", zone)
    end = _datetime(values, "end_date", zone)
    if start is None and end is None:
        start = (now or datetime.now(UTC)) - DEFAULT_WINDOW
    elif start is None and end is not None:
        start = end - DEFAULT_WINDOW
    if start is not None and end is not None and end < start:
        raise Open311Error(400, "end_date is before start_date")
    return RequestFilter(
        tickets=_list(values, "service_request_id"),
        category_codes=_list(values, "service_code"),
        submitted_from=start,
        submitted_until=end,
        open=None if len(statuses) != 1 else statuses == {"open"},
    )


Handler = Callable[[Request, Mapping[str, str], str], Awaitable[Response]]


def open311_routes(config: ApiConfig) -> list[Route]:
    api = Open311(config)

    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            fmt = request.path_params["fmt"]
            try:
                if fmt not in FORMATS:
                    raise Open311Error(400, f"the format {fmt[:20]!r} is neither json nor xml")
                for name, value in request.path_params.items():
                    refused = _unstorable(f"the {name} in the path", value)
                    if refused is not None:
                        raise refused
                values = await parameters(request)
                return await handler(request, values, fmt)
            except Open311Error as error:
                return error_response(fmt, error)

        return run

    return [
        Route(f"{PREFIX}/services.{{fmt}}", endpoint(api.services), methods=["GET"]),
        Route(f"{PREFIX}/services/{{code}}.{{fmt}}", endpoint(api.service_definition), methods=["GET"]),
        Route(f"{PREFIX}/requests.{{fmt}}", endpoint(api.requests), methods=["GET", "POST"]),
        Route(f"{PREFIX}/requests/{{id}}.{{fmt}}", endpoint(api.one_request), methods=["GET"]),
        Route(f"{PREFIX}/tokens/{{id}}.{{fmt}}", endpoint(api.token), methods=["GET"]),
    ]
