"""Heat maps and statistics of requests, aggregated by PostgreSQL inside the caller's scope.

Every answer is one SQL statement in the caller's tenant-scoped transaction: row-level security
restricts the rows, and the statements also filter `tenant_id` and `scope <@ caller scopes` explicitly
(one shard on Citus, and the scope index for the planner). No request row reaches Python: only one row
per bucket or group does.

- `heatmap`: per grid cell (geometry from the cell's current boundary) or per H3 hexagon at a resolution
  in MIN_RESOLUTION..MAX_RESOLUTION. Requests store their H3 cell at resolution 12 (`h3_cell`, a bigint);
  the parent at resolution r is computed in SQL by bit operations (resolution bits 52-55 set to r, digits
  r+1..15 set to 7), and only the hexagons' outlines are computed in Python (h3.cell_to_boundary).
  Each bucket holds the total, counts by category and by state, overdue, rated, satisfied (rating at or
  above the tenant's threshold), average rating and the solved share of rated requests.
- `request_stats`: counts grouped by any of category, channel, state, period (day, week or month in the
  tenant's time zone), district, street and supervision colour.
- `supervision_summary`: blue, yellow and red requests per child node of each scope asked about.

The window is `[start, end)` on `submitted_at`. A node (city, district, street or station) narrows the
scope further: the rows are those inside both the caller's scopes and the node (its scope is read in the
same statement, under RLS, so a node the caller cannot see is reported as not found).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

import h3
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tenants.context import city_scope

MIN_RESOLUTION = 5
MAX_RESOLUTION = 12  # requests store their H3 cell at resolution 12
STORED_RESOLUTION = 12
MAX_WINDOW = timedelta(days=366)
MAX_FILTER_VALUES = 50
MAX_STAT_ROWS = 10_000
DEFAULT_RATING_THRESHOLD = 80  # satisfaction out of 100 (request_settings.rating_threshold defaults to it)
DEFAULT_TIMEZONE = "Asia/Shanghai"
STATES = (
    "submitted",
    "accepted",
    "assigned",
    "in_progress",
    "resolved",
    "closed",
    "returned",
    "reopened",
    "merged",
    "rejected",
)
RESOLVED_STATES = ("resolved", "closed")
SUPERVISION_COLOURS = ("blue", "yellow", "red")


class HeatInputError(ValueError):
    """Bad arguments; `field` names the argument."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NodeNotFound(LookupError):
    """The node asked about does not exist or is outside what the caller may see."""


class Bucket(StrEnum):
    GRID_CELL = "grid_cell"
    H3 = "h3"


class Dimension(StrEnum):
    CATEGORY = "category"
    CHANNEL = "channel"
    STATE = "state"
    PERIOD = "period"
    DISTRICT = "district"
    STREET = "street"
    SUPERVISION = "supervision"


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class NodeLevel(StrEnum):
    CITY = "city"
    DISTRICT = "district"
    STREET = "street"
    STATION = "station"


# Fixed table names by node level (never input).
_NODE_TABLES = {NodeLevel.DISTRICT: "districts", NodeLevel.STREET: "streets", NodeLevel.STATION: "stations"}


@dataclass(frozen=True, slots=True)
class NodeRef:
    level: NodeLevel
    id: int


@dataclass(frozen=True, slots=True)
class Window:
    """The caller, the time window `[start, end)`, and the optional filters every aggregation shares."""

    tenant_id: int
    scopes: tuple[str, ...]
    start: datetime
    end: datetime
    categories: tuple[str, ...] | None = None
    states: tuple[str, ...] | None = None
    node: NodeRef | None = None
    max_window: timedelta = field(default=MAX_WINDOW)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise HeatInputError("from and to need a time zone, e.g. 2026-11-25T00:00:00+08:00", "from")
        if self.start >= self.end:
            raise HeatInputError("from must come before to", "from")
        if self.end - self.start > self.max_window:
            raise HeatInputError(f"the window may span at most {self.max_window.days} days", "to")
        if not self.scopes:
            raise HeatInputError("the caller has no scope", None)
        if self.categories is not None and len(self.categories) > MAX_FILTER_VALUES:
            raise HeatInputError(f"at most {MAX_FILTER_VALUES} categories", "categories")
        if self.states is not None:
            if len(self.states) > MAX_FILTER_VALUES:
                raise HeatInputError(f"at most {MAX_FILTER_VALUES} states", "states")
            unknown = sorted(set(self.states) - set(STATES))
            if unknown:
                raise HeatInputError(
                    f"unknown state {unknown[0]!r}; the states are {', '.join(STATES)}", "states"
                )

    def parameters(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "scopes": list(self.scopes),
            "start": self.start,
            "end": self.end,
            "categories": list(self.categories) if self.categories is not None else None,
            "states": list(self.states) if self.states is not None else None,
        }
        values.update(_node_values(self.tenant_id, self.node))
        if self.narrowing == SCOPE:
            values["node_scope"] = self.scopes[0]
        return values

    @property
    def reads_node(self) -> bool:
        """Whether the statement reads the node's scope (and so can find it missing)."""
        return _node_table(self.node) is not None

    @property
    def narrowing(self) -> str:
        """How the statement narrows rows beyond the caller's scopes (see `_target`)."""
        table = _node_table(self.node)
        if table is not None:
            return table
        if len(self.scopes) == 1 and self.scopes[0] != city_scope(self.tenant_id):
            return SCOPE
        return NONE


# Narrowings: by a node's scope read in the statement (its table's name), by the caller's one scope (a
# bound ltree: the planner estimates it and the scope index can answer it), or not at all (a whole-city
# caller, or several scopes).
SCOPE = "scope"
NONE = "none"


def _node_table(node: NodeRef | None) -> str | None:
    """The table the node's scope is read from in the statement; None without one (or for the city,
    whose scope holds everything the caller may see)."""
    if node is None or node.level is NodeLevel.CITY:
        return None
    return _NODE_TABLES[node.level]


def _node_values(tenant_id: int, node: NodeRef | None) -> dict[str, Any]:
    values: dict[str, Any] = {"node_id": None, "node_scope": None}
    if node is not None:
        if node.level is NodeLevel.CITY:
            if node.id != tenant_id:
                raise NodeNotFound("no such city")
        else:
            values["node_id"] = node.id
    return values


def _target(narrowing: str) -> str:
    """The narrowing scope as a one-row CTE `target` (NULL when the statement does not narrow)."""
    if narrowing == NONE:
        return "target AS (SELECT CAST(NULL AS ltree) AS scope)"
    if narrowing == SCOPE:
        return "target AS (SELECT CAST(:node_scope AS ltree) AS scope)"
    if narrowing not in _NODE_TABLES.values():
        raise ValueError(f"unknown narrowing {narrowing!r}")
    return (
        f"target AS (SELECT scope FROM {narrowing} "  # noqa: S608 (a fixed table name)
        "WHERE tenant_id = :tenant_id AND id = :node_id AND retired_at IS NULL)"
    )


def _filters(alias: str, narrowing: str, *, categories: bool, states: bool) -> str:
    """The WHERE conditions shared by every aggregation (the window, the scope, the filters)."""
    r = alias
    parts = [f"{r}.tenant_id = :tenant_id", f"{r}.scope <@ CAST(:scopes AS ltree[])"]
    if narrowing == SCOPE:
        parts.append(f"{r}.scope <@ CAST(:node_scope AS ltree)")
    elif narrowing != NONE:
        parts.append(f"{r}.scope <@ (SELECT scope FROM target)")  # noqa: S608 (a fixed alias)
    parts += [f"{r}.submitted_at >= :start", f"{r}.submitted_at < :end"]
    if categories:
        parts.append(
            f"{r}.category_id IN (SELECT id FROM request_categories "  # noqa: S608 (a fixed alias)
            "WHERE tenant_id = :tenant_id AND code = ANY(CAST(:categories AS text[])))"
        )
    if states:
        parts.append(f"{r}.state = ANY(CAST(:states AS text[]))")
    return "\n    AND ".join(parts)


_SETTINGS = (
    "settings AS MATERIALIZED (SELECT coalesce(max(rating_threshold), :default_threshold) AS threshold, "
    "coalesce(max(timezone), :default_timezone) AS tz FROM request_settings WHERE tenant_id = :tenant_id)"
)

# The measures of a bucket or group (over rows `r` joined with `settings s`).
_MEASURES = """count(*) AS total,
    count(*) FILTER (WHERE r.overdue) AS overdue,
    count(*) FILTER (WHERE r.state IN ('resolved', 'closed')) AS resolved,
    count(r.rating) AS rated,
    count(*) FILTER (WHERE r.rating >= s.threshold) AS satisfied,
    round(avg(r.rating), 3)::float8 AS average_rating,
    count(*) FILTER (WHERE r.solved) AS solved,
    count(r.solved) AS solved_known"""


def _bucket_expression(bucket: Bucket) -> str:
    if bucket is Bucket.GRID_CELL:
        return "r.grid_cell_id"
    # The parent of the stored resolution-12 cell: resolution bits replaced, finer digits set to 7.
    return "((r.h3_cell & CAST(:h3_keep AS bigint)) | CAST(:h3_set AS bigint))"


@cache
def heat_statement(bucket: Bucket, narrowing: str, categories: bool, states: bool) -> str:
    """One statement: per bucket, the totals and the counts by category and by state (GROUPING SETS, one
    pass over the rows), as a JSON array of GeoJSON features (grid cells with their geometry)."""
    key = _bucket_expression(bucket)
    present = "r.grid_cell_id IS NOT NULL" if bucket is Bucket.GRID_CELL else "r.h3_cell IS NOT NULL"
    grouped = f"""
WITH {_target(narrowing)},
{_SETTINGS},
grouped AS (
  SELECT {key} AS bucket, r.category_id, r.state, GROUPING(r.category_id, r.state) AS kind,
    {_MEASURES}
  FROM requests r CROSS JOIN settings s
  WHERE {_filters("r", narrowing, categories=categories, states=states)}
    AND {present}
  GROUP BY GROUPING SETS (({key}), ({key}, r.category_id), ({key}, r.state))
),
buckets AS (
  SELECT g.bucket,
    max(g.total) FILTER (WHERE g.kind = 3) AS total,
    max(g.overdue) FILTER (WHERE g.kind = 3) AS overdue,
    max(g.resolved) FILTER (WHERE g.kind = 3) AS resolved,
    max(g.rated) FILTER (WHERE g.kind = 3) AS rated,
    max(g.satisfied) FILTER (WHERE g.kind = 3) AS satisfied,
    max(g.average_rating) FILTER (WHERE g.kind = 3) AS average_rating,
    max(g.solved) FILTER (WHERE g.kind = 3) AS solved,
    max(g.solved_known) FILTER (WHERE g.kind = 3) AS solved_known,
    coalesce(jsonb_object_agg(c.code, g.total) FILTER (WHERE g.kind = 1), '{{}}') AS categories,
    coalesce(jsonb_object_agg(g.state, g.total) FILTER (WHERE g.kind = 2), '{{}}') AS states
  FROM grouped g
  LEFT JOIN request_categories c ON g.kind = 1 AND c.tenant_id = :tenant_id AND c.id = g.category_id
  GROUP BY g.bucket
)"""  # noqa: S608 (fixed fragments; values are bound)
    properties = """'total', k.total, 'overdue', k.overdue, 'resolved', k.resolved, 'rated', k.rated,
      'satisfied', k.satisfied, 'averageRating', k.average_rating, 'solved', k.solved,
      'solvedShare', round(k.solved::numeric / nullif(k.solved_known, 0), 3)::float8,
      'categories', k.categories, 'states', k.states"""
    if bucket is Bucket.GRID_CELL:
        features = f"""
SELECT (SELECT count(*) FROM target WHERE scope IS NOT NULL) > 0 AS found,
  (SELECT coalesce(json_agg(json_build_object(
    'type', 'Feature', 'id', k.bucket,
    'geometry', ST_AsGeoJSON(ST_ForcePolygonCCW(b.geom), 7)::json,
    'properties', json_build_object('id', k.bucket, 'code', n.code, 'name', n.name, {properties})
  ) ORDER BY k.bucket), '[]')
  FROM buckets k
  LEFT JOIN grid_cells n ON n.tenant_id = :tenant_id AND n.id = k.bucket
  LEFT JOIN boundaries b ON b.tenant_id = :tenant_id AND b.level = 'grid' AND b.node_id = k.bucket
    AND b.valid_to IS NULL)::text AS features"""  # noqa: S608 (fixed fragments; values are bound)
    else:
        features = f"""
SELECT (SELECT count(*) FROM target WHERE scope IS NOT NULL) > 0 AS found,
  (SELECT coalesce(json_agg(json_build_object(
    'type', 'Feature', 'id', k.bucket, 'geometry', NULL,
    'properties', json_build_object('id', k.bucket, {properties})
  ) ORDER BY k.bucket), '[]')
  FROM buckets k)::text AS features"""  # noqa: S608 (fixed fragments; values are bound)
    return grouped + features


def h3_parent_masks(resolution: int) -> tuple[int, int]:
    """(keep, set) such that `(cell & keep) | set` is the parent at `resolution` of a finer cell."""
    keep = ~(0xF << 52)  # every bit but the resolution's (a negative int64, as PostgreSQL wants it)
    unused_digits = (1 << (3 * (15 - resolution))) - 1  # digits resolution+1..15 all 7
    return keep, (resolution << 52) | unused_digits


def h3_parent(cell: int, resolution: int) -> int:
    """The SQL expression's arithmetic in Python (for checks against h3.cell_to_parent)."""
    keep, bits = h3_parent_masks(resolution)
    return (cell & keep) | bits


def hexagon_geometry(cell: int) -> dict[str, Any]:
    """The hexagon (or pentagon) as an RFC 7946 Polygon: [lon, lat], counter-clockwise, closed."""
    ring = [[round(lng, 7), round(lat, 7)] for lat, lng in h3.cell_to_boundary(format(cell, "x"))]
    twice_area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1], strict=True))
    if twice_area < 0:
        ring.reverse()
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def check_resolution(resolution: int | None) -> int:
    if resolution is None:
        raise HeatInputError(
            f"H3 buckets need a resolution in {MIN_RESOLUTION}..{MAX_RESOLUTION}", "resolution"
        )
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise HeatInputError(
            f"resolution must lie in {MIN_RESOLUTION}..{MAX_RESOLUTION}, not {resolution}", "resolution"
        )
    return resolution


def heat_parameters(window: Window, bucket: Bucket, resolution: int | None) -> dict[str, Any]:
    values = window.parameters()
    values["default_threshold"] = DEFAULT_RATING_THRESHOLD
    values["default_timezone"] = DEFAULT_TIMEZONE
    if bucket is Bucket.H3:
        keep, bits = h3_parent_masks(check_resolution(resolution))
        values["h3_keep"], values["h3_set"] = keep, bits
    return values


async def heatmap(
    session: AsyncSession, window: Window, bucket: Bucket, resolution: int | None = None
) -> dict[str, Any]:
    """An RFC 7946 FeatureCollection, one feature per bucket that holds at least one request."""
    values = heat_parameters(window, bucket, resolution)
    statement = heat_statement(
        bucket, window.narrowing, window.categories is not None, window.states is not None
    )
    row = (await session.execute(text(statement), values)).one()
    if window.reads_node and not row.found:
        raise NodeNotFound("no such node in your scope")
    features: list[dict[str, Any]] = json.loads(row.features)
    if bucket is Bucket.H3:
        for feature in features:
            cell = int(feature["id"])
            code = format(cell, "x")
            feature["id"] = code
            feature["properties"]["id"] = code
            feature["properties"]["resolution"] = resolution
            feature["geometry"] = hexagon_geometry(cell)
    return {"type": "FeatureCollection", "features": features}


# Statistics.


def _period_key(period: Period) -> str:
    # The period is one of three fixed words, so it is written into the statement: the GROUP BY and the
    # ORDER BY then see the same expression.
    return f"to_char(date_trunc('{period.value}', r.submitted_at AT TIME ZONE s.tz), 'YYYY-MM-DD')"


# Each dimension: its key expression, its display name (or NULL), and the join it needs.
_DIMENSIONS: dict[Dimension, tuple[str, str, str]] = {
    Dimension.CATEGORY: (
        "c.code",
        "c.name",
        "LEFT JOIN request_categories c ON c.tenant_id = r.tenant_id AND c.id = r.category_id",
    ),
    Dimension.CHANNEL: ("r.channel", "NULL::text", ""),
    Dimension.STATE: ("r.state", "NULL::text", ""),
    Dimension.PERIOD: ("", "NULL::text", ""),
    Dimension.DISTRICT: (
        "d.code",
        "d.name",
        "LEFT JOIN districts d ON d.tenant_id = r.tenant_id AND d.id = r.district_id",
    ),
    Dimension.STREET: (
        "st.code",
        "st.name",
        "LEFT JOIN streets st ON st.tenant_id = r.tenant_id AND st.id = r.street_id",
    ),
    Dimension.SUPERVISION: ("r.supervision", "NULL::text", ""),
}


@dataclass(frozen=True, slots=True)
class StatKey:
    dimension: Dimension
    value: str | None
    name: str | None


@dataclass(frozen=True, slots=True)
class StatRow:
    keys: tuple[StatKey, ...]
    count: int
    overdue: int
    resolved: int
    rated: int
    satisfied: int
    average_rating: float | None


@cache
def stats_statement(
    dimensions: tuple[Dimension, ...],
    period: Period,
    narrowing: str,
    categories: bool,
    states: bool,
) -> str:
    keys = [
        (_period_key(period) if d is Dimension.PERIOD else value, name, join)
        for d in dimensions
        for value, name, join in [_DIMENSIONS[d]]
    ]
    selected = "".join(f"{value} AS k{i}, {name} AS n{i}, " for i, (value, name, _) in enumerate(keys))
    joins = "\n  ".join(join for _, _, join in keys if join)
    expressions = [part for value, name, _ in keys for part in (value, name)]
    group = f"GROUP BY {', '.join(expressions)}" if keys else ""
    order = f"row_number() OVER (ORDER BY {', '.join(expressions)})" if keys else "1"
    return f"""
WITH {_target(narrowing)},
{_SETTINGS}
SELECT (SELECT count(*) FROM target WHERE scope IS NOT NULL) > 0 AS found,
  (SELECT coalesce(json_agg(q ORDER BY q.ord), '[]') FROM (
    SELECT {selected}{_MEASURES}, {order} AS ord
    FROM requests r CROSS JOIN settings s
    {joins}
    WHERE {_filters("r", narrowing, categories=categories, states=states)}
    {group}
    LIMIT :limit
  ) q)::text AS rows
"""  # noqa: S608 (fixed fragments; values are bound)


async def request_stats(
    session: AsyncSession,
    window: Window,
    group_by: Sequence[Dimension],
    period: Period = Period.DAY,
    *,
    max_rows: int = MAX_STAT_ROWS,
) -> list[StatRow]:
    """Counts of the window's requests grouped by `group_by` (in that order; none: one total row).

    `resolved` counts requests now resolved or closed; `satisfied` those rated at or above the tenant's
    threshold; `averageRating` is over rated requests."""
    dimensions = tuple(group_by)
    if len(set(dimensions)) != len(dimensions):
        raise HeatInputError("groupBy names a dimension twice", "groupBy")
    values = window.parameters()
    values.update(
        default_threshold=DEFAULT_RATING_THRESHOLD, default_timezone=DEFAULT_TIMEZONE, limit=max_rows + 1
    )
    statement = stats_statement(
        dimensions, period, window.narrowing, window.categories is not None, window.states is not None
    )
    row = (await session.execute(text(statement), values)).one()
    if window.reads_node and not row.found:
        raise NodeNotFound("no such node in your scope")
    groups: list[dict[str, Any]] = json.loads(row.rows)
    if len(groups) > max_rows:
        raise HeatInputError(
            f"more than {max_rows} groups: shorten the window or group by fewer dimensions", "groupBy"
        )
    return [
        StatRow(
            keys=tuple(StatKey(d, g[f"k{i}"], g[f"n{i}"]) for i, d in enumerate(dimensions)),
            count=int(g["total"]),
            overdue=int(g["overdue"]),
            resolved=int(g["resolved"]),
            rated=int(g["rated"]),
            satisfied=int(g["satisfied"]),
            average_rating=g["average_rating"],
        )
        for g in groups
        if int(g["total"]) > 0
    ]


@dataclass(frozen=True, slots=True)
class SupervisionRow:
    parent_scope: str
    level: str | None  # district, street, station, grid_cell; None: requests in no child (unrouted)
    node_id: int | None
    code: str | None
    name: str | None
    scope: str | None
    blue: int
    yellow: int
    red: int
    total: int


# Children of each parent scope: the nodes one level below it (grid cells below a station). A request
# counts for the child its scope lies in (for grid cells, its grid_cell_id).
_SUPERVISION = """
WITH {target},
parents AS (
  SELECT DISTINCT p.parent FROM (
    SELECT unnest(CAST(:scopes AS ltree[])) AS parent WHERE (SELECT scope FROM target) IS NULL
    UNION ALL
    -- with a node: the node where it lies inside a caller scope, else the caller scopes inside it
    SELECT CASE WHEN t.scope <@ c.scope THEN t.scope ELSE c.scope END
    FROM target t CROSS JOIN unnest(CAST(:scopes AS ltree[])) AS c(scope)
    WHERE t.scope IS NOT NULL AND (t.scope <@ c.scope OR c.scope <@ t.scope)
  ) p
),
children AS (
  SELECT p.parent, 'district' AS level, n.id, n.code::text AS code, n.name::text AS name, n.scope
  FROM parents p JOIN districts n ON n.tenant_id = :tenant_id AND nlevel(p.parent) = 1
    AND n.scope <@ p.parent AND n.retired_at IS NULL
  UNION ALL
  SELECT p.parent, 'street', n.id, n.code, n.name, n.scope
  FROM parents p JOIN streets n ON n.tenant_id = :tenant_id AND nlevel(p.parent) = 2
    AND n.scope <@ p.parent AND n.retired_at IS NULL
  UNION ALL
  SELECT p.parent, 'station', n.id, n.code, n.name, n.scope
  FROM parents p JOIN stations n ON n.tenant_id = :tenant_id AND nlevel(p.parent) = 3
    AND n.scope <@ p.parent AND n.retired_at IS NULL
  UNION ALL
  SELECT p.parent, 'grid_cell', n.id, n.code, n.name, n.scope
  FROM parents p JOIN grid_cells n ON n.tenant_id = :tenant_id AND nlevel(p.parent) = 4
    AND n.scope <@ p.parent AND n.retired_at IS NULL
),
counted AS (
  SELECT p.parent,
    CASE WHEN nlevel(p.parent) >= 4 THEN
           CASE WHEN r.grid_cell_id IS NOT NULL THEN r.scope || text2ltree('g' || r.grid_cell_id) END
         WHEN nlevel(r.scope) > nlevel(p.parent) THEN subpath(r.scope, 0, nlevel(p.parent) + 1) END
      AS child,
    count(*) FILTER (WHERE r.supervision = 'blue') AS blue,
    count(*) FILTER (WHERE r.supervision = 'yellow') AS yellow,
    count(*) FILTER (WHERE r.supervision = 'red') AS red,
    count(*) AS total
  FROM requests r JOIN parents p ON r.scope <@ p.parent
  WHERE r.tenant_id = :tenant_id AND r.scope <@ CAST(:scopes AS ltree[])
    AND (CAST(:start AS timestamptz) IS NULL OR r.submitted_at >= CAST(:start AS timestamptz))
    AND (CAST(:end AS timestamptz) IS NULL OR r.submitted_at < CAST(:end AS timestamptz))
  GROUP BY 1, 2
),
result AS (
  SELECT ch.parent::text AS parent_scope, ch.level, ch.id, ch.code, ch.name, ch.scope::text AS scope,
    coalesce(k.blue, 0) AS blue, coalesce(k.yellow, 0) AS yellow, coalesce(k.red, 0) AS red,
    coalesce(k.total, 0) AS total
  FROM children ch LEFT JOIN counted k ON k.parent = ch.parent AND k.child = ch.scope
  UNION ALL
  -- requests in no child of their parent: unrouted, or in a retired node
  SELECT k.parent::text, NULL, NULL, NULL, NULL, NULL, k.blue, k.yellow, k.red, k.total
  FROM counted k
  WHERE NOT EXISTS (SELECT 1 FROM children ch WHERE ch.parent = k.parent AND ch.scope = k.child)
)
SELECT (SELECT count(*) FROM target WHERE scope IS NOT NULL) > 0 AS found,
  (SELECT coalesce(json_agg(x ORDER BY x.parent_scope, x.code NULLS LAST, x.id), '[]') FROM result x)::text
    AS rows
"""


@cache
def supervision_statement(narrowing: str) -> str:
    return _SUPERVISION.format(target=_target(narrowing))


async def supervision_summary(
    session: AsyncSession,
    tenant_id: int,
    scopes: Sequence[str],
    *,
    node: NodeRef | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[SupervisionRow]:
    """Blue, yellow and red requests per child of the caller's scopes (or of `node`, within them); the
    requests that lie in no child (unrouted, waiting at the city) come as a row without a node."""
    if (start is None) != (end is None):
        raise HeatInputError("give both from and to, or neither", "from" if start is None else "to")
    if start is not None and end is not None:
        Window(tenant_id, tuple(scopes), start, end)  # the same checks as the other aggregations
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "scopes": list(scopes),
        "start": start,
        "end": end,
        **_node_values(tenant_id, node),
    }
    row = (await session.execute(text(supervision_statement(_node_table(node) or NONE)), values)).one()
    if _node_table(node) is not None and not row.found:
        raise NodeNotFound("no such node in your scope")
    return [
        SupervisionRow(
            parent_scope=item["parent_scope"],
            level=item["level"],
            node_id=item["id"],
            code=item["code"],
            name=item["name"],
            scope=item["scope"],
            blue=int(item["blue"]),
            yellow=int(item["yellow"]),
            red=int(item["red"]),
            total=int(item["total"]),
        )
        for item in json.loads(row.rows)
    ]
