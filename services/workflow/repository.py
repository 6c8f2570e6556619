"""The SQL every workflow's repository asks the same way of its instances' table: one instance (locked for a
step), and the newest instances in some states."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tenants.models import Base

Instance = TypeVar("Instance", bound=Base)


@dataclass(frozen=True, slots=True)
class Instances(Generic[Instance]):
    """The instances of one workflow: `model` is its mapped class (with tenant_id, id and state columns,
    which `Base` does not declare), listed latest `newest_by` first."""

    model: type[Instance]
    newest_by: Any

    @property
    def _columns(self) -> Any:
        return self.model

    async def get(
        self, session: AsyncSession, tenant_id: int, instance_id: int, *, lock: bool = False
    ) -> Instance | None:
        statement = select(self.model).where(
            self._columns.tenant_id == tenant_id, self._columns.id == instance_id
        )
        if lock:
            # Under RLS a locking read passes the update policy too: a row the caller may only read is absent.
            statement = statement.with_for_update()
        return await session.scalar(statement)

    async def listing(
        self, session: AsyncSession, tenant_id: int, *, states: Sequence[str] | None, limit: int
    ) -> list[Instance]:
        """The instances in `states` (in any, when none is named), the latest first."""
        statement = select(self.model).where(self._columns.tenant_id == tenant_id)
        if states:
            statement = statement.where(self._columns.state.in_(list(states)))
        order = (self.newest_by.desc(), self._columns.id.desc())
        return list((await session.scalars(statement.order_by(*order).limit(limit))).all())
