"""JWT bearer tokens: sub, tenant, scopes, roles, exp (HS256 by default, RS256 with a key pair)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from tenants.context import (
    PRINCIPAL_PATTERN,
    TENANT_CODE_PATTERN,
    InvalidContext,
    is_reserved_principal,
    validate_scope,
)
from tenants.roles import ROLE_NAMES

ACCEPTED_ALGORITHMS = ("HS256", "RS256")
# The last whole second a datetime can hold.
MAX_EXP = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())


class TokenError(Exception):
    """A token that must be refused; the message is the one-line reason given to the caller."""


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    tenant: str
    scopes: tuple[str, ...]
    roles: tuple[str, ...]
    expires_at: datetime


class TokenCodec:
    def __init__(
        self,
        *,
        algorithm: str = "HS256",
        secret: str | None = None,
        private_key: str | None = None,
        public_key: str | None = None,
        issuer: str = "liaison-grid",
    ) -> None:
        if algorithm not in ACCEPTED_ALGORITHMS:
            raise ValueError(f"token algorithm must be one of {', '.join(ACCEPTED_ALGORITHMS)}")
        if algorithm == "HS256" and not secret:
            raise ValueError("HS256 tokens need a secret")
        if algorithm == "RS256" and not public_key:
            raise ValueError("RS256 tokens need a public key")
        self.algorithm = algorithm
        self._signing_key = secret if algorithm == "HS256" else private_key
        verifying_key = secret if algorithm == "HS256" else public_key
        assert verifying_key is not None
        self._verifying_key: str = verifying_key
        self.issuer = issuer

    def issue(
        self,
        *,
        sub: str,
        tenant: str,
        scopes: tuple[str, ...] | list[str],
        roles: tuple[str, ...] | list[str],
        ttl: timedelta,
        now: datetime | None = None,
    ) -> str:
        if self._signing_key is None:
            raise ValueError("this server holds only the public key and cannot issue RS256 tokens")
        if is_reserved_principal(sub):
            raise ValueError(f"the subject kind of {sub!r} is reserved for the platform itself")
        issued_at = now or datetime.now(UTC)
        payload = {
            "sub": sub,
            "tenant": tenant,
            "scopes": list(scopes),
            "roles": list(roles),
            "iat": issued_at,
            "exp": issued_at + ttl,
            "iss": self.issuer,
        }
        return jwt.encode(payload, self._signing_key, algorithm=self.algorithm)

    def verify(self, token: str) -> Claims:
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                self._verifying_key,
                algorithms=[self.algorithm],
                issuer=self.issuer,
                options={"require": ["sub", "tenant", "scopes", "roles", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired") from None
        except jwt.InvalidSignatureError:
            raise TokenError("the token's signature is not valid") from None
        except jwt.InvalidAlgorithmError:
            raise TokenError(f"the token is not signed with {self.algorithm}") from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenError(f"the token has no {error.claim!r} claim") from None
        except jwt.InvalidIssuerError:
            raise TokenError("the token was issued by someone else") from None
        except (jwt.PyJWTError, UnicodeError):
            raise TokenError("the token is malformed") from None
        return _claims_from(payload)


def _claims_from(payload: dict[str, Any]) -> Claims:
    sub, tenant, scopes, roles = payload["sub"], payload["tenant"], payload["scopes"], payload["roles"]
    if not isinstance(sub, str) or not PRINCIPAL_PATTERN.fullmatch(sub):
        raise TokenError("the token's subject is not of the form kind:name")
    if is_reserved_principal(sub):
        raise TokenError(f"the token's subject kind {sub.partition(':')[0]!r} is reserved")
    if not isinstance(tenant, str) or not TENANT_CODE_PATTERN.fullmatch(tenant):
        raise TokenError("the token's tenant is not a tenant code")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise TokenError("the token's scopes must be a non-empty list of hierarchy paths")
    try:
        for scope in scopes:
            validate_scope(scope)
    except InvalidContext as error:
        raise TokenError(f"the token's {error}") from None
    if not isinstance(roles, list) or not roles:
        raise TokenError("the token names no role")
    if not all(isinstance(r, str) and r in ROLE_NAMES for r in roles):
        raise TokenError("the token's roles are not all known roles")
    exp = payload["exp"]
    # PyJWT accepts anything int() takes ("123", 1.5, 1e300); a token of ours carries whole seconds.
    if type(exp) is not int or not 0 < exp <= MAX_EXP:
        raise TokenError("the token's exp is not a time in whole seconds since 1970")
    return Claims(
        sub=sub,
        tenant=tenant,
        scopes=tuple(scopes),
        roles=tuple(roles),
        expires_at=datetime.fromtimestamp(exp, UTC),
    )
