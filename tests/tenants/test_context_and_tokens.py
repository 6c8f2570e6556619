from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tenants.context import RESERVED_PRINCIPAL_KINDS, InvalidContext, TenantContext, is_reserved_principal
from tenants.identity import hash_password, verify_password
from tenants.tokens import TokenCodec, TokenError


@pytest.mark.parametrize(
    ("tenant_id", "scopes", "principal"),
    [
        (0, ("c0",), "user:1"),
        (True, ("c1",), "user:1"),
        (1, (), "user:1"),
        (1, ("c2",), "user:1"),  # another tenant's root
        (1, ("c1.d2'; RESET ROLE; --",), "user:1"),
        (1, ("c1.D2",), "user:1"),
        (1, ("c1",), "user:1'; DROP TABLE cities; --"),
        (1, ("c1",), "nobody"),
    ],
)
def test_context_refuses_anything_unsafe(tenant_id: int, scopes: tuple[str, ...], principal: str) -> None:
    with pytest.raises(InvalidContext):
        TenantContext(tenant_id, scopes, principal)


def test_context_refuses_an_odd_role_name() -> None:
    with pytest.raises(InvalidContext):
        TenantContext.whole_tenant(1, "user:1").set_local_statement("x; RESET ROLE")


def test_context_statement_sets_three_local_settings() -> None:
    statement = TenantContext(12, ("c12.d3", "c12.d4.s5"), "user:9").set_local_statement()
    assert statement == (
        "SET LOCAL app.tenant_id = '12'; SET LOCAL app.scopes = '{c12.d3,c12.d4.s5}'; "
        "SET LOCAL app.principal = 'user:9'"
    )


def test_passwords_are_argon2_and_verify() -> None:
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "correct horse")
    assert not verify_password(hashed, "wrong horse")
    assert not verify_password("not a hash", "x")


def issue(codec: TokenCodec, **overrides: object) -> str:
    args: dict[str, object] = {
        "sub": "user:1",
        "tenant": "alpha",
        "scopes": ["c1"],
        "roles": ["deputy"],
        "ttl": timedelta(minutes=5),
    }
    args.update(overrides)
    return codec.issue(**args)  # type: ignore[arg-type]


def encoded(secret: str, algorithm: str, claims: dict[str, object]) -> str:
    """A deputy's token encoded by hand, not by TokenCodec, with `claims` instead of the defaults."""
    payload: dict[str, object] = {
        "sub": "user:1",
        "tenant": "alpha",
        "scopes": ["c1"],
        "roles": ["deputy"],
        "exp": int((datetime.now(UTC) + timedelta(minutes=5)).timestamp()),
        "iss": "liaison-grid",
    }
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm=algorithm)


def signed(codec_secret: str, **claims: object) -> str:
    return encoded(codec_secret, "HS256", claims)


def test_hs256_round_trip_and_refusals() -> None:
    codec = TokenCodec(secret="s" * 40)
    claims = codec.verify(issue(codec))
    assert (claims.sub, claims.tenant, claims.scopes, claims.roles) == (
        "user:1",
        "alpha",
        ("c1",),
        ("deputy",),
    )
    expired = issue(codec, now=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(TokenError, match="expired"):
        codec.verify(expired)
    with pytest.raises(TokenError, match="signature"):
        TokenCodec(secret="t" * 40).verify(issue(codec))
    with pytest.raises(TokenError, match="malformed"):
        codec.verify("not-a-token")
    unsigned = encoded("", "none", {"roles": [], "exp": 2**40})
    with pytest.raises(TokenError, match="HS256"):
        codec.verify(unsigned)
    with pytest.raises(TokenError, match="roles"):
        codec.verify(issue(codec, roles=["emperor"]))
    with pytest.raises(TokenError, match="scope"):
        codec.verify(issue(codec, scopes=["../etc"]))


def test_rs256_with_a_public_key_only_verifier() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    signer = TokenCodec(algorithm="RS256", private_key=private_pem, public_key=public_pem)
    verifier = TokenCodec(algorithm="RS256", public_key=public_pem)
    assert verifier.verify(issue(signer)).sub == "user:1"
    # An HS256 token signed with the public key as the secret (algorithm confusion) is refused.
    confused = signed("x" * 40, roles=[], exp=2**40)
    with pytest.raises(TokenError):
        verifier.verify(confused)
    with pytest.raises(ValueError, match="public key"):
        verifier.issue(sub="user:1", tenant="a", scopes=["c1"], roles=[], ttl=timedelta(minutes=1))


@pytest.mark.parametrize("kind", sorted(RESERVED_PRINCIPAL_KINDS))
def test_reserved_subjects_are_refused_and_never_issued(kind: str) -> None:
    codec = TokenCodec(secret="s" * 40)
    with pytest.raises(TokenError, match="reserved"):
        codec.verify(signed("s" * 40, sub=f"{kind}:intake"))
    with pytest.raises(ValueError, match="reserved"):
        issue(codec, sub=f"{kind}:1")


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"roles": []}, "no role"),
        ({"exp": 10**30}, "exp"),
        ({"exp": 2**63}, "exp"),
        ({"exp": 253402300800}, "exp"),  # one second past 9999-12-31T23:59:59Z
        ({"exp": 4102444800.0}, "exp"),
        ({"exp": 4102444800.5}, "exp"),
        ({"exp": "4102444800"}, "exp"),
        ({"exp": True}, "expired"),
        ({"exp": float("inf")}, "malformed"),
        ({"tenant": "alpha\u0000"}, "tenant code"),
        ({"tenant": "Alpha"}, "tenant code"),
        ({"tenant": "x" * 33}, "tenant code"),
        ({"tenant": ["alpha"]}, "tenant code"),
        ({"sub": "user:1\u0000"}, "subject"),
        ({"scopes": ["c1\u0000"]}, "scope"),
        ({"roles": ["deputy\u0000"]}, "roles"),
    ],
)
def test_a_validly_signed_token_is_checked_claim_by_claim(claims: dict[str, object], reason: str) -> None:
    codec = TokenCodec(secret="s" * 40)
    with pytest.raises(TokenError, match=reason):
        codec.verify(signed("s" * 40, **claims))


def test_the_largest_exp_still_verifies() -> None:
    codec = TokenCodec(secret="s" * 40)
    claims = codec.verify(signed("s" * 40, exp=253402300799))
    assert claims.expires_at == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_reserved_kinds_are_the_ones_the_platform_uses() -> None:
    assert {"system", "phone", "channel", "apikey"} <= RESERVED_PRINCIPAL_KINDS
    assert is_reserved_principal("system:intake") and not is_reserved_principal("user:1")
    assert not is_reserved_principal("systems:1")
