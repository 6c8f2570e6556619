"""Every bad token is a 401 with a one-line reason; a scope outside the tenant is a 403; never a 500."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from tests.helpers import Api, TenantInfo

ME = "{ me { sub tenant roles scopes } }"


async def test_missing_token_is_401_with_a_reason(api: Api) -> None:
    response = await api.post(ME)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Bearer not.a.token", "malformed"),
        ("Basic dXNlcjpwYXNz", "Bearer"),
        ("Bearer ", "Bearer"),
    ],
)
async def test_malformed_headers_are_401(api: Api, header: str, reason: str) -> None:
    response = await api.post(ME, headers={"Authorization": header})
    assert response.status_code == 401
    assert reason in response.text
    assert "\n" not in response.text.strip()


async def test_expired_wrongly_signed_none_and_unknown_tenant_are_401(api: Api, alpha: TenantInfo) -> None:
    codec = api.config.tokens
    expired = codec.issue(
        sub="user:1",
        tenant="alpha",
        scopes=[alpha.scope],
        roles=["deputy"],
        ttl=timedelta(minutes=1),
        now=datetime.now(UTC) - timedelta(hours=2),
    )
    # A city admin's claims, signed with a key the API does not have, or not signed at all.
    claims = {
        "sub": "user:1",
        "tenant": "alpha",
        "scopes": [alpha.scope],
        "roles": ["city_admin"],
        "exp": datetime.now(UTC) + timedelta(hours=1),
        "iss": "liaison-grid",
    }
    forged = jwt.encode(claims, "a-guessed-secret-that-is-long-enough", algorithm="HS256")
    unsigned = jwt.encode(claims, "", algorithm="none")
    unknown = api.token("atlantis", ["city_admin"], ["c1"])
    for token, reason in [
        (expired, "expired"),
        (forged, "signature"),
        (unsigned, "not signed with HS256"),
        (unknown, "does not exist"),
    ]:
        response = await api.post(ME, token=token)
        assert response.status_code == 401, token
        assert reason in response.text


async def test_a_scope_outside_the_token_tenant_is_403(api: Api, alpha: TenantInfo, beta: TenantInfo) -> None:
    token = api.token(alpha, ["city_admin"], [beta.scope])
    response = await api.post(ME, token=token)
    assert response.status_code == 403
    assert "outside tenant" in response.text


async def test_me_reflects_the_token(api: Api, alpha: TenantInfo) -> None:
    token = api.token(alpha, ["district_staff"], [f"{alpha.scope}.d1"], sub="user:42")
    data = await api.gql(ME, token=token)
    assert data["me"] == {
        "sub": "user:42",
        "tenant": "alpha",
        "roles": ["district_staff"],
        "scopes": [f"{alpha.scope}.d1"],
    }


async def test_login_issues_a_working_token_and_refuses_bad_passwords(api: Api, alpha: TenantInfo) -> None:
    login = """mutation($t: String!, $u: String!, $p: String!) {
      login(tenant: $t, username: $u, password: $p) {
        __typename ... on LoginPayload { token me { sub roles scopes } } ... on Error { code message } } }"""
    ok = (await api.gql(login, {"t": "alpha", "u": "admin", "p": "liaison-demo"}))["login"]
    assert ok["__typename"] == "LoginPayload"
    assert ok["me"]["roles"] == ["city_admin"] and ok["me"]["scopes"] == [alpha.scope]
    me = await api.gql(ME, token=ok["token"])
    assert me["me"]["sub"] == ok["me"]["sub"]
    for variables in (
        {"t": "alpha", "u": "admin", "p": "wrong"},
        {"t": "alpha", "u": "ghost", "p": "x"},
        {"t": "atlantis", "u": "admin", "p": "liaison-demo"},
    ):
        refused = (await api.gql(login, variables))["login"]
        assert refused == {
            "__typename": "InvalidCredentialsError",
            "code": "INVALID_CREDENTIALS",
            "message": "the tenant, username or password is wrong",
        }


async def test_graphql_over_http_get_and_media_type(api: Api, alpha: TenantInfo) -> None:
    token = api.token(alpha, ["deputy"])
    response = await api.client.get(
        "/graphql",
        params={"query": "{ me { tenant } }"},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/graphql-response+json"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/graphql-response+json")
    assert response.json() == {"data": {"me": {"tenant": "alpha"}}}
    broken = await api.client.post(
        "/graphql",
        json={"query": "{ me { "},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/graphql-response+json"},
    )
    assert broken.status_code == 400
    # GraphQL over HTTP: a request error has no data entry at all, only the errors.
    assert set(broken.json()) == {"errors"}
    assert broken.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    invalid = await api.client.post(
        "/graphql",
        json={"query": "{ me { nothingHere } }"},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/graphql-response+json"},
    )
    assert invalid.status_code == 400 and set(invalid.json()) == {"errors"}
    assert invalid.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    mutation_by_get = await api.client.get(
        "/graphql",
        params={"query": 'mutation { createDistrict(input: {code: "x", name: "x"}) { __typename } }'},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert mutation_by_get.status_code == 405


async def test_depth_and_alias_limits(api: Api, alpha: TenantInfo) -> None:
    token = api.token(alpha, ["city_admin"])
    deep = (
        "{ city { districts { edges { node { city { districts { edges { node {"
        " city { districts { edges { node {"
        " streets { edges { node { district { code } } } } } } } } } } } } } } } } }"
    )
    response = await api.post(deep, token=token)
    assert "exceeds maximum operation depth" in response.text
    aliases = "{ " + " ".join(f"a{i}: me {{ sub }}" for i in range(40)) + " }"
    response = await api.post(aliases, token=token)
    assert "aliases found" in response.text


async def test_graphiql_is_served_outside_production(api: Api) -> None:
    response = await api.client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()
