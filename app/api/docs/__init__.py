"""``/docs``: the API reference, Swagger UI over ``/api/v1/openapi.json``, served without a key.

Swagger UI's files come from the swagger-ui-py package (installed with the service), our page
and its start-up script from this package: the browser fetches nothing from the internet.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from flask import Blueprint, Response, abort, send_from_directory

blueprint = Blueprint("docs", __name__, static_folder="static", static_url_path="/docs/static")

# Located without importing swagger_ui, whose package imports its web-framework handlers.
_SPEC = importlib.util.find_spec("swagger_ui")
SWAGGER_UI = Path(next(iter(_SPEC.submodule_search_locations or []))) / "static" if _SPEC else None
# Only what the page loads: the package also ships the Swagger Editor, which is not served.
_ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css"})

_SECURITY_HEADERS = {
    # Swagger UI sets style attributes from its script, hence 'unsafe-inline' for styles only.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        " connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none';"
        " frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@blueprint.get("/docs")
def docs_page() -> Response:
    response = send_from_directory(blueprint.static_folder or "", "docs.html")
    response.headers.update(_SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-cache"
    return response


@blueprint.get("/docs/swagger-ui/<name>")
def swagger_ui_asset(name: str) -> Response:
    if name not in _ASSETS or SWAGGER_UI is None:
        abort(404)
    response = send_from_directory(SWAGGER_UI, name, max_age=3600)
    response.headers.update(_SECURITY_HEADERS)
    return response
