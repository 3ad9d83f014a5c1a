"""The OpenAPI document is generated from the routes and schemas, is valid, and names, tags,
describes and exemplifies every operation the way generators and readers need."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
from flask import Blueprint, Response
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from app.api.auth import require_api_key
from app.api.factory import routes_only
from app.api.openapi import document, operation
from app.api.schemas import InboxReadResult, NotificationCreate

# Names generated clients call; once published they must not change (new ones may be added).
PUBLISHED = {
    ("/api/v1/notifications", "post"): "createNotification",
    ("/api/v1/notifications", "get"): "listNotifications",
    ("/api/v1/notifications/{notification_id}", "get"): "getNotification",
    ("/api/v1/notifications/{notification_id}/cancel", "post"): "cancelNotification",
    ("/api/v1/users/{user_id}/devices", "put"): "registerDevice",
    ("/api/v1/users/{user_id}/devices", "get"): "listDevices",
    ("/api/v1/users/{user_id}/devices/{device_id}", "delete"): "deleteDevice",
    ("/api/v1/users/{user_id}/inbox", "get"): "listInboxItems",
    ("/api/v1/users/{user_id}/inbox/{item_id}/read", "post"): "markInboxItemRead",
    ("/api/v1/users/{user_id}/inbox/read-all", "post"): "markAllInboxItemsRead",
    ("/api/v1/users/{user_id}/inbox/{item_id}", "delete"): "deleteInboxItem",
    ("/api/v1/users/{user_id}/ws-token", "post"): "createWsToken",
    ("/api/v1/api-keys", "get"): "listApiKeys",
    ("/api/v1/api-keys", "post"): "createApiKey",
    ("/api/v1/api-keys/{key_id}/revoke", "post"): "revokeApiKey",
    ("/api/v1/api-keys/{key_id}/rotate", "post"): "rotateApiKey",
    ("/api/v1/health", "get"): "getHealth",
    ("/api/v1/health/live", "get"): "getLiveness",
    ("/api/v1/health/ready", "get"): "getReadiness",
    ("/api/v1/openapi.json", "get"): "getOpenApiDocument",
    ("/api/v1/console/notifications", "get"): "searchNotifications",
    ("/api/v1/console/notifications/{notification_id}", "get"): "getNotificationHistory",
    ("/api/v1/console/deliveries/{delivery_id}/retry", "post"): "retryDelivery",
    ("/api/v1/console/summary", "get"): "getConsoleSummary",
}


@pytest.fixture
def served(client: FlaskClient) -> dict[str, Any]:
    """The document as a generator fetches it: by its URL, without a key."""
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    found: dict[str, Any] = response.get_json()
    return found


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


def against(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the document's components beside it, so its ``$ref``s resolve."""
    return {**schema, "components": doc["components"]}


def test_the_served_document_is_valid_openapi_3_1(served: dict[str, Any]) -> None:
    validate(served)  # openapi-spec-validator: raises on the first error

    assert served["openapi"] == "3.1.0"


def test_every_ref_points_into_the_document(served: dict[str, Any]) -> None:
    refs = set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(served)))

    assert refs, "the document refers to its components"
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in served["components"]["schemas"], ref


def test_published_operation_ids_keep_their_names(served: dict[str, Any]) -> None:
    found = {(path, method): op["operationId"] for path, method, op in operations(served)}

    assert {k: found.get(k) for k in PUBLISHED} == PUBLISHED


def test_every_operation_has_a_unique_id_a_declared_tag_and_a_summary(
    served: dict[str, Any],
) -> None:
    declared = {t["name"]: t["description"] for t in served["tags"]}
    ids = [op["operationId"] for _, _, op in operations(served)]

    assert len(ids) == len(set(ids))
    for path, method, op in operations(served):
        assert re.fullmatch(r"[a-z][A-Za-z]+", op["operationId"]), (path, method)
        assert len(op["tags"]) == 1 and declared.get(op["tags"][0]), (path, method)
        assert op["summary"].strip(), (path, method)


def test_every_body_and_answer_has_an_example_that_its_schema_accepts(
    served: dict[str, Any],
) -> None:
    checked = 0
    for path, method, op in operations(served):
        media = [("request", op["requestBody"]["content"])] if "requestBody" in op else []
        media += [(status, r["content"]) for status, r in op["responses"].items() if "content" in r]
        for where, content in media:
            shown = content["application/json"]
            if shown["schema"] == {"type": "object", "description": "An OpenAPI 3.1 document"}:
                continue
            assert "example" in shown, (path, method, where)
            jsonschema.validate(shown["example"], against(served, shown["schema"]))
            checked += 1

    assert checked > 60


def test_errors_use_the_one_error_schema_and_keys_are_asked_where_needed(
    served: dict[str, Any],
) -> None:
    assert served["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": served["components"]["securitySchemes"]["apiKey"]["description"],
    }
    assert served["security"] == [{"apiKey": []}]
    for path, method, op in operations(served):
        public = path.startswith("/api/v1/health") or path == "/api/v1/openapi.json"
        assert ("security" in op and op["security"] == []) is public, (path, method)
        if not public:
            assert {"401", "403", "429", "503"} <= set(op["responses"]), (path, method)
            assert re.search(r"Scope: `(read|send|admin)`", op["description"]), (path, method)
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")) and not public:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, method)


def test_query_parameters_are_flat_and_list_every_filter(served: dict[str, Any]) -> None:
    listed = served["paths"]["/api/v1/notifications"]["get"]["parameters"]

    assert [p["name"] for p in listed] == [
        "status",
        "channel",
        "type",
        "created_after",
        "created_before",
        "cursor",
        "limit",
    ]
    assert listed[0]["schema"] == {"$ref": "#/components/schemas/NotificationStatus"}
    assert "ListQuery" not in served["components"]["schemas"]


def test_a_new_route_joins_the_document_with_its_models_tag_and_errors() -> None:
    extra = Blueprint("extra", __name__)
    extra.before_request(require_api_key)

    @extra.post("/<user_id>/things/<thing_id>")
    @operation("doThing", "Do a thing", body=NotificationCreate, responses={201: InboxReadResult})
    def do_thing(user_id: str, thing_id: str) -> Response:
        return Response(status=201)

    @extra.get("/<user_id>/plain")
    def plain_view(user_id: str) -> Response:
        """Nobody described this one. It is documented anyway."""
        return Response(status=200)

    app = routes_only()
    app.register_blueprint(extra, url_prefix="/api/v1/extra")
    doc = document(app)
    validate(json.loads(json.dumps(doc)))

    thing = doc["paths"]["/api/v1/extra/{user_id}/things/{thing_id}"]["post"]
    assert thing["operationId"] == "doThing"
    assert thing["tags"] == ["Extra"]
    assert [(p["name"], p["schema"].get("format")) for p in thing["parameters"]] == [
        ("user_id", None),
        ("thing_id", "uuid"),
    ]
    assert thing["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NotificationCreate"
    }
    assert set(thing["responses"]) == {"201", "400", "401", "403", "413", "422", "429", "503"}
    assert "Scope: `send`" in thing["description"]
    plain = doc["paths"]["/api/v1/extra/{user_id}/plain"]["get"]
    assert plain["operationId"] == "plainView"
    assert plain["summary"] == "Nobody described this one"


def test_the_docs_page_and_its_swagger_ui_files_are_served_without_a_key(
    client: FlaskClient,
) -> None:
    page = client.get("/docs")
    bundle = client.get("/docs/swagger-ui/swagger-ui-bundle.js")
    start = client.get("/docs/static/docs.js")

    assert page.status_code == 200 and "/docs/swagger-ui/swagger-ui-bundle.js" in page.text
    assert "script-src 'self';" in page.headers["Content-Security-Policy"]
    assert bundle.status_code == 200 and b"SwaggerUIBundle" in bundle.data
    assert start.status_code == 200 and '"/api/v1/openapi.json"' in start.text
    # Only the two files the page loads: the package's other files are not served.
    assert client.get("/docs/swagger-ui/swagger-editor-bundle.js").status_code == 404
    assert client.get("/docs/swagger-ui/..%2Fcore.py").status_code == 404
