from __future__ import annotations

from datetime import datetime

import strawberry


@strawberry.type(description="The caller, as their token describes them.")
class Me:
    sub: str
    tenant: str
    roles: list[str]
    scopes: list[str]


@strawberry.type
class LoginPayload:
    token: str
    expires_at: datetime
    me: Me
