"""The one error shape of the API: ``{"error": {"code", "message", "fields": [...]}}``."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from flask import Flask, Response
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from app.api.schemas import ErrorBody, ErrorDetail, FieldError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the caller can act on; rendered as the error document with ``status``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields)
        self.headers = headers or {}

    @classmethod
    def invalid(cls, fields: Sequence[FieldError], where: str = "request body") -> ApiError:
        return cls(422, "validation_failed", f"The {where} is invalid.", fields)

    @classmethod
    def from_validation(cls, exc: ValidationError, where: str = "request body") -> ApiError:
        fields = [
            FieldError(field=_location(err["loc"]), rule=err["type"], message=err["msg"])
            for err in exc.errors(include_url=False, include_input=False)
        ]
        if any(f.rule == "json_invalid" for f in fields):
            return cls(400, "malformed_json", "The request body is not valid JSON.", fields)
        if any(f.rule == "model_type" and not f.field for f in fields):
            return cls(400, "malformed_json", "The request body must be a JSON object.", fields)
        return cls.invalid(fields, where)


def _location(loc: Sequence[Any]) -> str:
    """``channels[0]``, ``data.x``; a key that is not a plain name is quoted (``[""]``), so even
    an unknown field named with an empty string or dots is named unambiguously."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not str(part).isidentifier():
            path += f"[{json.dumps(str(part))}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def error_response(error: ApiError) -> Response:
    body = ErrorBody(error=ErrorDetail(code=error.code, message=error.message, fields=error.fields))
    response = Response(
        body.model_dump_json(exclude_none=True), status=error.status, mimetype="application/json"
    )
    response.headers.update(error.headers)
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        code = (error.name or "error").lower().replace(" ", "_")
        response = error_response(ApiError(error.code or 500, code, error.description or ""))
        if error.code == 405 and error.response is None:
            response.headers["Allow"] = ", ".join(getattr(error, "valid_methods", None) or [])
        return response

    @app.errorhandler(DBAPIError)
    def _database_error(error: DBAPIError) -> Response:
        # A connection the driver lost or that a demoted primary holds (app/core/db.py marks a
        # read-only refusal so) is the database being unavailable; anything else is a bug.
        if isinstance(error, OperationalError) or error.connection_invalidated:
            return _database_unavailable(error)
        return _unexpected(error)

    @app.errorhandler(PoolTimeout)
    def _database_unavailable(error: DBAPIError | PoolTimeout) -> Response:
        # Not the caller's fault and nothing was accepted: tell them to retry (with their
        # Idempotency-Key), rather than a bare 500. A pool with no connection free within the
        # connect deadline is an unavailable database too (every connection of it is stuck).
        cause = getattr(error, "orig", error)  # the driver's message: no SQL, no parameters
        log.warning("database unavailable: %s: %s", type(cause).__name__, str(cause).strip())
        return error_response(
            ApiError(
                503,
                "database_unavailable",
                "The database is unavailable; nothing was written. Retry shortly.",
                headers={"Retry-After": "2"},
            )
        )

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        # Logged with its traceback for operators; the caller sees no internals.
        log.exception("unhandled error")
        return error_response(ApiError(500, "internal_error", "An internal error occurred."))
