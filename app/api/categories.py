"""``/api/v1/categories``: the project's notification categories (required or not, and the
channels a user who said nothing receives each on)."""

from __future__ import annotations

from flask import Blueprint, Response, g, request

from app.api.auth import require_api_key
from app.api.context import api_context
from app.api.errors import ApiError
from app.api.openapi import operation, tag
from app.api.params import json_response, parse_body, validate
from app.api.schemas import (
    CategoryKey,
    CategoryList,
    CategoryPath,
    CategoryView,
    CategoryWrite,
)
from app.core.db import transaction
from app.store import preferences

blueprint = Blueprint("categories", __name__)
blueprint.before_request(require_api_key)
tag(blueprint, "Categories", "Caller-defined kinds of notification, required or opt-outable.")


@blueprint.put("/<key>")
@operation(
    "putCategory",
    "Declare or change a category; 201 if new, 200 if changed",
    body=CategoryWrite,
    responses={200: CategoryView, 201: CategoryView},
    errors=(415,),
    path={"key": CategoryKey},
)
def put(key: str) -> Response:
    path = validate(CategoryPath, {"key": key}, where="path")
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json.")
    body = parse_body(CategoryWrite, request.get_data())
    with transaction(api_context().engine) as conn:
        found, created = preferences.put_category(
            conn,
            g.project_id,
            path.key,
            required=body.required,
            default_channels=[c.value for c in body.default_channels],
            description=body.description,
        )
    return json_response(CategoryView, found, 201 if created else 200)


@blueprint.get("/<key>")
@operation(
    "getCategory",
    "One category",
    responses={200: CategoryView},
    errors=(404,),
    path={"key": CategoryKey},
)
def read(key: str) -> Response:
    path = validate(CategoryPath, {"key": key}, where="path")
    with transaction(api_context().engine) as conn:
        found = preferences.get_category(conn, g.project_id, path.key)
    if found is None:
        raise ApiError(404, "not_found", "This project has no category with this key.")
    return json_response(CategoryView, found)


@blueprint.get("")
@operation(
    "listCategories",
    "The project's categories",
    responses={200: CategoryList},
)
def list_categories() -> Response:
    with transaction(api_context().engine) as conn:
        items = preferences.list_categories(conn, g.project_id)
    return json_response(CategoryList, {"items": items})
