"""Generated requests against every documented operation: no server error, answers as documented.

Schemathesis reads the API's own OpenAPI document (``/api/v1/openapi.json``, with an admin key)
and generates requests for every operation, valid and invalid; each answer must not be a 5xx,
must use a documented status code and content type, and must match the documented schema.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine

from app.api.factory import routes_only
from app.api.keys import SCOPES, create_api_key
from app.api.openapi import document


@pytest.fixture
def admin_headers(engine: Engine) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_api_key(engine, 'fuzz', SCOPES).key}"}


def test_served_document_is_the_one_fuzzed(client: Any, admin_headers: dict[str, str]) -> None:
    served = client.get("/api/v1/openapi.json", headers=admin_headers).get_json()

    assert served == json.loads(json.dumps(document(client.application)))


# The document the API serves (checked equal above), generated from its routes once; each case
# is sent to the test's own app, in process.
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(document(routes_only()))))


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_generated_requests_without_5xx_and_as_documented(
    case: Any, flask_app: Flask, admin_headers: dict[str, str]
) -> None:
    case.call_and_validate(
        app=flask_app,
        headers=admin_headers,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
