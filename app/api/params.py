"""Parsing what arrives in paths and query strings, with errors in the one error format."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from app.errors import ApiError
from app.schemas import FieldError

M = TypeVar("M", bound=BaseModel)


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
