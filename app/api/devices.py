"""``/api/v1/users/{userId}/devices``: the PUSH device registry."""

from __future__ import annotations

from flask import Blueprint, Response, request
from pydantic import ValidationError

from app import devices
from app.api.params import json_response, validate
from app.auth import require_api_key
from app.errors import ApiError
from app.schemas import DeviceList, DevicePath, DeviceRegistration, DeviceView, UserPath
from app.services import services

blueprint = Blueprint("devices", __name__)
blueprint.before_request(require_api_key)


@blueprint.put("/<user_id>/devices")
def register(user_id: str) -> Response:
    path = validate(UserPath, {"userId": user_id}, where="path")
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json.")
    try:
        body = DeviceRegistration.model_validate_json(request.get_data())
    except ValidationError as exc:
        raise ApiError.from_validation(exc) from None
    registered = devices.register(services().engine, path.user_id, body)
    return json_response(DeviceView, registered.device, 201 if registered.created else 200)


@blueprint.get("/<user_id>/devices")
def list_devices(user_id: str) -> Response:
    path = validate(UserPath, {"userId": user_id}, where="path")
    return json_response(
        DeviceList, {"items": devices.list_for_user(services().engine, path.user_id)}
    )


@blueprint.delete("/<user_id>/devices/<device_id>")
def remove(user_id: str, device_id: str) -> Response:
    path = validate(DevicePath, {"userId": user_id, "deviceId": device_id}, where="path")
    if not devices.remove(services().engine, path.user_id, path.device_id):
        raise ApiError(404, "not_found", "This user has no device with this id.")
    return Response(status=204)
