"""Expected failures, as data: each carries a machine-readable code the API turns into a typed error."""

from __future__ import annotations


class DomainError(Exception):
    code = "DOMAIN_ERROR"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    code = "NOT_FOUND"


class OutOfScope(DomainError):
    code = "OUT_OF_SCOPE"


class DuplicateCode(DomainError):
    code = "DUPLICATE_CODE"


class InvalidInput(DomainError):
    code = "INVALID_INPUT"


class Conflict(DomainError):
    code = "CONFLICT"
