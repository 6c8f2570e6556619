"""Relay pieces: opaque global ids, the Node interface, and connections with totalCount."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import strawberry
from graphql import GraphQLError

T = TypeVar("T")
MAX_PAGE_SIZE = 200
# Keys are bigint identities: a key outside 1..2**63-1 names nothing, and would overflow the column.
MAX_KEY = 2**63 - 1


class BadGlobalId(ValueError):
    pass


def encode_id(type_name: str, key: int) -> strawberry.ID:
    return strawberry.ID(base64.urlsafe_b64encode(f"{type_name}:{key}".encode()).decode().rstrip("="))


def decode_id(global_id: str, *expected: str) -> tuple[str, int]:
    not_ours = BadGlobalId(f"{global_id[:80]!r} is not an id this API issued")
    try:
        padded = global_id + "=" * (-len(global_id) % 4)
        type_name, _, key = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
    except (binascii.Error, UnicodeError, ValueError):
        raise not_ours from None
    # Only what encode_id writes: int() would also take " 7", "+7", "7_0" or "٧".
    number = int(key) if key.isascii() and key.isdigit() and len(key) <= 19 else 0
    if str(number) != key or not 0 < number <= MAX_KEY:
        raise not_ours
    if expected and type_name not in expected:
        raise BadGlobalId(f"{global_id[:80]!r} is a {type_name} id, not a {' or '.join(expected)} id")
    return type_name, number


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(f"after:{value}".encode()).decode()


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        kind, value = "", ""
    if kind != "after" or not value:
        raise ValueError(f"{cursor!r} is not a cursor from this list")
    return value


def check_page_size(first: int) -> int:
    if not 0 <= first <= MAX_PAGE_SIZE:
        raise ValueError(f"first must be between 0 and {MAX_PAGE_SIZE}")
    return first


def id_page(first: int, after: str | None) -> tuple[int, int | None]:
    """A page of a list keyed by id: its size, and the id it continues from (INVALID_INPUT otherwise)."""
    try:
        size = check_page_size(first)
        value = decode_cursor(after)
        if value is not None and not (value.isascii() and value.isdigit() and len(value) <= 18):
            raise ValueError(f"{after!r} is not a cursor from this list")
    except ValueError as error:
        raise GraphQLError(str(error), extensions={"code": "INVALID_INPUT", "field": "after"}) from None
    return size, int(value) if value is not None else None


@strawberry.interface(description="An object with a globally unique id, fetchable with node(id:).")
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    node: T
    sort_key: strawberry.Private[str]

    @strawberry.field
    def cursor(self) -> str:
        # Encoded only when a query asks for it: most lists are read without.
        return encode_cursor(self.sort_key)


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    total_count: int


def connection(
    rows: Sequence[Any],
    convert: Callable[[Any], T],
    *,
    total: int,
    has_next: bool,
    has_previous: bool,
    cursor_of: Callable[[Any], str],
) -> Connection[T]:
    edges = [Edge(node=convert(row), sort_key=cursor_of(row)) for row in rows]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=encode_cursor(edges[0].sort_key) if edges else None,
            end_cursor=encode_cursor(edges[-1].sort_key) if edges else None,
        ),
        total_count=total,
    )
