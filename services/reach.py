"""Stepping outside the caller's own transaction: the one place that decides whether a caller may act on a
row their own scopes do not let them write.

Some steps act for a caller on a row outside their territory: a resident rates their own request (their
transaction may read it but write nothing), a party from outside the station replies to a meeting, a
resident registers for a topic put to their community. Such a step runs in a context of its own, and
every such context is made here, by `acting_on`, after `reaches` has said yes. Row-level security alone
cannot protect a path that has widened its own scopes, so nothing else may widen them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from services.errors import NotFound
from tenants.context import TenantContext, scope_is_within


@dataclass(frozen=True, slots=True)
class Target:
    """The row a step acts on: where it lies, and the principals it belongs to wherever they are."""

    tenant_id: int
    scope: str
    owner: str | None = None
    # Principals named on the row (the parties of a meeting): each reaches the row as its owner does.
    participants: tuple[str, ...] = field(default=())
    # A row addressed to everyone below its scope (a topic put to a street's residents): reached from any
    # scope inside it, as the hierarchy policy lets such callers read it.
    addressed_below: bool = False


def reaches(caller: TenantContext, target: Target) -> bool:
    """Whether `caller` may act on `target`: same tenant, and the row lies inside one of the caller's
    scopes, or names the caller as its owner or a participant, or is addressed to a scope holding the
    caller's."""
    if caller.tenant_id != target.tenant_id:
        return False
    if any(scope_is_within(target.scope, own) for own in caller.scopes):
        return True
    if target.addressed_below and any(scope_is_within(own, target.scope) for own in caller.scopes):
        return True
    named = {target.owner, *target.participants} - {None}
    return caller.principal in named


def not_found(what: str, field: str | None = "id") -> NotFound:
    """The one answer for a row the caller may not reach, worded like a row that does not exist."""
    return NotFound(f"{what} does not exist or lies outside your scope", field=field)


def acting_on(
    caller: TenantContext,
    target: Target,
    *,
    what: str,
    field: str | None = "id",
    keep: Iterable[str] = (),
) -> TenantContext:
    """The context for one step on `target`: bounded to the row's own scope (plus the caller's scopes
    named in `keep`), as the caller. A caller that does not reach the row gets NOT_FOUND."""
    if not reaches(caller, target):
        raise not_found(what, field)
    scopes = tuple(dict.fromkeys((*keep, target.scope)))
    return TenantContext(target.tenant_id, scopes, caller.principal)
