"""``/api/v1/api-keys``: issue, list, revoke and rotate API keys (the ``admin`` scope)."""

from __future__ import annotations

from flask import Blueprint, Response, g, request

from app.api import keys
from app.api.auth import require_api_key
from app.api.context import api_context
from app.api.errors import ApiError
from app.api.openapi import operation, tag
from app.api.params import parse_body, path_uuid
from app.api.schemas import ApiKeyCreate, ApiKeyView, IssuedKeyView, RotatedKeyView

blueprint = Blueprint("api_keys", __name__)
blueprint.before_request(require_api_key)
tag(blueprint, "API keys", "Issue, list, revoke and rotate the project's API keys (admin scope).")


def _json(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="application/json")


@blueprint.get("")
@operation(
    "listApiKeys",
    "Every key of the caller's project, live and revoked; never a key itself",
    responses={200: [ApiKeyView]},
)
def list_keys() -> Response:
    listed = [
        ApiKeyView.model_validate(k) for k in keys.list_api_keys(api_context().engine, g.project_id)
    ]
    return _json("[" + ",".join(k.model_dump_json(by_alias=True) for k in listed) + "]")


@blueprint.post("")
@operation(
    "createApiKey",
    "Issue an API key; the key and its webhook secret are shown once",
    body=ApiKeyCreate,
    responses={201: IssuedKeyView},
)
def create_key() -> Response:
    body = parse_body(ApiKeyCreate, request.get_data() or b"{}")
    # Keys are made in the caller's own project: no route reaches another project.
    issued = keys.create_api_key(api_context().engine, body.name, body.scopes, g.project_id)
    return _json(IssuedKeyView.from_issued(issued).model_dump_json(by_alias=True), 201)


@blueprint.post("/<key_id>/revoke")
@operation("revokeApiKey", "Revoke an API key", responses={204: None}, errors=(404,))
def revoke_key(key_id: str) -> Response:
    found = api_context()
    ident = path_uuid(key_id)
    try:
        keys.revoke_api_key(found.engine, g.project_id, ident)
    except keys.UnknownKey:
        raise ApiError(404, "not_found", "No live API key has this id.") from None
    found.key_cache.forget(ident)
    return Response(status=204)


@blueprint.post("/<key_id>/rotate")
@operation(
    "rotateApiKey",
    "Replace a key by a new one with the same scopes and webhook secret; the old one is revoked",
    responses={201: RotatedKeyView},
    errors=(404,),
)
def rotate_key(key_id: str) -> Response:
    found = api_context()
    ident = path_uuid(key_id)
    try:
        issued = keys.rotate_api_key(found.engine, g.project_id, ident)
    except keys.UnknownKey:
        raise ApiError(404, "not_found", "No live API key has this id.") from None
    found.key_cache.forget(ident)
    return _json(RotatedKeyView.from_issued(issued, ident).model_dump_json(by_alias=True), 201)
