"""The inbox and webhook API: each caller reads only their own inbox (row-level security is the guard),
city admins manage endpoints and send dead letters again."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from schema.relay import encode_id
from services.notifications.dispatch import notify
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tenants.principals import resident_scope
from tests.helpers import Api, TenantInfo, wait_for
from tests.services.test_notifications_channels import Receiver, serve

INBOX = """
query ($unreadOnly: Boolean! = false, $first: Int! = 20, $after: String) {
  myNotifications(unreadOnly: $unreadOnly, first: $first, after: $after) {
    totalCount unreadCount hasNextPage endCursor
    edges { cursor node { id kind title body payload scope personal readAt } }
  }
}
"""
MARK = """
mutation ($ids: [ID!]!) {
  markNotificationsRead(ids: $ids) {
    __typename
    ... on MarkNotificationsReadPayload { marked unreadCount }
    ... on Error { code message field }
  }
}
"""
CREATE = """
mutation ($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) {
    __typename
    ... on WebhookEndpointCreated {
      secret endpoint { id name url scope kinds active maxAttempts backoffSeconds }
    }
    ... on Error { code message field }
  }
}
"""
DELIVERIES = """
query ($status: DeliveryStatus) {
  webhookDeliveries(status: $status, first: 200) {
    totalCount
    nodes { id endpointName kind source status attempts lastStatus lastError deliveredAt deadAt }
  }
}
"""
RETRY = """
mutation ($id: ID!) {
  retryWebhookDelivery(id: $id) {
    __typename
    ... on WebhookDeliveryPayload { delivery { id status attempts deadAt } }
    ... on Error { code message field }
  }
}
"""
DISABLE = """
mutation ($id: ID!) {
  disableWebhookEndpoint(id: $id) {
    __typename
    ... on WebhookEndpointPayload { endpoint { name active } }
    ... on Error { code message }
  }
}
"""


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    yield from serve(Receiver())


def districts(owner_dsn: str, tenant: TenantInfo) -> list[tuple[int, str]]:
    with psycopg.connect(owner_dsn) as conn:
        return conn.execute(
            "SELECT id, scope::text FROM districts WHERE tenant_id = %s ORDER BY code", (tenant.tenant_id,)
        ).fetchall()


async def wait_for_sources(owner_dsn: str, tenant: TenantInfo, sources: list[str]) -> None:
    async def arrived() -> bool:
        with psycopg.connect(owner_dsn) as conn:
            found = conn.execute(
                "SELECT count(*) FROM notifications WHERE tenant_id = %s AND source = ANY(%s)",
                (tenant.tenant_id, sources),
            ).fetchone()
        return found == (len(sources),)

    await wait_for(arrived)


async def send(database: Database, tenant: TenantInfo, notices: list[dict[str, Any]]) -> None:
    async with unit_of_work(database, TenantContext.whole_tenant(tenant.tenant_id, "system:test")) as session:
        for notice in notices:
            await notify(session, tenant_id=tenant.tenant_id, **notice)


def kinds_of(inbox: dict[str, Any], prefix: str) -> list[str]:
    return [edge["node"]["title"] for edge in inbox["edges"] if edge["node"]["kind"].startswith(prefix)]


async def test_each_caller_reads_only_their_own_inbox(
    api: Api, database: Database, alpha: TenantInfo, owner_dsn: str, worker: subprocess.Popen[bytes]
) -> None:
    (_, district_a), (_, district_b) = districts(owner_dsn, alpha)[:2]
    station_a = f"{district_a}.s1.t1"
    notices = [
        {
            "scope": station_a,
            "kind": "inbox.reply",
            "title": "mine",
            "recipient": "user:7001",
            "source": "inbox:1",
        },
        {
            "scope": station_a,
            "kind": "inbox.reply",
            "title": "theirs",
            "recipient": "user:7002",
            "source": "inbox:2",
        },
        {"scope": district_a, "kind": "inbox.staff", "title": "staff A", "source": "inbox:3"},
        {"scope": district_b, "kind": "inbox.staff", "title": "staff B", "source": "inbox:4"},
    ]
    await send(database, alpha, notices)
    await wait_for_sources(owner_dsn, alpha, [str(n["source"]) for n in notices])

    resident = api.token(alpha, ["resident"], sub="user:7001")
    other_resident = api.token(alpha, ["resident"], sub="user:7002")
    staff_a = api.token(alpha, ["district_staff"], [district_a], sub="user:7101")
    staff_b = api.token(alpha, ["district_staff"], [district_b], sub="user:7102")
    admin = api.token(alpha, ["city_admin"], sub="user:7103")

    mine = (await api.gql(INBOX, token=resident))["myNotifications"]
    assert kinds_of(mine, "inbox.") == ["mine"] and mine["totalCount"] == 1 and mine["unreadCount"] == 1
    assert mine["edges"][0]["node"]["personal"] is True
    assert kinds_of((await api.gql(INBOX, token=other_resident))["myNotifications"], "inbox.") == ["theirs"]
    # Staff see the notices to the staff of their scopes, not residents' personal ones, not a sibling's.
    assert kinds_of((await api.gql(INBOX, token=staff_a))["myNotifications"], "inbox.") == ["staff A"]
    assert kinds_of((await api.gql(INBOX, token=staff_b))["myNotifications"], "inbox.") == ["staff B"]
    assert kinds_of((await api.gql(INBOX, {"first": 200}, token=admin))["myNotifications"], "inbox.") == [
        "staff B",
        "staff A",
    ]

    # Marking: only what is in your inbox; twice is fine.
    own_id = mine["edges"][0]["node"]["id"]
    theirs_id = (await api.gql(INBOX, token=other_resident))["myNotifications"]["edges"][0]["node"]["id"]
    refused = (await api.gql(MARK, {"ids": [theirs_id]}, token=resident))["markNotificationsRead"]
    assert refused["__typename"] == "NotFoundError" and refused["code"] == "NOT_FOUND"
    staff_a_id = (await api.gql(INBOX, token=staff_a))["myNotifications"]["edges"][0]["node"]["id"]
    across = (await api.gql(MARK, {"ids": [staff_a_id]}, token=staff_b))["markNotificationsRead"]
    assert across["code"] == "NOT_FOUND"
    marked = (await api.gql(MARK, {"ids": [own_id]}, token=resident))["markNotificationsRead"]
    assert marked == {"__typename": "MarkNotificationsReadPayload", "marked": 1, "unreadCount": 0}
    again = (await api.gql(MARK, {"ids": [own_id]}, token=resident))["markNotificationsRead"]
    assert again["marked"] == 0
    unread = (await api.gql(INBOX, {"unreadOnly": True}, token=resident))["myNotifications"]
    assert unread["edges"] == [] and unread["totalCount"] == 0
    read = (await api.gql(INBOX, token=resident))["myNotifications"]["edges"][0]["node"]
    assert read["readAt"] is not None
    other = (await api.gql(INBOX, token=other_resident))["myNotifications"]["edges"][0]["node"]
    assert other["readAt"] is None
    bad = (await api.gql(MARK, {"ids": ["nonsense"]}, token=resident))["markNotificationsRead"]
    assert bad["code"] == "INVALID_INPUT" and bad["field"] == "ids"


def test_row_level_security_keeps_inboxes_apart_for_raw_sql(
    app_dsn: str, owner_dsn: str, alpha: TenantInfo
) -> None:
    tenant_id = alpha.tenant_id
    with psycopg.connect(owner_dsn) as conn:
        conn.execute(
            "INSERT INTO notifications (tenant_id, scope, kind, title, source, owner_principal) VALUES "
            "(%s, %s::ltree, 'raw', 'for 8001', 'raw:1', 'user:8001'),"
            "(%s, %s::ltree, 'raw', 'for 8002', 'raw:2', 'user:8002'),"
            "(%s, %s::ltree, 'raw', 'for staff', 'raw:3', NULL)",
            (tenant_id, alpha.scope, tenant_id, alpha.scope, tenant_id, alpha.scope),
        )
    resident = TenantContext(tenant_id, (resident_scope(tenant_id),), "user:8001")
    with psycopg.connect(app_dsn) as conn:
        conn.execute(resident.set_local_statement())
        visible = conn.execute("SELECT title FROM notifications").fetchall()
        assert visible == [("for 8001",)]
        assert conn.execute("UPDATE notifications SET read_at = now() WHERE source <> 'raw:1'").rowcount == 0
        assert conn.execute("UPDATE notifications SET read_at = now() WHERE source = 'raw:1'").rowcount == 1
        # Marking read is the one change the app may make to a notice, for its owner too.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE notifications SET title = 'changed' WHERE source = 'raw:1'")
        conn.rollback()
        conn.execute(resident.set_local_statement())
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO notifications (tenant_id, scope, kind, title, source, owner_principal) "
                "VALUES (%s, %s::ltree, 'raw', 'forged', 'raw:4', 'user:8001')",
                (tenant_id, alpha.scope),
            )
        conn.rollback()


async def test_the_inbox_pages_newest_first(
    api: Api, database: Database, alpha: TenantInfo, owner_dsn: str, worker: subprocess.Popen[bytes]
) -> None:
    (_, district) = districts(owner_dsn, alpha)[2]
    station = f"{district}.s2.t1"
    notices = [
        {
            "scope": station,
            "kind": "page.n",
            "title": f"n{n}",
            "source": f"page:{n}",
            "recipient": "user:7301",
        }
        for n in range(5)
    ]
    await send(database, alpha, notices)
    await wait_for_sources(owner_dsn, alpha, [str(n["source"]) for n in notices])
    token = api.token(alpha, ["resident"], sub="user:7301")
    seen: list[str] = []
    after = None
    for _ in range(3):
        page = (await api.gql(INBOX, {"first": 2, "after": after}, token=token))["myNotifications"]
        seen += [edge["node"]["title"] for edge in page["edges"]]
        assert page["totalCount"] == 5
        after = page["endCursor"]
        if not page["hasNextPage"]:
            break
    assert seen == ["n4", "n3", "n2", "n1", "n0"]
    response = await api.post(INBOX, {"after": "bogus"}, token=token)
    assert response.json()["errors"][0]["extensions"]["code"] == "INVALID_INPUT"


async def test_only_city_admins_manage_webhooks(api: Api, alpha: TenantInfo, owner_dsn: str) -> None:
    admin = api.token(alpha, ["city_admin"])
    (_, district) = districts(owner_dsn, alpha)[0]
    staff = api.token(alpha, ["district_staff"], [district])
    base = {"name": "api-hook", "url": "https://example.org/in", "kinds": ["api.test"]}

    forbidden = (await api.gql(CREATE, {"input": base}, token=staff))["createWebhookEndpoint"]
    assert forbidden["__typename"] == "ForbiddenError" and forbidden["code"] == "FORBIDDEN"
    listing = await api.post("{ webhookEndpoints { name } }", token=staff)
    assert listing.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert listing.json()["data"] is None
    anonymous = await api.post("{ webhookEndpoints { name } }")
    assert anonymous.status_code == 401

    for url in ("ftp://example.org/in", "example.org/in", "javascript:alert(1)", "https://"):
        refused = (await api.gql(CREATE, {"input": {**base, "url": url}}, token=admin))[
            "createWebhookEndpoint"
        ]
        assert (refused["__typename"], refused["code"], refused["field"]) == (
            "InvalidInputError",
            "INVALID_INPUT",
            "url",
        ), url
    slow = (await api.gql(CREATE, {"input": {**base, "backoffSeconds": 3600}}, token=admin))[
        "createWebhookEndpoint"
    ]
    assert slow["code"] == "INVALID_INPUT" and slow["field"] == "backoffSeconds"
    bad_node = (await api.gql(CREATE, {"input": {**base, "scopeNodeId": "nope"}}, token=admin))[
        "createWebhookEndpoint"
    ]
    assert bad_node["code"] == "INVALID_INPUT" and bad_node["field"] == "scopeNodeId"

    district_id = (await api.gql("{ districts(first: 1) { edges { node { id scope } } } }", token=admin))[
        "districts"
    ]["edges"][0]["node"]
    created = (await api.gql(CREATE, {"input": {**base, "scopeNodeId": district_id["id"]}}, token=admin))[
        "createWebhookEndpoint"
    ]
    assert created["__typename"] == "WebhookEndpointCreated"
    assert created["secret"].startswith("whsec_")
    endpoint = created["endpoint"]
    assert endpoint["scope"] == district_id["scope"] and endpoint["kinds"] == ["api.test"]
    assert (endpoint["active"], endpoint["maxAttempts"], endpoint["backoffSeconds"]) == (True, 8, 10)
    duplicate = (await api.gql(CREATE, {"input": base}, token=admin))["createWebhookEndpoint"]
    assert duplicate["__typename"] == "ConflictError" and duplicate["field"] == "name"

    listed = await api.post("{ webhookEndpoints { id name url scope active } }", token=admin)
    assert created["secret"] not in listed.text
    assert {"id": endpoint["id"], "name": "api-hook", "url": "https://example.org/in"}.items() <= next(
        e for e in listed.json()["data"]["webhookEndpoints"] if e["name"] == "api-hook"
    ).items()
    disabled = (await api.gql(DISABLE, {"id": endpoint["id"]}, token=admin))["disableWebhookEndpoint"]
    assert disabled["endpoint"] == {"name": "api-hook", "active": False}
    unknown = encode_id("WebhookEndpoint", 987654321)
    missing = (await api.gql(DISABLE, {"id": unknown}, token=admin))["disableWebhookEndpoint"]
    assert missing["__typename"] == "NotFoundError"
    wrong_type = (await api.gql(DISABLE, {"id": district_id["id"]}, token=admin))["disableWebhookEndpoint"]
    assert wrong_type["__typename"] == "InvalidInputError"


async def test_a_dead_letter_is_sent_again_on_request(
    api: Api,
    database: Database,
    alpha: TenantInfo,
    worker: subprocess.Popen[bytes],
    receiver: Receiver,
) -> None:
    admin = api.token(alpha, ["city_admin"])
    url = receiver.plan("/retry", 500, 200)
    created = (
        await api.gql(
            CREATE,
            {"input": {"name": "retry-hook", "url": url, "kinds": ["retry.test"], "maxAttempts": 1}},
            token=admin,
        )
    )["createWebhookEndpoint"]
    assert created["__typename"] == "WebhookEndpointCreated", created
    await send(
        database, alpha, [{"scope": alpha.scope, "kind": "retry.test", "title": "r", "source": "retry:1"}]
    )

    async def letter(status: str) -> dict[str, Any] | None:
        nodes = (await api.gql(DELIVERIES, {"status": status}, token=admin))["webhookDeliveries"]["nodes"]
        return next((n for n in nodes if n["source"] == "retry:1"), None)

    dead = await wait_for(lambda: letter("DEAD"))
    assert dead is not None
    assert (dead["endpointName"], dead["attempts"], dead["lastStatus"]) == ("retry-hook", 1, 500)
    assert dead["lastError"].startswith("HTTP 500") and dead["deadAt"] is not None
    assert len(receiver.at("/retry")) == 1

    retried = (await api.gql(RETRY, {"id": dead["id"]}, token=admin))["retryWebhookDelivery"]
    assert retried["delivery"] == {"id": dead["id"], "status": "PENDING", "attempts": 0, "deadAt": None}
    delivered = await wait_for(lambda: letter("DELIVERED"))
    assert delivered is not None
    assert (delivered["attempts"], delivered["lastStatus"], delivered["lastError"]) == (1, 200, None)
    assert len(receiver.at("/retry")) == 2

    again = (await api.gql(RETRY, {"id": dead["id"]}, token=admin))["retryWebhookDelivery"]
    assert again["__typename"] == "ConflictError" and "delivered" in again["message"]
    staff = api.token(alpha, ["district_staff"], [f"{alpha.scope}.d1"])
    assert (await api.gql(RETRY, {"id": dead["id"]}, token=staff))["retryWebhookDelivery"][
        "code"
    ] == "FORBIDDEN"
    disabled = (await api.gql(DISABLE, {"id": created["endpoint"]["id"]}, token=admin))[
        "disableWebhookEndpoint"
    ]
    assert disabled["endpoint"]["active"] is False
