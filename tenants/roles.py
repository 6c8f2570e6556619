"""Roles a principal can hold at a node of the hierarchy."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    CITY_ADMIN = "city_admin"
    DISTRICT_STAFF = "district_staff"
    STREET_STAFF = "street_staff"
    STATION_LIAISON = "station_liaison"
    DEPUTY = "deputy"
    GRID_WORKER = "grid_worker"
    RESIDENT = "resident"


ROLE_NAMES = frozenset(role.value for role in Role)


def parse_role(name: str) -> Role:
    try:
        return Role(name)
    except ValueError:
        raise ValueError(f"unknown role {name!r}; expected one of {', '.join(sorted(ROLE_NAMES))}") from None
