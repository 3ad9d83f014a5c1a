"""``/api/v1/users``: user profiles (one, or up to 1,000 at once), their preferences, and
erasure."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request
from pydantic import ValidationError

from app.api.auth import require_api_key
from app.api.context import api_context
from app.api.errors import ApiError
from app.api.openapi import operation, tag
from app.api.params import json_response, parse_body, validate
from app.api.schemas import (
    ErasureResult,
    ErrorDetail,
    FieldError,
    PreferencesView,
    PreferencesWrite,
    UserBulkEnvelope,
    UserBulkItem,
    UserBulkRequest,
    UserBulkResponse,
    UserPath,
    UserProfileView,
    UserProfileWrite,
)
from app.core.db import transaction
from app.core.domain import Channel
from app.store import preferences, users

blueprint = Blueprint("users", __name__)
blueprint.before_request(require_api_key)
tag(blueprint, "Users", "Recipient profiles, preferences and erasure.")

# Category keys that name the notification types no one may opt out of.
RESERVED_CATEGORIES = frozenset({"transactional", "system"})
_JSON_TYPES = frozenset({"application/json", "application/merge-patch+json"})


@blueprint.put("/<user_id>")
@operation(
    "putUser",
    "Create or replace the user's profile (fields left out are cleared)",
    body=UserProfileWrite,
    responses={200: UserProfileView, 201: UserProfileView},
    errors=(415,),
)
def replace(user_id: str) -> Response:
    """Create or replace the profile: fields left out are cleared."""
    path = _user(user_id)
    body = parse_body(UserProfileWrite, _json_body())
    return _write(path, _write_of(path, body, replace=True))


@blueprint.patch("/<user_id>")
@operation(
    "patchUser",
    "Create the profile or merge into it (null clears a field, data merges by key)",
    body=UserProfileWrite,
    responses={200: UserProfileView, 201: UserProfileView},
    errors=(415,),
)
def merge(user_id: str) -> Response:
    """Create the profile or merge into it: fields left out are kept, null clears one."""
    path = _user(user_id)
    body = parse_body(UserProfileWrite, _json_body())
    return _write(path, _write_of(path, body, replace=False))


def _write(user_id: str, write: users.ProfileWrite) -> Response:
    with transaction(api_context().engine) as conn:
        created = users.upsert(conn, g.project_id, [write])
        found = users.get(conn, g.project_id, user_id)
    return json_response(UserProfileView, found, 201 if created else 200)


@blueprint.get("/<user_id>")
@operation(
    "getUser",
    "The user's profile",
    responses={200: UserProfileView},
    errors=(404,),
)
def read(user_id: str) -> Response:
    path = _user(user_id)
    with transaction(api_context().engine) as conn:
        found = users.get(conn, g.project_id, path)
    if found is None:
        raise ApiError(404, "not_found", "This project has no profile for this user.")
    return json_response(UserProfileView, found)


@blueprint.delete("/<user_id>")
@operation(
    "eraseUser",
    "Erase the user: profile, preferences, devices and inbox; addresses redacted",
    responses={200: ErasureResult},
)
def erase(user_id: str) -> Response:
    """Erasure: answers what was removed and redacted (all zero for an unknown user)."""
    path = _user(user_id)
    with transaction(api_context().engine) as conn:
        counts = users.erase(conn, g.project_id, path)
    return json_response(ErasureResult, {"userId": path, **counts})


@blueprint.post("/bulk")
@operation(
    "identifyUsers",
    "Identify up to 1,000 users (each created or merged); one result per item",
    body=UserBulkRequest,
    responses={207: UserBulkResponse},
    errors=(415,),
)
def bulk() -> Response:
    """Identify up to 1,000 users: each created, or merged into its profile as by PATCH. Each
    item is validated on its own; the valid ones are written in one transaction (207)."""
    envelope = parse_body(UserBulkEnvelope, _json_body())
    results: list[dict[str, Any]] = []
    writes: list[tuple[int, users.ProfileWrite]] = []
    seen: set[str] = set()
    for index, raw in enumerate(envelope.users):
        user_id = raw.get("userId") if isinstance(raw, dict) else None
        try:
            item = UserBulkItem.model_validate(raw)
        except ValidationError as exc:
            error = ApiError.from_validation(exc, where=f"users[{index}]")
            results.append(_refused(index, user_id, error.message, error.fields))
            continue
        if item.user_id in seen:
            duplicate = FieldError(
                field="userId", rule="duplicate_user", message="this userId appears earlier"
            )
            results.append(_refused(index, item.user_id, "users[] repeats a user.", [duplicate]))
            continue
        seen.add(item.user_id)
        writes.append((index, _write_of(item.user_id, item, replace=False)))
        results.append({"index": index, "userId": item.user_id, "status": 0})
    if writes:
        with transaction(api_context().engine) as conn:
            created = users.upsert(conn, g.project_id, [w for _, w in writes])
        for index, write in writes:
            results[index]["status"] = 201 if write.user_id in created else 200
    return json_response(UserBulkResponse, {"results": results}, 207)


@blueprint.put("/<user_id>/preferences")
@operation(
    "putPreferences",
    "Replace the user's preferences; a required category is refused",
    body=PreferencesWrite,
    responses={200: PreferencesView},
    errors=(415,),
)
def put_preferences(user_id: str) -> Response:
    """Replace the user's preferences; a required or reserved category is refused (422)."""
    path = _user(user_id)
    body = parse_body(PreferencesWrite, _json_body())
    prefs = preferences.Preferences(
        {c.value: on for c, on in body.channels.items()},
        {
            key: choice if isinstance(choice, bool) else {c.value: on for c, on in choice.items()}
            for key, choice in body.categories.items()
        },
    )
    with transaction(api_context().engine) as conn:
        required = preferences.required_categories(conn, g.project_id, body.categories)
        refused = [
            FieldError(
                field=f"categories.{key}",
                rule="category_required",
                message=f"'{key}' is a required category or notification type:"
                " it cannot be opted out of",
            )
            for key, choice in body.categories.items()
            if (key in required or key in RESERVED_CATEGORIES) and _opts_out(choice)
        ]
        if refused:
            raise ApiError.invalid(refused)
        preferences.put(conn, g.project_id, path, prefs)
        view = _effective(conn, path)
    return json_response(PreferencesView, view)


@blueprint.get("/<user_id>/preferences")
@operation(
    "getPreferences",
    "The user's effective preferences",
    responses={200: PreferencesView},
)
def get_preferences(user_id: str) -> Response:
    path = _user(user_id)
    with transaction(api_context().engine) as conn:
        view = _effective(conn, path)
    return json_response(PreferencesView, view)


def _effective(conn: Any, user_id: str) -> dict[str, Any]:
    return preferences.effective(
        preferences.get(conn, g.project_id, user_id),
        preferences.list_categories(conn, g.project_id),
        [c.value for c in Channel],
    )


def _opts_out(choice: bool | dict[Channel, bool]) -> bool:
    return choice is False or (isinstance(choice, dict) and not all(choice.values()))


def _refused(index: int, user_id: object, message: str, fields: list[FieldError]) -> dict[str, Any]:
    return {
        "index": index,
        "userId": user_id if isinstance(user_id, str) else None,
        "status": 422,
        "error": ErrorDetail(code="validation_failed", message=message, fields=fields),
    }


def _write_of(user_id: str, body: UserProfileWrite, *, replace: bool) -> users.ProfileWrite:
    given = body.model_fields_set - {"user_id"}
    values: dict[str, Any] = {}
    for name in given:
        value = getattr(body, name)
        if name == "quiet_hours":
            value = (value.start, value.end) if value is not None else None
        values[name] = value
    return users.ProfileWrite(user_id, values, replace=replace)


def _json_body() -> bytes:
    if request.mimetype not in _JSON_TYPES:
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json.")
    return request.get_data()


def _user(user_id: str) -> str:
    return validate(UserPath, {"userId": user_id}, where="path").user_id
