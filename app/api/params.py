"""What every blueprint shares: parsing paths and query strings (errors in the one error
format) and answering with a schema's JSON."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, send_from_directory
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


class _NotStrictJson(Exception):
    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.error = FieldError(field=field, rule=rule, message=message)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) == len(pairs):
        return found
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _NotStrictJson(key, "json_duplicate_key", "a key appears twice in one object")
        seen.add(key)
    raise AssertionError("unreachable: fewer keys than pairs means one repeats")


def _float(text: str) -> float:
    number = float(text)
    # Overflow parses as infinity and underflow as zero: either way not the number sent.
    mantissa = text.partition("e")[0].partition("E")[0]
    if math.isinf(number) or (number == 0 and mantissa.strip("-+0.")):
        raise _NotStrictJson("", "json_number_out_of_range", f"{text} is not a finite double")
    return number


def _int(text: str) -> int:
    # Bounded before int(): a number of thousands of digits is refused without converting it.
    number = int(text) if len(text) <= 20 else 2**64
    if not -(2**63) <= number < 2**63:
        raise _NotStrictJson(
            "", "json_number_out_of_range", "integers must fit in 64 bits (signed)"
        )
    return number


def _constant(text: str) -> Any:
    raise _NotStrictJson("", "json_invalid", f"{text} is not JSON")


_STRICT = json.JSONDecoder(
    object_pairs_hook=_object, parse_float=_float, parse_int=_int, parse_constant=_constant
)


def parse_body(model: type[M], raw: bytes) -> M:
    """``raw`` as ``model``, parsed strictly: NaN, Infinity, numbers that would not survive the
    trip exactly and keys given twice are 400 ``malformed_json`` (pydantic and orjson take the
    last of two keys silently). The strict pass only checks; pydantic's own JSON parser builds
    the model, so its errors read as before."""
    try:
        _STRICT.decode(raw.decode())
    except _NotStrictJson as refused:
        raise ApiError(
            400, "malformed_json", "The request body is not strict JSON.", [refused.error]
        ) from None
    except (ValueError, RecursionError):
        pass  # not JSON at all, or too deep: pydantic's parser names it below
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ApiError.from_validation(exc) from None


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
    except (ValueError, OverflowError):
        raise ApiError.invalid(
            [FieldError(field="cursor", rule="cursor", message="not a cursor from this API")],
            where="query string",
        ) from None


# The service's own pages (/inbox, /console) load only their own files and keep the key they are
# given in memory: nothing else may run, load, embed them or learn where they were opened from.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
        " img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def static_page(blueprint: Blueprint, filename: str) -> Response:
    """``filename`` from ``blueprint``'s static folder, with the pages' security headers."""
    response = send_from_directory(blueprint.static_folder or "", filename)
    response.headers.update(_PAGE_HEADERS)
    return response
