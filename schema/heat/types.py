"""Types of the heat-map and statistics queries."""

from __future__ import annotations

from enum import Enum

import strawberry

from geo.heat import Bucket, Dimension, Period, StatRow, SupervisionRow
from schema.relay import encode_id


@strawberry.enum(description="How requests are bucketed on a heat map.")
class HeatBucket(Enum):
    GRID_CELL = "GRID_CELL"
    H3 = "H3"

    @property
    def bucket(self) -> Bucket:
        return Bucket.GRID_CELL if self is HeatBucket.GRID_CELL else Bucket.H3


@strawberry.enum(description="What request statistics are grouped by.")
class StatDimension(Enum):
    CATEGORY = "CATEGORY"
    CHANNEL = "CHANNEL"
    STATE = "STATE"
    PERIOD = "PERIOD"
    DISTRICT = "DISTRICT"
    STREET = "STREET"
    SUPERVISION = "SUPERVISION"

    @property
    def dimension(self) -> Dimension:
        return Dimension(self.value.lower())


@strawberry.enum(description="The length of a PERIOD group, in the tenant's time zone.")
class StatPeriod(Enum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"

    @property
    def period(self) -> Period:
        return Period(self.value.lower())


@strawberry.type(description="One key of a statistics row: the value of one dimension, and its name.")
class StatKey:
    dimension: StatDimension
    value: str | None = strawberry.field(
        description="Category code, channel, state, period start (YYYY-MM-DD), district or street code, "
        "supervision colour; null for requests without one (an unrouted request has no district)."
    )
    name: str | None = strawberry.field(description="The category's, district's or street's name.")


@strawberry.type(name="StatRow", description="Requests of one group (诉求类型分布).")
class StatRowType:
    keys: list[StatKey]
    count: int
    overdue: int
    resolved: int = strawberry.field(description="Now resolved or closed.")
    rated: int
    satisfied: int = strawberry.field(description="Rated at or above the tenant's rating threshold.")
    average_rating: float | None

    @classmethod
    def of(cls, row: StatRow) -> StatRowType:
        return cls(
            keys=[
                StatKey(dimension=StatDimension(key.dimension.value.upper()), value=key.value, name=key.name)
                for key in row.keys
            ],
            count=row.count,
            overdue=row.overdue,
            resolved=row.resolved,
            rated=row.rated,
            satisfied=row.satisfied,
            average_rating=row.average_rating,
        )


_TYPE_NAMES = {"district": "District", "street": "Street", "station": "Station", "grid_cell": "GridCell"}


@strawberry.type(description="Supervision colours of the requests of one child node of a scope.")
class SupervisionCount:
    parent_scope: str
    level: str | None = strawberry.field(
        description="district, street, station or grid_cell; null for requests in no child (unrouted)."
    )
    node_id: strawberry.ID | None
    code: str | None
    name: str | None
    scope: str | None
    blue: int
    yellow: int
    red: int
    total: int

    @classmethod
    def of(cls, row: SupervisionRow) -> SupervisionCount:
        node_id = None
        if row.level is not None and row.node_id is not None:
            node_id = encode_id(_TYPE_NAMES[row.level], row.node_id)
        return cls(
            parent_scope=row.parent_scope,
            level=row.level,
            node_id=node_id,
            code=row.code,
            name=row.name,
            scope=row.scope,
            blue=row.blue,
            yellow=row.yellow,
            red=row.red,
            total=row.total,
        )
