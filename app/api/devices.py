"""``/api/v1/users/{userId}/devices``: the PUSH device registry."""

from __future__ import annotations

from flask import Blueprint, Response, g, request

from app.api.auth import require_api_key
from app.api.context import api_context
from app.api.errors import ApiError
from app.api.openapi import operation, tag
from app.api.params import json_response, parse_body, validate
from app.api.schemas import DeviceList, DevicePath, DeviceRegistration, DeviceView, UserPath
from app.core.db import transaction
from app.store import devices

blueprint = Blueprint("devices", __name__)
blueprint.before_request(require_api_key)
tag(blueprint, "Devices", "The push device registry of each user.")


@blueprint.put("/<user_id>/devices")
@operation(
    "registerDevice",
    "Register a push device for the user, or update the one with this token",
    body=DeviceRegistration,
    responses={200: DeviceView, 201: DeviceView},
    errors=(415,),
)
def register(user_id: str) -> Response:
    path = validate(UserPath, {"userId": user_id}, where="path")
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json.")
    body = parse_body(DeviceRegistration, request.get_data())
    with transaction(api_context().engine) as conn:
        registered = devices.register(
            conn,
            g.project_id,
            path.user_id,
            platform=body.platform.value,
            token=body.token,
            app_id=body.app_id,
            locale=body.locale,
        )
    return json_response(DeviceView, registered.device, 201 if registered.created else 200)


@blueprint.get("/<user_id>/devices")
@operation(
    "listDevices",
    "The user's devices, active and deactivated, oldest first",
    responses={200: DeviceList},
)
def list_devices(user_id: str) -> Response:
    path = validate(UserPath, {"userId": user_id}, where="path")
    with transaction(api_context().engine) as conn:
        items = devices.list_for_user(conn, g.project_id, path.user_id)
    return json_response(DeviceList, {"items": items})


@blueprint.delete("/<user_id>/devices/<device_id>")
@operation("deleteDevice", "Remove one of the user's devices", responses={204: None}, errors=(404,))
def remove(user_id: str, device_id: str) -> Response:
    path = validate(DevicePath, {"userId": user_id, "deviceId": device_id}, where="path")
    with transaction(api_context().engine) as conn:
        removed = devices.remove(conn, g.project_id, path.user_id, path.device_id)
    if not removed:
        raise ApiError(404, "not_found", "This user has no device with this id.")
    return Response(status=204)
