"""Expected failures as data: every error type implements Error and carries a machine-readable code."""

from __future__ import annotations

from enum import Enum

import strawberry

from services.errors import DomainError


@strawberry.enum
class ErrorCode(Enum):
    NOT_FOUND = "NOT_FOUND"
    OUT_OF_SCOPE = "OUT_OF_SCOPE"
    DUPLICATE_CODE = "DUPLICATE_CODE"
    INVALID_INPUT = "INVALID_INPUT"
    CONFLICT = "CONFLICT"
    FORBIDDEN = "FORBIDDEN"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    ILLEGAL_TRANSITION = "ILLEGAL_TRANSITION"


@strawberry.interface
class Error:
    code: ErrorCode
    message: str
    field: str | None = None


@strawberry.type
class NotFoundError(Error):
    pass


@strawberry.type
class OutOfScopeError(Error):
    pass


@strawberry.type
class DuplicateCodeError(Error):
    pass


@strawberry.type
class InvalidInputError(Error):
    pass


@strawberry.type
class ConflictError(Error):
    pass


@strawberry.type
class ForbiddenError(Error):
    pass


@strawberry.type
class InvalidCredentialsError(Error):
    pass


@strawberry.type
class IllegalTransitionError(Error):
    """A workflow step that its current state does not allow (accept a closed request, ...)."""


_BY_CODE: dict[str, type[Error]] = {
    "NOT_FOUND": NotFoundError,
    "OUT_OF_SCOPE": OutOfScopeError,
    "DUPLICATE_CODE": DuplicateCodeError,
    "INVALID_INPUT": InvalidInputError,
    "CONFLICT": ConflictError,
    "FORBIDDEN": ForbiddenError,
    "ILLEGAL_TRANSITION": IllegalTransitionError,
}


def from_domain(error: DomainError) -> Error:
    error_type = _BY_CODE.get(error.code, ConflictError)
    code = ErrorCode(error.code) if error.code in _BY_CODE else ErrorCode.CONFLICT
    return error_type(code=code, message=error.message, field=error.field)


def invalid_input(message: str, field: str | None = None) -> InvalidInputError:
    return InvalidInputError(code=ErrorCode.INVALID_INPUT, message=message, field=field)


# What a workflow step can answer besides its payload: the union members most mutations share.
STEP_ERRORS = (
    NotFoundError
    | OutOfScopeError
    | InvalidInputError
    | ConflictError
    | ForbiddenError
    | IllegalTransitionError
)
