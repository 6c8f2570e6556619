"""The `liaison` command: migrate, seed, serve, worker, token, audit verify, demo."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import psycopg
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from deploy import migrate as migrations
from deploy import runtime
from deploy.seed import DEMO_PASSWORD, SeedResult, seed_demo, seed_synthetic
from deploy.settings import LOCAL_DIR, Settings, load
from geo.boundaries import BoundaryLevel
from geo.crs import parse_crs
from geo.validation import ACCEPTED_SRIDS, GeometryRefused, geojson_srid
from services.audit import service as audit
from services.csv_table import ENCODINGS
from services.errors import DomainError, InvalidInput
from services.geography.importing import (
    ImportOptions,
    ImportReport,
    NotAFeatureCollection,
    features_of,
    import_boundaries,
)
from services.hierarchy import repository
from services.hierarchy.repository import Level
from services.notifications import webhooks
from services.notifications.models import WebhookDelivery, WebhookEndpoint
from services.requests import apikeys
from services.requests.hotline import HotlineFileError, HotlineReport, import_hotline
from services.requests.models import ApiKey
from services.unit_of_work import unit_of_work
from tenants.context import SCOPE_PATTERN, TENANT_CODE_PATTERN, TenantContext, city_scope, scope_is_within
from tenants.db import Database
from tenants.roles import ROLE_NAMES, Role

T = TypeVar("T")
app = typer.Typer(help="Liaison Grid: deputies in the community and grid governance.", no_args_is_help=True)
seed_app = typer.Typer(help="Load a tenant's hierarchy.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(seed_app, name="seed")
app.add_typer(audit_app, name="audit")
import_app = typer.Typer(help="Load data from files.", no_args_is_help=True)
app.add_typer(import_app, name="import")
webhook_app = typer.Typer(help="Webhook endpoints that receive notices.", no_args_is_help=True)
app.add_typer(webhook_app, name="webhook")
apikey_app = typer.Typer(help="Open311 api keys.", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")
requests_app = typer.Typer(help="Residents' requests.", no_args_is_help=True)
app.add_typer(requests_app, name="requests")
outbox_app = typer.Typer(help="Tasks waiting in the outbox.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")
console = Console(stderr=True)
out = Console()
TenantCode = Annotated[str, typer.Option(help="Tenant code.")]
NewestFirst = Annotated[int, typer.Option(min=1, max=200, help="Newest first, at most this many.")]


def fail(sentence: str) -> NoReturn:
    """Bad input: one sentence on stderr and exit code 2."""
    console.print(f"liaison: {sentence}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def refuse_unsafe_production(settings: Settings) -> None:
    """In production, the README's default passwords or no real JWT secret: one sentence and exit code 2."""
    refusal = settings.production_refusal()
    if refusal is not None:
        fail(refusal)


def run_with_database(work: Callable[[Database], Awaitable[T]], settings: Settings | None = None) -> T:
    database = runtime.database(settings or load())

    async def main() -> T:
        try:
            return await work(database)
        finally:
            await database.dispose()

    return asyncio.run(main())


def run_or_fail(work: Callable[[Database], Awaitable[T | str]], settings: Settings | None = None) -> T:
    """run_with_database, where a sentence instead of a result means the input was refused: fail with it."""
    result = run_with_database(work, settings)
    if isinstance(result, str):
        fail(result)
    return result


def run_in_tenant(tenant: str, work: Callable[[AsyncSession, TenantContext], Awaitable[T]]) -> T:
    """Run `work` in a whole-tenant transaction; fail with one sentence for an unknown tenant or bad input."""
    return run_or_fail(lambda db: _in_tenant_cli(db, tenant, work))


def print_table(title: str, columns: Iterable[str], rows: Iterable[Iterable[str]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    out.print(table)


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[..., Callable[[int], None]]]:
    """Progress bars: factory(total, description=None) adds one and returns its advance function."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:

        def factory(total: int, description: str | None = None) -> Callable[[int], None]:
            task = progress.add_task(description or label, total=total)
            return lambda advance: progress.advance(task, advance)

        yield factory


def shapes_bar(factory: Callable[..., Callable[[int], None]]) -> Callable[[int], Callable[[int], None]]:
    return lambda total: factory(total, "drawing shapes")


def print_seed(result: SeedResult, code: str) -> None:
    table = Table(title=f"tenant {code} (id {result.tenant_id})")
    table.add_column("level")
    table.add_column("created", justify="right")
    table.add_column("already there", justify="right")
    for level in Level:
        table.add_row(
            level.value, str(result.report.created[level.value]), str(result.report.kept[level.value])
        )
    out.print(table)
    if result.shapes is not None:
        drawn = result.shapes
        if drawn.skipped:
            out.print("shapes: already drawn, kept")
        else:
            out.print(
                f"shapes: {drawn.districts} districts, {drawn.streets} streets, {drawn.stations} stations, "
                f"{drawn.grid_cells} grid cells (streets and below are synthetic)"
            )
    if result.users:
        out.print(f"users created: {', '.join(result.users)} (password {DEMO_PASSWORD!r})")
    if result.requests_added:
        out.print(f"requests: {result.requests_added:,} synthetic requests over the last 180 days")
    if result.deputies_added:
        out.print(f"deputies: {result.deputies_added:,} synthetic deputies linked to the stations")
    if result.activities_added:
        out.print(f"activities: {result.activities_added:,} synthetic duty activities over the last year")


@app.command("migrate")
def migrate_command() -> None:
    """Create or upgrade the database schema, roles and row-level security."""
    settings = load()
    # Migrating sets the roles' passwords: in production, never the README's defaults.
    refuse_unsafe_production(settings)
    migrations.upgrade(settings)
    out.print("database is at the latest migration")


@seed_app.command("demo")
def seed_demo_command() -> None:
    """Load the demo city: Beijing with its real districts, streets and communities."""
    with progress_bar("seeding beijing") as factory:
        result = run_with_database(lambda db: seed_demo(db, factory, shapes_bar(factory)))
    print_seed(result, "beijing")


@seed_app.command("synthetic")
def seed_synthetic_command(
    tenant: Annotated[str, typer.Option(help="Code of the tenant to create or extend.")],
    districts: Annotated[int, typer.Option(min=1, max=500)] = 16,
    streets: Annotated[int, typer.Option(min=0, max=500, help="Streets per district.")] = 20,
    stations: Annotated[int, typer.Option(min=0, max=500, help="Stations per street.")] = 20,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same tree.")] = 1,
    name: Annotated[str | None, typer.Option(help="The city's name.")] = None,
    shapes: Annotated[bool, typer.Option(help="Draw synthetic boundaries for every node.")] = True,
    grid_cells: Annotated[bool, typer.Option(help="Also cut stations into grid cells.")] = True,
) -> None:
    """Generate a deterministic synthetic tenant of the given size (its shapes are synthetic too)."""
    if not TENANT_CODE_PATTERN.fullmatch(tenant):
        fail("a tenant code is 2 to 32 lowercase letters, digits, '-' or '_', starting with a letter.")
    with progress_bar(f"seeding {tenant}") as factory:
        result = run_with_database(
            lambda db: seed_synthetic(
                db,
                tenant,
                districts=districts,
                streets=streets,
                stations=stations,
                seed=seed,
                name=name,
                progress_factory=factory,
                shapes=shapes,
                grid_cells=grid_cells,
                shapes_progress_factory=shapes_bar(factory),
            )
        )
    print_seed(result, tenant)


@seed_app.command("requests")
def seed_requests_command(
    tenant: Annotated[str, typer.Option(help="Code of a tenant with grid cells.")],
    count: Annotated[int, typer.Option(min=1, max=50_000_000, help="Requests to add.")],
    days: Annotated[int, typer.Option(min=1, max=3650, help="Spread over the last N days.")] = 365,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same requests.")] = 1,
) -> None:
    """Add synthetic requests inside the tenant's grid cells (for heat maps and benchmarks)."""
    from deploy.seed_requests import NoGridCells, seed_synthetic_requests

    if not TENANT_CODE_PATTERN.fullmatch(tenant):
        fail("a tenant code is 2 to 32 lowercase letters, digits, '-' or '_', starting with a letter.")

    async def run(database: Database) -> tuple[bool, str]:
        if await database.tenant_id_for(tenant) is None:
            return False, f"there is no tenant {tenant!r}."
        with progress_bar(f"requests for {tenant}") as factory:
            try:
                report = await seed_synthetic_requests(
                    database, tenant, count, days, seed, progress=factory(count)
                )
            except NoGridCells:
                return False, f"tenant {tenant!r} has no grid cells; seed it with shapes first."
        return True, f"{report.inserted:,} requests added in {report.seconds:.1f} s"

    done, message = run_with_database(run)
    if not done:
        fail(message)
    out.print(message)


TTL_PATTERN = re.compile(r"^(\d{1,6})([smhd])$")
TTL_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_ttl(value: str) -> timedelta:
    match = TTL_PATTERN.fullmatch(value.strip())
    if not match:
        fail(f"--ttl {value!r} is not a duration such as 30m, 1h or 7d.")
    ttl = timedelta(**{TTL_UNITS[match.group(2)]: int(match.group(1))})
    if not timedelta(0) < ttl <= timedelta(days=366):
        fail("--ttl must be more than zero and at most a year.")
    return ttl


async def resolve_scope(database: Database, tenant: str, node: str | None) -> tuple[int, str] | str:
    """The tenant id and the scope path for a node code or path; a sentence when it cannot be resolved."""
    tenant_id = await database.tenant_id_for(tenant)
    if tenant_id is None:
        return f"tenant {tenant!r} does not exist."
    root = city_scope(tenant_id)
    if node is None:
        return tenant_id, root
    if SCOPE_PATTERN.fullmatch(node):
        if not scope_is_within(node, root):
            return f"scope {node} lies outside tenant {tenant!r}, whose paths start with {root}."
        return tenant_id, node
    async with unit_of_work(database, TenantContext.whole_tenant(tenant_id, "system:cli")) as session:
        for level in Level:
            found = await repository.by_code(session, level, tenant_id, node)
            if found is not None:
                return tenant_id, str(found.scope)
    return f"no district, street or station of {tenant!r} has the code {node!r}."


@app.command("token")
def token_command(
    tenant: Annotated[str, typer.Option(help="Tenant code, e.g. beijing.")],
    role: Annotated[list[str], typer.Option(help="Role; repeat for several.")],
    scope: Annotated[
        str | None, typer.Option(help="Node code or scope path; the whole tenant when omitted.")
    ] = None,
    ttl: Annotated[str, typer.Option(help="Lifetime, e.g. 30m, 1h, 7d.")] = "1h",
    sub: Annotated[str, typer.Option(help="Subject of the token.")] = "operator:cli",
) -> None:
    """Print a bearer token for operators and tests."""
    unknown = [r for r in role if r not in ROLE_NAMES]
    if unknown:
        fail(f"role {unknown[0]!r} is unknown; use one of {', '.join(sorted(ROLE_NAMES))}.")
    lifetime = parse_ttl(ttl)
    settings = load()
    _, path = run_or_fail(lambda db: resolve_scope(db, tenant, scope), settings)
    codec = runtime.token_codec(settings)
    try:
        token = codec.issue(
            sub=sub, tenant=tenant, scopes=[path], roles=[Role(r).value for r in role], ttl=lifetime
        )
    except ValueError as error:
        fail(f"{error}.")
    out.print(token, soft_wrap=True, highlight=False)


@audit_app.command("verify")
def audit_verify_command(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant; every tenant when omitted.")] = None,
) -> None:
    """Walk each tenant's audit chain and report the first broken link."""

    async def verify_all(database: Database) -> list[audit.VerifyReport] | str:
        codes = [tenant] if tenant else await database.tenant_codes()
        reports = []
        for code in codes:
            tenant_id = await database.tenant_id_for(code)
            if tenant_id is None:
                return f"tenant {code!r} does not exist."
            async with unit_of_work(
                database, TenantContext.whole_tenant(tenant_id, "system:audit")
            ) as session:
                reports.append(await audit.verify(session, tenant_id))
        return reports

    reports = run_or_fail(verify_all)
    broken = False
    for report in reports:
        if report.ok:
            out.print(f"tenant {report.tenant_id}: {report.checked} links intact")
        else:
            broken = True
            out.print(f"tenant {report.tenant_id}: link {report.first_broken_seq} is broken: {report.reason}")
    raise typer.Exit(1 if broken else 0)


@import_app.command("boundaries")
def import_boundaries_command(
    file: Annotated[Path, typer.Argument(help="A GeoJSON FeatureCollection.")],
    tenant: TenantCode,
    level: Annotated[str, typer.Option(help="district, street, station or grid.")],
    crs: Annotated[str, typer.Option(help="Coordinate system of the file: WGS84, GCJ02 or BD09.")] = "WGS84",
    match_on: Annotated[str, typer.Option(help="The feature property holding the node's code.")] = "code",
    repair: Annotated[
        bool, typer.Option(help="Repair invalid polygons (make_valid, structure) and report it.")
    ] = False,
    sticking_out: Annotated[
        float, typer.Option(help="Report children outside their parent by more m².")
    ] = 1000.0,
) -> None:
    """Set the boundaries of districts, streets, stations or grid cells from a GeoJSON file.

    Every feature is checked on its own; the report lists what was refused and why, and the command exits
    1 if anything was refused."""
    try:
        boundary_level = BoundaryLevel(level)
    except ValueError:
        fail(f"--level {level!r} is not one of district, street, station, grid.")
    try:
        system = parse_crs(crs)
    except ValueError as error:
        fail(str(error))
    if not file.is_file():
        fail(f"{file} is not a file.")
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
        features = features_of(document)
        srid = geojson_srid(document)
        if srid is not None and srid not in ACCEPTED_SRIDS:
            raise GeometryRefused(
                f"its crs names EPSG:{srid}; only WGS84 longitude/latitude is accepted", code="srid"
            )
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        fail(f"{file} is not GeoJSON text: {error}.")
    except (NotAFeatureCollection, GeometryRefused) as error:
        fail(f"{file}: {error}.")

    async def run(database: Database) -> ImportReport | str:
        tenant_id = await database.tenant_id_for(tenant)
        if tenant_id is None:
            return f"tenant {tenant!r} does not exist."
        actor = TenantContext.whole_tenant(tenant_id, "system:import")
        with progress_bar(f"importing {file.name}") as factory:
            options = ImportOptions(
                level=boundary_level,
                crs=system,
                match_on=match_on,
                repair=repair,
                srid=srid,
                sticking_out_m2=sticking_out,
                source=f"import:{file.name}",
            )
            return await import_boundaries(
                database, actor, features, options, progress=factory(len(features))
            )

    report = run_or_fail(run)
    print_import(report, len(features))
    raise typer.Exit(1 if report.refused else 0)


def print_import(report: ImportReport, total: int) -> None:
    refused = len(report.refused)
    out.print(f"{total} features: {report.stored} stored ({report.repaired} repaired), {refused} refused")
    for outcome in report.outcomes:
        if outcome.repairs:
            out.print(
                f"  repaired feature {outcome.index} ({outcome.code}): {'; '.join(outcome.repairs)}",
                highlight=False,
            )
    for outcome in report.refused:
        what = f"feature {outcome.index}" + (f" ({outcome.code})" if outcome.code else "")
        out.print(f"  refused {what}: {outcome.reason}", highlight=False, soft_wrap=True)
    for code, area in report.outside_parent:
        out.print(f"  {code} sticks out of its parent by {area:,.0f} m²", highlight=False, soft_wrap=True)
    for code, other, area in report.overlaps:
        out.print(f"  {code} overlaps {other} by {area:,.0f} m²", highlight=False, soft_wrap=True)


@import_app.command("requests")
def import_requests_command(
    file: Annotated[Path, typer.Argument(help="A 12345 hotline export (CSV).")],
    tenant: TenantCode,
    encoding: Annotated[str, typer.Option(help="auto, utf-8 or gb18030.")] = "auto",
    dry_run: Annotated[bool, typer.Option(help="Check and report, write nothing.")] = False,
) -> None:
    """Import hotline requests; each bad row is reported with its line, and the command exits 1 if any was
    refused. Importing the same file again adds nothing."""
    if encoding not in ENCODINGS:
        fail(f"--encoding {encoding!r} is not one of {', '.join(ENCODINGS)}.")
    if not file.is_file():
        fail(f"{file} is not a file.")
    data = file.read_bytes()

    async def run(database: Database) -> HotlineReport | str:
        tenant_id = await database.tenant_id_for(tenant)
        if tenant_id is None:
            return f"tenant {tenant!r} does not exist."
        try:
            with progress_bar(f"importing {file.name}") as factory:
                return await import_hotline(
                    database, tenant_id, data, encoding=encoding, dry_run=dry_run, progress=factory
                )
        except HotlineFileError as error:
            return f"{file}: {error}."

    report = run_or_fail(run)
    done = "would be imported" if report.dry_run else "imported"
    out.print(
        f"{len(report.outcomes)} rows ({report.encoding}): {report.imported} {done}, "
        f"{report.present} already present, {len(report.refused)} refused",
        highlight=False,
    )
    for outcome in report.refused:
        what = f"line {outcome.line}" + (f" ({outcome.external_id})" if outcome.external_id else "")
        out.print(f"  refused {what}: {outcome.reason}", highlight=False, soft_wrap=True)
    raise typer.Exit(1 if report.refused else 0)


@apikey_app.command("create")
def apikey_create_command(
    tenant: TenantCode,
    name: Annotated[str, typer.Option(help="A name for the key, unique in the tenant.")],
    scope: Annotated[
        str | None,
        typer.Option(help="Node code or scope path the key may read; the whole tenant if omitted."),
    ] = None,
) -> None:
    """Create an Open311 api key and print it (it is shown this once; only its hash is kept)."""

    async def run(database: Database) -> tuple[ApiKey, str] | str:
        resolved = await resolve_scope(database, tenant, scope)
        if isinstance(resolved, str):
            return resolved
        path = resolved[1]
        return await _in_tenant_cli(
            database,
            tenant,
            lambda session, actor: apikeys.create_api_key(session, actor.tenant_id, name, path),
        )

    key, plaintext = run_or_fail(run)
    console.print(f"api key {key.name!r} reads {key.scope}; it is shown only once:", highlight=False)
    out.print(plaintext, soft_wrap=True, highlight=False)


@apikey_app.command("revoke")
def apikey_revoke_command(
    tenant: TenantCode,
    name: Annotated[str, typer.Option(help="The key's name.")],
) -> None:
    """Refuse an api key from now on."""
    revoked = run_in_tenant(tenant, lambda session, actor: apikeys.revoke(session, actor.tenant_id, name))
    out.print(
        f"api key {revoked.name!r} revoked at {revoked.revoked_at:%Y-%m-%d %H:%M:%S %Z}", highlight=False
    )


@apikey_app.command("list")
def apikey_list_command(tenant: TenantCode) -> None:
    """The tenant's api keys (never the keys themselves)."""
    keys = run_in_tenant(tenant, lambda session, actor: apikeys.list_keys(session, actor.tenant_id))
    print_table(
        f"api keys of {tenant}",
        ("name", "scope", "created", "revoked"),
        (
            (
                key.name,
                str(key.scope),
                f"{key.created_at:%Y-%m-%d %H:%M}",
                f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "",
            )
            for key in keys
        ),
    )


@requests_app.command("relocate")
def requests_relocate_command(tenant: TenantCode) -> None:
    """Locate the manual-routing queue again (after importing grid cells) and route what a cell now covers."""
    from services.requests.relocate import RelocateReport, relocate_unrouted

    async def work(session: AsyncSession, actor: TenantContext) -> RelocateReport:
        return await relocate_unrouted(session, actor.tenant_id)

    report = run_in_tenant(tenant, work)
    routed, tried, outside = report.routed, report.tried, report.still_outside
    out.print(f"{routed} of {tried} queued requests routed; {outside} still outside every grid cell")


async def _in_tenant_cli(
    database: Database, tenant: str, work: Callable[[AsyncSession, TenantContext], Awaitable[T]]
) -> T | str:
    """Run `work` in a whole-tenant transaction; a sentence when the tenant is unknown or input is bad."""
    tenant_id = await database.tenant_id_for(tenant)
    if tenant_id is None:
        return f"tenant {tenant!r} does not exist."
    actor = TenantContext.whole_tenant(tenant_id, "system:cli")
    try:
        async with unit_of_work(database, actor) as session:
            return await work(session, actor)
    except DomainError as error:
        return f"{error.message.rstrip('.')}."


@webhook_app.command("add")
def webhook_add_command(
    tenant: TenantCode,
    name: Annotated[str, typer.Option(help="A name for the endpoint, unique in the tenant.")],
    url: Annotated[str, typer.Option(help="http:// or https:// address that receives the POSTs.")],
    kind: Annotated[
        list[str] | None, typer.Option(help="A notice kind to send; repeat for several; all when omitted.")
    ] = None,
    scope: Annotated[
        str | None,
        typer.Option(help="Node code or scope path: only notices inside it; the whole tenant if omitted."),
    ] = None,
    max_attempts: Annotated[int, typer.Option(min=1, max=50, help="Attempts before a dead letter.")] = (
        webhooks.DEFAULT_MAX_ATTEMPTS
    ),
    backoff: Annotated[
        int,
        typer.Option(
            min=1, max=webhooks.MAX_BACKOFF_SECONDS, help="Seconds before the 2nd attempt; doubles."
        ),
    ] = webhooks.DEFAULT_BACKOFF_SECONDS,
    personal_data: Annotated[
        bool, typer.Option("--personal-data", help="Send residents' phone numbers (an SMS gateway).")
    ] = False,
) -> None:
    """Add a webhook endpoint and print its signing secret (shown this once)."""
    try:
        webhooks.check_url(url)
    except InvalidInput as error:
        fail(f"--url: {error.message}.")

    async def run(database: Database) -> tuple[WebhookEndpoint, str] | str:
        resolved = await resolve_scope(database, tenant, scope)
        if isinstance(resolved, str):
            return resolved
        spec = webhooks.EndpointSpec(
            name=name,
            url=url,
            kinds=tuple(kind or ()),
            scope=resolved[1],
            max_attempts=max_attempts,
            backoff_seconds=backoff,
            personal_data=personal_data,
        )
        return await _in_tenant_cli(
            database, tenant, lambda session, actor: webhooks.create_endpoint(session, actor, spec)
        )

    endpoint, secret = run_or_fail(run)
    kinds = ", ".join(endpoint.kinds) or "every kind"
    console.print(
        f"webhook {endpoint.name!r} (id {endpoint.id}) gets {kinds} inside {endpoint.scope}; "
        "its signing secret is shown only once:",
        highlight=False,
        soft_wrap=True,
    )
    out.print(secret, soft_wrap=True, highlight=False)


@webhook_app.command("list")
def webhook_list_command(tenant: TenantCode) -> None:
    """The tenant's webhook endpoints (never their secrets)."""
    found = run_in_tenant(tenant, lambda session, actor: webhooks.endpoints(session, actor.tenant_id))
    print_table(
        f"webhook endpoints of {tenant}",
        ("id", "name", "url", "scope", "kinds", "active", "attempts", "back-off"),
        (
            (
                str(row.id),
                row.name,
                row.url,
                str(row.scope),
                ", ".join(row.kinds) or "all",
                "yes" if row.active else "no",
                str(row.max_attempts),
                f"{row.backoff_seconds} s",
            )
            for row in found
        ),
    )


@webhook_app.command("dead")
def webhook_dead_command(tenant: TenantCode, limit: NewestFirst = 50) -> None:
    """Dead letters: deliveries that failed every attempt, with the last error and HTTP status."""

    async def dead(
        session: AsyncSession, actor: TenantContext
    ) -> tuple[list[WebhookDelivery], int, dict[int, str]]:
        rows, total, _ = await webhooks.deliveries(session, actor.tenant_id, status="dead", first=limit)
        names = await webhooks.endpoint_names(session, actor.tenant_id, [row.endpoint_id for row in rows])
        return rows, total, names

    rows, total, names = run_in_tenant(tenant, dead)
    print_table(
        f"dead webhook deliveries of {tenant}: {total}",
        ("id", "endpoint", "kind", "source", "attempts", "last status", "last error", "dead since"),
        (
            (
                str(row.id),
                names.get(row.endpoint_id, str(row.endpoint_id)),
                row.kind,
                row.source,
                str(row.attempts),
                str(row.last_status or ""),
                (row.last_error or "")[:120],
                f"{row.dead_at:%Y-%m-%d %H:%M:%S}" if row.dead_at else "",
            )
            for row in rows
        ),
    )


@outbox_app.command("dead")
def outbox_dead_command(tenant: TenantCode, limit: NewestFirst = 50) -> None:
    """Dead tasks: sent as often as allowed and never done, with their last error. Exits 1 if any."""
    from services.outbox import service as outbox
    from services.outbox.models import OutboxMessage

    async def dead(session: AsyncSession, actor: TenantContext) -> tuple[list[OutboxMessage], int]:
        return await outbox.dead_messages(session, actor.tenant_id, limit)

    rows, total = run_in_tenant(tenant, dead)
    print_table(
        f"dead outbox tasks of {tenant}: {total}",
        ("id", "task", "scope", "attempts", "created", "last sent", "dead since", "last error"),
        (
            (
                str(row.id),
                row.task,
                str(row.scope),
                str(row.attempts),
                f"{row.created_at:%Y-%m-%d %H:%M:%S}",
                f"{row.sent_at:%Y-%m-%d %H:%M:%S}" if row.sent_at else "",
                f"{row.dead_at:%Y-%m-%d %H:%M:%S}" if row.dead_at else "",
                (row.last_error or "")[:160],
            )
            for row in rows
        ),
    )
    raise typer.Exit(1 if total else 0)


@outbox_app.command("retry")
def outbox_retry_command(
    tenant: TenantCode,
    ids: Annotated[
        list[int] | None, typer.Option("--id", help="A dead task's id; repeat for several.")
    ] = None,
    all_dead: Annotated[bool, typer.Option("--all", help="Every dead task of the tenant.")] = False,
) -> None:
    """Send dead tasks again, with a fresh count of attempts (the relay sends them on its next pass)."""
    from services.outbox import service as outbox

    if bool(ids) == all_dead:
        fail("give --id (one or more) or --all.")
    chosen = None if all_dead else ids
    revived = run_in_tenant(tenant, lambda session, actor: outbox.revive(session, actor.tenant_id, chosen))
    out.print(f"{revived} dead task(s) will be sent again")


@app.command("serve")
def serve_command(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535)] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the API (GraphQL at /graphql) with uvicorn."""
    import uvicorn

    settings = load()
    refuse_unsafe_production(settings)
    uvicorn.run(
        "deploy.asgi:app",
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level="info",
        proxy_headers=True,
    )


def worker_argv(concurrency: int, beat: bool, loglevel: str = "info") -> list[str]:
    argv = [sys.executable, "-m", "celery", "-A", "deploy.worker", "worker", f"--concurrency={concurrency}"]
    argv += [f"--loglevel={loglevel}", "--without-gossip", "--without-mingle"]
    schedule = LOCAL_DIR / "celerybeat-schedule"  # beat's own bookkeeping, kept out of the checkout
    return [*argv, "--beat", f"--schedule={schedule}"] if beat else argv


@app.command("worker")
def worker_command(
    concurrency: Annotated[int, typer.Option(min=1, max=64)] = 2,
    beat: Annotated[bool, typer.Option(help="Also run the beat scheduler (run exactly one).")] = False,
) -> None:
    """Run a Celery worker (and optionally beat)."""
    refuse_unsafe_production(load())
    os.execv(sys.executable, worker_argv(concurrency, beat))


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command("demo")
def demo_command(
    port: Annotated[int | None, typer.Option(min=1, max=65535)] = None,
) -> None:
    """Migrate, seed Beijing, then run the API and a worker until Ctrl-C."""
    settings = load()
    listen_port = port or settings.port
    if port_answers(settings.host, listen_port):
        fail(f"something already listens on {settings.host}:{listen_port}; stop it or pass --port.")
    migrations.upgrade(settings)
    with progress_bar("seeding beijing") as factory:
        result = run_with_database(lambda db: seed_demo(db, factory, shapes_bar(factory)), settings)
    print_seed(result, "beijing")
    token = runtime.token_codec(settings).issue(
        sub="operator:demo",
        tenant="beijing",
        scopes=[city_scope(result.tenant_id)],
        roles=[Role.CITY_ADMIN.value],
        ttl=timedelta(days=7),
    )
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    worker = subprocess.Popen(worker_argv(1, beat=True, loglevel="warning"))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "deploy.asgi:app",
            "--host",
            settings.host,
            "--port",
            str(listen_port),
        ]
    )
    try:
        if not wait_until_listening(server, local_url(settings.host, listen_port)):
            console.print(
                f"liaison: the API server did not start on {settings.host}:{listen_port} "
                "(see its messages above); is the port taken?",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1)
        out.print(f"\nGraphiQL: http://{settings.host}:{listen_port}/graphql")
        out.print(f"Admin token (city_admin of beijing, 7 days):\n{token}\n", soft_wrap=True, highlight=False)
        hint = sign_in_mutation("beijing", "admin", DEMO_PASSWORD)
        out.print(f"Or sign in: {hint}", soft_wrap=True, highlight=False)
        out.print("Ctrl-C stops the server and the worker.")
        while server.poll() is None and worker.poll() is None:
            try:
                server.wait(timeout=1)
            except subprocess.TimeoutExpired:
                continue
    except KeyboardInterrupt:
        pass
    finally:
        for process in (server, worker):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (server, worker):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def sign_in_mutation(tenant: str, username: str, password: str) -> str:
    """A login mutation that runs as printed (GraphiQL or curl): it selects the token or the error."""
    arguments = (
        f"tenant: {json.dumps(tenant)}, username: {json.dumps(username)}, password: {json.dumps(password)}"
    )
    return (
        f"mutation {{ login({arguments}) {{ __typename "
        "... on LoginPayload { token expiresAt } ... on Error { code message } } }"
    )


def _reachable(host: str) -> str:
    """The address this machine reaches a server on `host` at (a wildcard address: loopback)."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def local_url(host: str, port: int) -> str:
    target = _reachable(host)
    return f"http://[{target}]:{port}" if ":" in target else f"http://{target}:{port}"


def port_answers(host: str, port: int) -> bool:
    """Whether anything accepts TCP connections on host:port."""
    import socket

    try:
        with socket.create_connection((_reachable(host), port), timeout=2):
            return True
    except OSError:
        return False


def wait_until_listening(server: subprocess.Popen[bytes], base_url: str, timeout: float = 120.0) -> bool:
    """Poll /healthz until the server answers (True), exits or `timeout` seconds pass (False)."""
    import httpx

    deadline = time.monotonic() + timeout
    while server.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)
    return False


def main() -> None:
    """Entry point: usage errors become one sentence and exit code 2."""
    try:
        # Without standalone mode click returns the exit code of typer.Exit instead of raising it.
        code = app(standalone_mode=False)
    except typer.TyperException as error:  # usage errors: bad options, missing values, unknown commands
        console.print(f"liaison: {error.format_message()}", highlight=False, soft_wrap=True)
        sys.exit(int(getattr(error, "exit_code", 2)))
    except typer.Abort:
        sys.exit(130)
    except (OperationalError, psycopg.OperationalError) as error:
        reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
        console.print(
            f"liaison: cannot reach the database ({reason}); is `make services` running?", soft_wrap=True
        )
        sys.exit(1)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
