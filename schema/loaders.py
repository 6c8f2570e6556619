"""Per-request DataLoaders that gather the children of many parents in one statement, so a list of
meetings, cases or deliberations with their nested lists costs one statement per field, not one per row."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from schema.context import Info
from services.workflow.service import histories

# (session, parent ids) -> rows, each row naming its parent through `parent_of`.
LoadMany = Callable[[AsyncSession, list[int]], Awaitable[Sequence[Any]]]


def children(
    info: Info, name: str, load_many: LoadMany, parent_of: Callable[[Any], int]
) -> DataLoader[int, list[Any]]:
    """The request's loader `name`: parent id -> its rows, in the order `load_many` returns them."""
    loaders = info.context.domain_loaders
    found = loaders.get(name)
    if found is None:

        async def load(ids: list[int]) -> list[list[Any]]:
            async with info.context.db() as session:
                rows = await load_many(session, ids)
            grouped: dict[int, list[Any]] = defaultdict(list)
            for row in rows:
                grouped[parent_of(row)].append(row)
            return [grouped.get(parent, []) for parent in ids]

        found = loaders[name] = DataLoader(load_fn=load)
    assert isinstance(found, DataLoader)
    return found


def workflow_history(info: Info, tenant_id: int, workflow: str) -> DataLoader[int, list[Any]]:
    """The recorded steps of many instances of one workflow, one statement a page."""

    async def load_many(session: AsyncSession, ids: list[int]) -> Sequence[Any]:
        found = await histories(session, tenant_id, workflow, ids)
        return [event for subject in ids for event in found[subject]]

    return children(info, f"history:{workflow}", load_many, lambda event: int(event.subject_id))
