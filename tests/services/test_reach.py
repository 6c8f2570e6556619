"""The one check every step outside the caller's own transaction goes through (services/reach.py)."""

from __future__ import annotations

import pytest

from services.errors import NotFound
from services.reach import Target, acting_on, reaches
from tenants.context import TenantContext

DISTRICT = TenantContext(1, ("c1.d13",), "user:7")
STATION = "c1.d13.s2.t4"
SIBLING_STATION = "c1.d14.s1.t1"
RESIDENT = TenantContext(1, ("c1.r0",), "user:42")


@pytest.mark.parametrize(
    ("caller", "target", "expected"),
    [
        (DISTRICT, Target(1, STATION), True),
        (DISTRICT, Target(1, "c1.d13"), True),
        (DISTRICT, Target(1, SIBLING_STATION), False),
        (DISTRICT, Target(1, "c1"), False),  # the city lies above the caller, not inside
        (DISTRICT, Target(1, "c1.d130.s1"), False),  # a prefix of the label is not an ancestor
        (DISTRICT, Target(2, "c2.d13.s2"), False),
        (DISTRICT, Target(2, "c2.d13", owner="user:7"), False),  # owning a row of another tenant is nothing
        (RESIDENT, Target(1, SIBLING_STATION, owner="user:42"), True),
        (RESIDENT, Target(1, SIBLING_STATION, owner="user:43"), False),
        (RESIDENT, Target(1, SIBLING_STATION), False),
        (RESIDENT, Target(1, STATION, participants=("user:9", "user:42")), True),
        (RESIDENT, Target(1, STATION, participants=("user:9",)), False),
        (TenantContext(1, (f"{STATION}.r0",), "user:42"), Target(1, STATION, addressed_below=True), True),
        (TenantContext(1, (f"{STATION}.r0",), "user:42"), Target(1, "c1.d13.s2", addressed_below=True), True),
        (
            TenantContext(1, (f"{SIBLING_STATION}.r0",), "user:42"),
            Target(1, STATION, addressed_below=True),
            False,
        ),
        (TenantContext(1, (f"{STATION}.r0",), "user:42"), Target(1, STATION), False),
    ],
)
def test_reaches(caller: TenantContext, target: Target, expected: bool) -> None:
    assert reaches(caller, target) is expected


def test_acting_on_is_bounded_to_the_row_and_keeps_the_caller() -> None:
    context = acting_on(RESIDENT, Target(1, SIBLING_STATION, owner="user:42"), what="request 5")
    assert (context.tenant_id, context.scopes, context.principal) == (1, (SIBLING_STATION,), "user:42")
    kept = acting_on(DISTRICT, Target(1, STATION), what="meeting 3", keep=DISTRICT.scopes)
    assert kept.scopes == ("c1.d13", STATION)


def test_outside_the_reach_the_answer_is_the_answer_for_a_missing_row() -> None:
    with pytest.raises(NotFound) as refused:
        acting_on(DISTRICT, Target(1, SIBLING_STATION), what="request 5")
    assert refused.value.message == "request 5 does not exist or lies outside your scope"
    assert refused.value.field == "id"
