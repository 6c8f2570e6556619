"""Warnings as a street committee meets them: a deputy who does nothing is warned blue by the worker's weekly
job, yellow the next week with routing suspended; re-running a week changes nothing; the deputy
acknowledges and notes the rectification; district staff lift the suspension; a verified visit clears the
warning, which closes with its rectification item. Other streets neither run nor touch it; the city's
warning rule is data, checked when saved."""

from __future__ import annotations

import subprocess
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schema.relay import decode_id, encode_id
from services.celery_app import celery_app
from tenants.db import Database
from tests.helpers import Api, notices_asked, select_rows, wait_for
from tests.requests_city import City, build_city
from tests.schema.test_activities_api import REPORT, VERIFY, activity_input, linked_deputy, staff_of
from tests.schema.test_points_api import refused_code

FIELDS = "... on Error { code message field }"
EVALUATE = f"""
mutation($node: ID, $week: Date) {{ evaluateWarnings(nodeId: $node, week: $week) {{ __typename
  ... on WarningRunPayload {{ weekStart evaluated outcomes {{ outcome deputies }} }} {FIELDS} }} }}"""
WARNINGS = """
query($node: ID, $deputy: ID, $live: Boolean) {
  deputyWarnings(nodeId: $node, deputyId: $deputy, liveOnly: $live) { totalCount edges { node {
    id level state conditions firstWeek lastWeek rectificationNote acknowledgedBy closedAt } } } }"""
STEP = """
mutation($id: ID!{extra_type}) {{ {name}(id: $id{extra}) {{ __typename
  ... on WarningPayload {{ warning {{ state rectificationNote acknowledgedBy }} }} {fields} }} }}"""
SETTINGS = f"""
mutation($input: DutySettingsInput!) {{ setDutySettings(input: $input) {{ __typename
  ... on DutySettingsPayload {{ settings {{ warningMinActivities
    warningLevels {{ level conditions weeks }} }} }}
  {FIELDS} }} }}"""
BEIJING = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
async def city(database: Database) -> City:
    return await build_city(database, "warncity")


def _week(weeks_ago: int) -> date:
    today = datetime.now(BEIJING).date()
    return today - timedelta(days=today.weekday() + 7 * weeks_ago)


def _evaluations(owner_dsn: str, deputy_key: int) -> list[tuple[Any, ...]]:
    return select_rows(
        owner_dsn,
        "SELECT week_start, level, streak, conditions FROM deputy_evaluations WHERE deputy_id = %s "
        "ORDER BY week_start",
        deputy_key,
    )


def _step(name: str, extra: str = "", extra_type: str = "") -> str:
    return STEP.format(name=name, extra=extra, extra_type=extra_type, fields=FIELDS)


async def test_a_lagging_deputy_is_warned_suspended_and_cleared(
    api: Api, city: City, owner_dsn: str, worker: subprocess.Popen[bytes]
) -> None:
    deputy_id, deputy = await linked_deputy(api, city, owner_dsn, 0)
    key = decode_id(deputy_id)[1]
    # The record has been kept for two months, so the weeks below are weeks it was in office.
    select_rows(
        owner_dsn,
        "UPDATE deputies SET created_at = now() - interval '60 days' WHERE id = %s RETURNING id",
        key,
    )
    staff = staff_of(api, city, 0)
    first, second, third = _week(3), _week(2), _week(1)

    # The beat's job, on the worker: nothing done for two weeks → blue.
    celery_app.send_task("deputies.evaluate_warnings", kwargs={"week": first.isoformat()})

    async def evaluated() -> list[tuple[Any, ...]] | None:
        return _evaluations(owner_dsn, key) or None

    assert await wait_for(evaluated) == [(first, "blue", 1, ["low_activity"])]
    live = (await api.gql(WARNINGS, {"deputy": deputy_id}, staff))["deputyWarnings"]
    (warning,) = [e["node"] for e in live["edges"]]
    assert (warning["level"], warning["state"], warning["conditions"]) == ("BLUE", "OPEN", ["low_activity"])
    warning_key = decode_id(warning["id"])[1]
    told = await notices_asked(owner_dsn, city.tenant.tenant_id, f"warning:{warning_key}")
    assert {n["recipient"] for n in told} == {None, f"user:{_principal(owner_dsn, key)}"}
    items = select_rows(
        owner_dsn, "SELECT state FROM rectifications WHERE subject = %s", f"warning:{warning_key}"
    )
    assert items == [("open",)]

    # Again, by hand: the week is done, nothing changes.
    before = select_rows(owner_dsn, "SELECT count(*) FROM outbox WHERE tenant_id = %s", city.tenant.tenant_id)
    again = (await api.gql(EVALUATE, {"week": first.isoformat()}, staff))["evaluateWarnings"]
    assert (again["weekStart"], again["evaluated"]) == (first.isoformat(), 0), again
    after = select_rows(owner_dsn, "SELECT count(*) FROM outbox WHERE tenant_id = %s", city.tenant.tenant_id)
    assert before == after and len(_evaluations(owner_dsn, key)) == 1

    # A second lagging week: yellow, and automatic routing suspended.
    run = (await api.gql(EVALUATE, {"week": second.isoformat()}, staff))["evaluateWarnings"]
    assert {"outcome": "blue to yellow, routing suspended", "deputies": 1} in run["outcomes"], run
    ((suspended,),) = select_rows(owner_dsn, "SELECT routing_suspended_at FROM deputies WHERE id = %s", key)
    assert suspended is not None

    # Another district's staff neither run it nor touch the warning.
    other = next(
        k for k, s in enumerate(city.stations) if s.district_scope != city.stations[0].district_scope
    )
    foreign = api.token(city.tenant, ["street_staff"], [city.stations[other].street_scope], sub="user:7550")
    station = str(encode_id("Station", city.stations[0].id))
    refused = (await api.gql(EVALUATE, {"node": station, "week": third.isoformat()}, foreign))[
        "evaluateWarnings"
    ]
    assert refused["code"] == "NOT_FOUND"
    theirs = (await api.gql(EVALUATE, {"week": third.isoformat()}, foreign))["evaluateWarnings"]
    assert theirs["__typename"] == "WarningRunPayload" and len(_evaluations(owner_dsn, key)) == 2
    ack = _step("acknowledgeWarning")
    assert (await api.gql(ack, {"id": warning["id"]}, foreign))["acknowledgeWarning"]["code"] == "NOT_FOUND"
    assert (await api.gql(WARNINGS, {"deputy": deputy_id}, foreign))["deputyWarnings"]["totalCount"] == 0

    # The deputy, from their phone: seen, and what they are doing about it.
    seen = (await api.gql(ack, {"id": warning["id"]}, deputy))["acknowledgeWarning"]
    assert seen["warning"]["state"] == "ACKNOWLEDGED", seen
    note = _step("noteWarningRectification", ", note: $note", ", $note: String!")
    empty = (await api.gql(note, {"id": warning["id"], "note": " "}, deputy))["noteWarningRectification"]
    assert empty["field"] == "note"
    noted = (await api.gql(note, {"id": warning["id"], "note": "每周走访两户"}, deputy))[
        "noteWarningRectification"
    ]
    assert noted["warning"]["rectificationNote"] == "每周走访两户"

    district = api.token(city.tenant, ["district_staff"], [city.stations[0].district_scope], sub="user:7551")
    lifted = await api.gql(
        "mutation($d: ID!) { setDeputyRoutingSuspended(deputyId: $d, suspended: false) { __typename } }",
        {"d": deputy_id},
        district,
    )
    assert lifted["setDeputyRoutingSuspended"]["__typename"] == "DeputyPayload"

    # A verified visit in the third week clears it: closed, with its rectification item.
    starts = datetime.combine(third + timedelta(days=2), time(10), tzinfo=BEIJING)
    reported = await api.gql(
        REPORT, {"input": activity_input(city, 0, deputy_id, startsAt=starts.isoformat())}, deputy
    )
    activity = reported["reportActivity"]["activity"]["id"]
    verified = await api.gql(VERIFY, {"id": activity, "verdict": "VERIFIED"}, staff)
    assert verified["verifyActivity"]["activity"]["state"] == "VERIFIED"
    cleared = (await api.gql(EVALUATE, {"week": third.isoformat()}, staff))["evaluateWarnings"]
    assert cleared["outcomes"] == [{"outcome": "closed", "deputies": 1}], cleared
    history = (await api.gql(WARNINGS, {"deputy": deputy_id, "live": False}, staff))["deputyWarnings"]
    (closed,) = [e["node"] for e in history["edges"]]
    assert closed["state"] == "CLOSED" and closed["closedAt"] is not None
    assert select_rows(
        owner_dsn, "SELECT state, note FROM rectifications WHERE subject = %s", f"warning:{warning_key}"
    ) == [("closed", "每周走访两户")]
    weeks = (
        await api.gql(
            "query($d: ID!) { deputyEvaluations(deputyId: $d) { weekStart level streak "
            "activitiesThisWeek } }",
            {"d": deputy_id},
            deputy,
        )
    )["deputyEvaluations"]
    assert [(w["level"], w["streak"], w["activitiesThisWeek"]) for w in weeks] == [
        (None, 0, 1),
        ("YELLOW", 2, 0),
        ("BLUE", 1, 0),
    ]
    unfinished = (await api.gql(EVALUATE, {"week": _week(0).isoformat()}, staff))["evaluateWarnings"]
    assert (unfinished["code"], unfinished["field"]) == ("INVALID_INPUT", "week")


def _principal(owner_dsn: str, key: int) -> str:
    ((principal,),) = select_rows(owner_dsn, "SELECT principal FROM deputies WHERE id = %s", key)
    return str(principal).removeprefix("user:")


async def test_the_warning_rule_is_the_citys_data_checked_when_saved(api: Api, city: City) -> None:
    admin = api.token(city.tenant, ["city_admin"])
    easier_red = [
        {"level": "RED", "conditions": 1, "weeks": 1},
        {"level": "YELLOW", "conditions": 2, "weeks": 2},
    ]
    bad = (await api.gql(SETTINGS, {"input": {"warningLevels": easier_red}}, admin))["setDutySettings"]
    assert (bad["code"], bad["field"]) == ("INVALID_INPUT", "warningLevels")
    twice = [{"level": "BLUE", "conditions": 1, "weeks": 1}] * 2
    assert (await api.gql(SETTINGS, {"input": {"warningLevels": twice}}, admin))["setDutySettings"][
        "code"
    ] == ("INVALID_INPUT")
    out_of_range = (await api.gql(SETTINGS, {"input": {"warningMinActivities": 0}}, admin))["setDutySettings"]
    assert out_of_range["field"] == "warningMinActivities"
    nothing = (await api.gql(SETTINGS, {"input": {}}, admin))["setDutySettings"]
    assert nothing["code"] == "INVALID_INPUT"
    street = staff_of(api, city, 1)
    assert await refused_code(api, SETTINGS, {"input": {"warningMinActivities": 2}}, street) == "FORBIDDEN"
    levels = [
        {"level": "RED", "conditions": 3, "weeks": 3},
        {"level": "YELLOW", "conditions": 2, "weeks": 2},
        {"level": "BLUE", "conditions": 1, "weeks": 1},
    ]
    saved = (await api.gql(SETTINGS, {"input": {"warningMinActivities": 2, "warningLevels": levels}}, admin))[
        "setDutySettings"
    ]
    assert saved["settings"]["warningMinActivities"] == 2
    assert saved["settings"]["warningLevels"][0] == {"level": "RED", "conditions": 3, "weeks": 3}
    read = (await api.gql("{ dutySettings { warningMinActivities announceDays } }", token=street))[
        "dutySettings"
    ]
    assert read == {"warningMinActivities": 2, "announceDays": 3}


async def test_the_archive_holds_the_deputys_year_and_exports_csv(
    api: Api, city: City, owner_dsn: str
) -> None:
    deputy_id, deputy = await linked_deputy(api, city, owner_dsn, 2)
    staff = staff_of(api, city, 2)
    reported = await api.gql(
        REPORT, {"input": activity_input(city, 2, deputy_id, title='=HYPERLINK("x")')}, deputy
    )
    activity = reported["reportActivity"]["activity"]["id"]
    await api.gql(VERIFY, {"id": activity, "verdict": "VERIFIED"}, staff)
    query = (
        "query($d: ID!) { deputyArchive(deputyId: $d) { deputy { id } csv"
        " lines { section id kind state title points } } }"
    )
    mine = (await api.gql(query, {"d": deputy_id}, deputy))["deputyArchive"]
    sections = {(line["section"], line["id"]) for line in mine["lines"]}
    assert ("activity", activity) in sections
    assert any(line["section"] == "points" and line["points"] > 0 for line in mine["lines"])
    assert mine["csv"].startswith("\ufeff类别,编号,时间")
    lines = mine["csv"].splitlines()
    assert lines[1].startswith("section,id,at,kind") and len(lines) == 2 + len(mine["lines"])
    # A title a spreadsheet would run as a formula stays text.
    assert "'=HYPERLINK" in mine["csv"] and ",=HYPERLINK" not in mine["csv"]
    assert (await api.gql(query, {"d": deputy_id}, staff))["deputyArchive"]["lines"] == mine["lines"]
    other = next(
        k for k, s in enumerate(city.stations) if s.district_scope != city.stations[2].district_scope
    )
    foreign = api.token(city.tenant, ["street_staff"], [city.stations[other].street_scope], sub="user:7560")
    assert (await api.gql(query, {"d": deputy_id}, foreign))["deputyArchive"] is None
