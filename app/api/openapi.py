"""``/api/v1/openapi.json``: the OpenAPI 3.1 document, generated from the schemas the API uses."""

from __future__ import annotations

from functools import cache
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.api.auth import require_api_key
from app.api.schemas import (
    ApiKeyCreate,
    ApiKeyView,
    CancelResult,
    CategoryList,
    CategoryView,
    CategoryWrite,
    DeviceList,
    DeviceRegistration,
    DeviceView,
    ErasureResult,
    ErrorBody,
    HealthCheck,
    InboxItemView,
    InboxPage,
    InboxQuery,
    InboxReadResult,
    IssuedKeyView,
    ListQuery,
    NotificationCreate,
    NotificationPage,
    NotificationView,
    PreferencesView,
    PreferencesWrite,
    RotatedKeyView,
    SuppressionPage,
    SuppressionQuery,
    SuppressionView,
    SuppressionWrite,
    UserBulkRequest,
    UserBulkResponse,
    UserProfileView,
    UserProfileWrite,
    WsToken,
)
from app.core.domain import CATEGORY_KEY_PATTERN

blueprint = Blueprint("openapi", __name__)
blueprint.before_request(require_api_key)

_REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _content(model: type[BaseModel]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(model)}}}


def _responses(ok: int, model: type[BaseModel] | None, *errors: int) -> dict[str, Any]:
    success = {"description": "Success", **(_content(model) if model else {})}
    return {str(ok): success, **_errors(*errors)}


def _errors(*statuses: int) -> dict[str, Any]:
    """Error responses; every authenticated operation may also answer 401, 403 and 429."""
    return {
        str(status): {"description": "Error", **_content(ErrorBody)}
        for status in sorted({*statuses, 401, 403, 429})
    }


def _path_id(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }


_ID_PARAM = _path_id("notification_id")


_USER_PARAM = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"^[\w.:@-]+$"},
}
_DEVICE_PARAM = _path_id("device_id")

_ITEM_PARAM = _path_id("item_id")


def _inbox_paths() -> dict[str, Any]:
    inbox_params = [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in InboxQuery.model_json_schema()["properties"].items()
    ]
    base = "/api/v1/users/{user_id}"
    return {
        f"{base}/inbox": {
            "get": {
                "summary": "The user's in-app inbox, newest first, with the unread count",
                "parameters": [_USER_PARAM, *inbox_params],
                "responses": _responses(200, InboxPage, 401, 422),
            }
        },
        f"{base}/inbox/{{item_id}}/read": {
            "post": {
                "summary": "Mark one item read (every open socket of the user is told)",
                "parameters": [_USER_PARAM, _ITEM_PARAM],
                "responses": _responses(200, InboxItemView, 401, 404, 422),
            }
        },
        f"{base}/inbox/read-all": {
            "post": {
                "summary": "Mark every item of the user read",
                "parameters": [_USER_PARAM],
                "responses": _responses(200, InboxReadResult, 401, 422),
            }
        },
        f"{base}/inbox/{{item_id}}": {
            "delete": {
                "summary": "Delete one item from the user's inbox",
                "parameters": [_USER_PARAM, _ITEM_PARAM],
                "responses": {
                    "204": {"description": "Deleted"},
                    **{
                        str(status): {"description": "Error", **_content(ErrorBody)}
                        for status in (401, 404, 422)
                    },
                },
            }
        },
        f"{base}/ws-token": {
            "post": {
                "summary": "A short-lived token for the user's WebSocket at /ws/notifications",
                "parameters": [_USER_PARAM],
                "responses": _responses(201, WsToken, 401, 422, 503),
            }
        },
    }


def _recipient_paths() -> dict[str, Any]:
    """Profiles, preferences, categories and the suppression list (issue 15)."""
    user = "/api/v1/users/{user_id}"
    key_param = {
        "name": "key",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": CATEGORY_KEY_PATTERN},
    }
    address_params = [
        {
            "name": "channel",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "enum": ["EMAIL", "SMS"]},
        },
        {
            "name": "address",
            "in": "path",
            "required": True,
            "description": "An e-mail address (EMAIL) or an E.164 number (SMS)",
            "schema": {"type": "string", "minLength": 1, "maxLength": 254},
        },
    ]
    suppression_params = [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in SuppressionQuery.model_json_schema()["properties"].items()
    ]
    profile_write = {"required": True, **_content(UserProfileWrite)}
    return {
        user: {
            "put": {
                "summary": "Create or replace the user's profile (fields left out are cleared);"
                " 201 if new, 200 if replaced",
                "parameters": [_USER_PARAM],
                "requestBody": profile_write,
                "responses": {
                    **_responses(200, UserProfileView, 400, 413, 415, 422),
                    "201": {"description": "Created", **_content(UserProfileView)},
                },
            },
            "patch": {
                "summary": "Create the profile or merge into it (fields left out are kept, null"
                " clears one, data is merged key by key)",
                "parameters": [_USER_PARAM],
                "requestBody": profile_write,
                "responses": {
                    **_responses(200, UserProfileView, 400, 413, 415, 422),
                    "201": {"description": "Created", **_content(UserProfileView)},
                },
            },
            "get": {
                "summary": "The user's profile",
                "parameters": [_USER_PARAM],
                "responses": _responses(200, UserProfileView, 404, 422),
            },
            "delete": {
                "summary": "Erase the user: profile, preferences, devices and inbox removed, the"
                " user's notifications redacted, unsent deliveries cancelled",
                "parameters": [_USER_PARAM],
                "responses": _responses(200, ErasureResult, 422),
            },
        },
        "/api/v1/users/bulk": {
            "post": {
                "summary": "Identify up to 1,000 users (each created or merged); one result per"
                " item",
                "requestBody": {"required": True, **_content(UserBulkRequest)},
                "responses": {
                    "207": {"description": "One result per item", **_content(UserBulkResponse)},
                    **_errors(400, 413, 415, 422),
                },
            }
        },
        f"{user}/preferences": {
            "put": {
                "summary": "Replace the user's preferences; a required category is refused",
                "parameters": [_USER_PARAM],
                "requestBody": {"required": True, **_content(PreferencesWrite)},
                "responses": _responses(200, PreferencesView, 400, 413, 415, 422),
            },
            "get": {
                "summary": "The user's effective preferences",
                "parameters": [_USER_PARAM],
                "responses": _responses(200, PreferencesView, 422),
            },
        },
        "/api/v1/categories": {
            "get": {
                "summary": "The project's categories",
                "responses": _responses(200, CategoryList),
            }
        },
        "/api/v1/categories/{key}": {
            "put": {
                "summary": "Declare or change a category; 201 if new, 200 if changed",
                "parameters": [key_param],
                "requestBody": {"required": True, **_content(CategoryWrite)},
                "responses": {
                    **_responses(200, CategoryView, 400, 413, 415, 422),
                    "201": {"description": "Created", **_content(CategoryView)},
                },
            },
            "get": {
                "summary": "One category",
                "parameters": [key_param],
                "responses": _responses(200, CategoryView, 404, 422),
            },
        },
        "/api/v1/suppressions": {
            "get": {
                "summary": "The suppression list, newest first; filters channel and reason",
                "parameters": suppression_params,
                "responses": _responses(200, SuppressionPage, 422),
            }
        },
        "/api/v1/suppressions/{channel}/{address}": {
            "put": {
                "summary": "Suppress an address (body optional: reason, default manual); 201 if"
                " new, 200 if its reason changed",
                "parameters": address_params,
                "requestBody": {"required": False, **_content(SuppressionWrite)},
                "responses": {
                    **_responses(200, SuppressionView, 400, 413, 415, 422),
                    "201": {"description": "Suppressed", **_content(SuppressionView)},
                },
            },
            "get": {
                "summary": "One suppressed address",
                "parameters": address_params,
                "responses": _responses(200, SuppressionView, 404, 422),
            },
            "delete": {
                "summary": "Remove an address from the list",
                "parameters": address_params,
                "responses": {"204": {"description": "Removed"}, **_errors(404, 422)},
            },
        },
    }


def _health(summary: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "security": [],
            "responses": {
                "200": {"description": "Healthy", **_content(HealthCheck)},
                "503": {"description": "A dependency is unreachable", **_content(HealthCheck)},
            },
        }
    }


@cache
def document() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [
            (NotificationCreate, "validation"),
            (NotificationView, "serialization"),
            (NotificationPage, "serialization"),
            (CancelResult, "serialization"),
            (DeviceRegistration, "validation"),
            (DeviceView, "serialization"),
            (DeviceList, "serialization"),
            (HealthCheck, "serialization"),
            (InboxItemView, "serialization"),
            (InboxPage, "serialization"),
            (InboxReadResult, "serialization"),
            (WsToken, "serialization"),
            (ErrorBody, "serialization"),
            (UserProfileWrite, "validation"),
            (UserProfileView, "serialization"),
            (UserBulkRequest, "validation"),
            (UserBulkResponse, "serialization"),
            (ErasureResult, "serialization"),
            (PreferencesWrite, "validation"),
            (PreferencesView, "serialization"),
            (CategoryWrite, "validation"),
            (CategoryView, "serialization"),
            (CategoryList, "serialization"),
            (SuppressionWrite, "validation"),
            (SuppressionView, "serialization"),
            (SuppressionPage, "serialization"),
            (ApiKeyCreate, "validation"),
            (ApiKeyView, "serialization"),
            (IssuedKeyView, "serialization"),
            (RotatedKeyView, "serialization"),
        ],
        by_alias=True,
        ref_template=_REF,
    )
    query_schema = ListQuery.model_json_schema()
    list_params = [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in query_schema["properties"].items()
    ]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Notification service", "version": "1"},
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/api/v1/notifications": {
                "post": {
                    "summary": "Submit a notification for delivery on one or more channels",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                        }
                    ],
                    "requestBody": {"required": True, **_content(NotificationCreate)},
                    "responses": _responses(202, NotificationView, 400, 401, 409, 413, 415, 422),
                },
                "get": {
                    "summary": "List notifications, newest first, with keyset pagination",
                    "parameters": list_params,
                    "responses": _responses(200, NotificationPage, 401, 422),
                },
            },
            "/api/v1/notifications/{notification_id}": {
                "get": {
                    "summary": "One notification with the status of each delivery",
                    "parameters": [_ID_PARAM],
                    "responses": _responses(200, NotificationView, 401, 404, 422),
                }
            },
            "/api/v1/notifications/{notification_id}/cancel": {
                "post": {
                    "summary": "Cancel the deliveries that have not been sent yet",
                    "parameters": [_ID_PARAM],
                    "responses": _responses(200, CancelResult, 401, 404, 409, 422),
                }
            },
            "/api/v1/api-keys": {
                "get": {
                    "summary": "List API keys (admin scope)",
                    "responses": {
                        **_responses(200, None),
                        "200": {
                            "description": "Every key, live and revoked; never the key itself",
                            "content": {
                                "application/json": {
                                    "schema": {"type": "array", "items": _ref(ApiKeyView)}
                                }
                            },
                        },
                    },
                },
                "post": {
                    "summary": "Issue an API key; the key and its webhook secret are shown once",
                    "requestBody": {"required": True, **_content(ApiKeyCreate)},
                    "responses": _responses(201, IssuedKeyView, 400, 422),
                },
            },
            "/api/v1/api-keys/{key_id}/revoke": {
                "post": {
                    "summary": "Revoke an API key (admin scope)",
                    "parameters": [_path_id("key_id")],
                    "responses": _responses(204, None, 404, 422),
                }
            },
            "/api/v1/api-keys/{key_id}/rotate": {
                "post": {
                    "summary": "Replace an API key by a new one with the same scopes and webhook"
                    " secret; the old key is revoked",
                    "parameters": [_path_id("key_id")],
                    "responses": _responses(201, RotatedKeyView, 404, 422),
                }
            },
            "/api/v1/users/{user_id}/devices": {
                "put": {
                    "summary": "Register a push device for the user, or update the one with this"
                    " token (platform and token identify a device); 201 if new, 200 if updated",
                    "parameters": [_USER_PARAM],
                    "requestBody": {"required": True, **_content(DeviceRegistration)},
                    "responses": {
                        **_responses(200, DeviceView, 400, 401, 415, 422),
                        "201": {"description": "Registered", **_content(DeviceView)},
                    },
                },
                "get": {
                    "summary": "The user's devices, active and deactivated, oldest first",
                    "parameters": [_USER_PARAM],
                    "responses": _responses(200, DeviceList, 401, 422),
                },
            },
            "/api/v1/users/{user_id}/devices/{device_id}": {
                "delete": {
                    "summary": "Remove one of the user's devices",
                    "parameters": [_USER_PARAM, _DEVICE_PARAM],
                    "responses": {"204": {"description": "Removed"}, **_errors(401, 404, 422)},
                }
            },
            **_inbox_paths(),
            **_recipient_paths(),
            "/api/v1/health": _health("Overall health: PostgreSQL and Redis reachable"),
            "/api/v1/health/live": _health("The process is up"),
            "/api/v1/health/ready": _health("Ready to serve: PostgreSQL and Redis reachable"),
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        **_responses(200, None),
                        "200": {"description": "OpenAPI document"},
                    },
                }
            },
        },
    }


@blueprint.get("/openapi.json")
def openapi_json() -> ResponseReturnValue:
    return jsonify(document())
