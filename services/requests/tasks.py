"""The requests domain's share of the worker: importing it registers the deadline handlers that
`timers.sweep` fires (response and resolution due soon / overdue, and the auto-close of unrated requests)."""

from __future__ import annotations

from services.requests import deadlines

__all__ = ["deadlines"]
