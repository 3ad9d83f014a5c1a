"""Templates and layouts as data: versioned PUTs, reads, lists, archiving, syntax refused at PUT
with its line and column, scopes and projects (README, "Templates")."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from app.api.keys import create_api_key
from tests.helpers.api import field_rules

ORDER_SHIPPED = {
    "channels": {
        "EMAIL": {
            "subject": "Order {{ data.orderId }} shipped",
            "text": "Hi {{ user.name }}, it is on its way.",
            "locales": {
                "fr": {
                    "subject": "Commande {{ data.orderId }} expédiée",
                    "text": "Bonjour {{ user.name }}, elle arrive.",
                }
            },
        },
        "SMS": {
            "body": "Order {{ data.orderId }} shipped",
            "locales": {"fr": {"body": "Commande {{ data.orderId }} expédiée"}},
        },
    }
}


def put(
    client: FlaskClient, auth: dict[str, str], key: str, body: Any, kind: str = "templates"
) -> Any:
    return client.put(f"/api/v1/{kind}/{key}", json=body, headers=auth)


def rows(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_each_put_adds_an_immutable_version_and_earlier_ones_stay_readable(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    first = put(client, auth, "order-shipped", ORDER_SHIPPED)
    assert first.status_code == 201
    assert first.headers["Location"] == "/api/v1/templates/order-shipped/versions/1"
    assert first.get_json()["version"] == 1

    changed = {"channels": {"SMS": {"body": "Shipped: {{ data.orderId }}"}}}
    second = put(client, auth, "order-shipped", changed)
    assert second.status_code == 201
    assert second.get_json()["version"] == 2

    latest = client.get("/api/v1/templates/order-shipped", headers=auth).get_json()
    assert (latest["version"], latest["latestVersion"]) == (2, 2)
    assert latest["channels"] == changed["channels"]
    old = client.get("/api/v1/templates/order-shipped/versions/1", headers=auth).get_json()
    assert (old["version"], old["latestVersion"]) == (1, 2)
    assert old["channels"] == ORDER_SHIPPED["channels"]
    assert client.get("/api/v1/templates/order-shipped/versions/3", headers=auth).status_code == 404
    assert client.get("/api/v1/templates/nope", headers=auth).status_code == 404


def test_a_template_that_does_not_compile_is_refused_with_line_and_column_and_nothing_written(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    broken = {
        "channels": {
            "EMAIL": {
                "subject": "fine {{ data.x }}",
                "text": "Hello\n  {% if %}",
                "locales": {"fr": {"subject": "{{ data.x | }}", "html": "<p>ok</p>"}},
            }
        }
    }
    response = put(client, auth, "broken", broken)

    assert response.status_code == 422
    fields = {f["field"]: f for f in response.get_json()["error"]["fields"]}
    assert set(fields) == {"channels.EMAIL.text", "channels.EMAIL.locales.fr.subject"}
    text_error = fields["channels.EMAIL.text"]
    assert text_error["rule"] == "template_syntax"
    assert (text_error["line"], text_error["column"]) == (2, 6)  # the tag name
    assert text_error["message"].startswith("line 2, column 6:")
    assert fields["channels.EMAIL.locales.fr.subject"]["line"] == 1
    assert rows(engine, "template") == 0


def test_other_errors_keep_the_shape_without_line_and_column(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    response = put(client, auth, "x", {"channels": {"EMAIL": {"subject": "s"}}})

    assert response.status_code == 422
    [error] = response.get_json()["error"]["fields"]
    assert error["field"] == "channels.EMAIL"
    assert "line" not in error and "column" not in error


def test_content_is_validated_per_channel(client: FlaskClient, auth: dict[str, str]) -> None:
    assert put(client, auth, "x", {"channels": {}}).status_code == 422
    assert ("channels.FAX", "extra_forbidden") in field_rules(
        put(client, auth, "x", {"channels": {"FAX": {"body": "b"}}})
    )
    assert ("channels.SMS.body", "missing") in field_rules(
        put(client, auth, "x", {"channels": {"SMS": {"title": "t"}}})
    )
    bad_locale = {"channels": {"SMS": {"body": "b", "locales": {"not a locale": {"body": "b"}}}}}
    assert put(client, auth, "x", bad_locale).status_code == 422
    assert put(client, auth, "bad key!", ORDER_SHIPPED).status_code == 422


def test_archived_templates_are_listed_only_on_request_and_a_put_revives_them(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    for key in ("a", "b", "c"):
        assert put(client, auth, key, ORDER_SHIPPED).status_code == 201
    assert client.delete("/api/v1/templates/b", headers=auth).status_code == 204
    assert client.delete("/api/v1/templates/b", headers=auth).status_code == 404

    listed = client.get("/api/v1/templates", headers=auth).get_json()
    assert [t["key"] for t in listed["items"]] == ["a", "c"]
    with_archived = client.get("/api/v1/templates?archived=true&limit=2", headers=auth).get_json()
    assert [t["key"] for t in with_archived["items"]] == ["a", "b"]
    assert with_archived["items"][1]["archivedAt"] is not None
    rest = client.get(
        f"/api/v1/templates?archived=true&cursor={with_archived['nextCursor']}", headers=auth
    ).get_json()
    assert ([t["key"] for t in rest["items"]], rest["nextCursor"]) == (["c"], None)

    revived = put(client, auth, "b", ORDER_SHIPPED).get_json()
    assert (revived["version"], revived["archivedAt"]) == (2, None)


def test_layouts_are_managed_the_same_way_and_a_template_names_only_a_live_one(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    email = {"channels": {"EMAIL": {"subject": "s", "html": "<p>x</p>"}}, "layout": "brand"}
    assert ("layout", "layout_not_found") in field_rules(put(client, auth, "t", email))

    layout = {"html": "<html><body>{{ content }}</body></html>"}
    created = put(client, auth, "brand", layout, kind="layouts")
    assert created.status_code == 201
    assert created.headers["Location"] == "/api/v1/layouts/brand/versions/1"
    assert put(client, auth, "t", email).status_code == 201
    assert put(client, auth, "brand", {"html": "{% for %}"}, kind="layouts").status_code == 422

    read = client.get("/api/v1/layouts/brand", headers=auth).get_json()
    assert (read["version"], read["html"], read["text"]) == (1, layout["html"], None)
    listed = client.get("/api/v1/layouts", headers=auth).get_json()["items"]
    assert [item["key"] for item in listed] == ["brand"]
    assert client.delete("/api/v1/layouts/brand", headers=auth).status_code == 204
    assert ("layout", "layout_not_found") in field_rules(put(client, auth, "t", email))


def test_reading_needs_read_and_writing_needs_send(
    client: FlaskClient, engine: Engine, auth: dict[str, str]
) -> None:
    reader = {"Authorization": f"Bearer {create_api_key(engine, 'r', ['read']).key}"}
    sender = {"Authorization": f"Bearer {create_api_key(engine, 's', ['send']).key}"}

    assert put(client, reader, "t", ORDER_SHIPPED).status_code == 403
    assert put(client, sender, "t", ORDER_SHIPPED).status_code == 201
    assert client.get("/api/v1/templates/t", headers=reader).status_code == 200
    assert client.get("/api/v1/templates/t", headers=sender).status_code == 403
    assert client.delete("/api/v1/templates/t", headers=reader).status_code == 403


def test_templates_belong_to_their_project(
    client: FlaskClient, engine: Engine, auth: dict[str, str]
) -> None:
    other = {"Authorization": f"Bearer {create_api_key(engine, 'o', project_id='acme').key}"}
    put(client, auth, "t", ORDER_SHIPPED)

    assert client.get("/api/v1/templates/t", headers=other).status_code == 404
    assert client.delete("/api/v1/templates/t", headers=other).status_code == 404
    assert put(client, other, "t", ORDER_SHIPPED).get_json()["version"] == 1
    assert client.get("/api/v1/templates/t", headers=auth).get_json()["latestVersion"] == 1


def test_the_openapi_document_describes_the_template_routes(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    document = client.get("/api/v1/openapi.json", headers=auth).get_json()

    for path in (
        "/api/v1/templates",
        "/api/v1/templates/{key}",
        "/api/v1/templates/{key}/versions/{version}",
        "/api/v1/templates/{key}/preview",
        "/api/v1/layouts/{key}",
    ):
        assert path in document["paths"]
    assert {"TemplatePut", "TemplateView", "LayoutPut", "PreviewView"} <= set(
        document["components"]["schemas"]
    )
    assert "template" in document["components"]["schemas"]["NotificationCreate"]["properties"]
