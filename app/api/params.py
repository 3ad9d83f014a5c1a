"""What every blueprint shares: parsing paths and query strings (errors in the one error
format) and answering with a schema's JSON."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response
from pydantic import BaseModel, ValidationError

from app.api.errors import ApiError
from app.api.schemas import FieldError

M = TypeVar("M", bound=BaseModel)
P = TypeVar("P")


def validate(model: type[M], data: dict[str, Any], where: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError.from_validation(exc, where) from None


def path_uuid(raw: str, field: str = "id") -> uuid.UUID:
    """A UUID from the path, or 422 naming ``field``."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError.invalid(
            [FieldError(field=field, rule="uuid_parsing", message="Input should be a valid UUID")],
            where="path",
        ) from None


def json_response(model: type[BaseModel], data: Any, status: int = 200) -> Response:
    """``data`` shaped by ``model`` (camelCase on the wire), so answers match the OpenAPI doc."""
    return Response(
        model.model_validate(data).model_dump_json(by_alias=True),
        status=status,
        mimetype="application/json",
    )


def query_cursor(raw: str | None, decode: Callable[[str], P]) -> P | None:
    """The position in a ``cursor`` query parameter, or 422 if this API did not issue it."""
    if raw is None:
        return None
    try:
        return decode(raw)
    except ValueError:
        raise ApiError.invalid(
            [FieldError(field="cursor", rule="cursor", message="not a cursor from this API")],
            where="query string",
        ) from None
