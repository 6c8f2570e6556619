"""The requests domain's share of the worker: its deadline handlers (fired by `timers.sweep`)."""

from __future__ import annotations

from services.requests import deadlines

HANDLED_KINDS = (
    *deadlines.RESPONSE_KINDS,
    *deadlines.RESOLUTION_KINDS,
    deadlines.AUTO_CLOSE,
)
