"""Sending with a template on the real stack (API → relay → worker → SMTP stand-in): strict
variables at accept, the version pinned on the notification, rendering per recipient with locale
fallback, layouts, and the rendered content stored on the delivery and sent again as stored."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from tests.helpers.api import field_rules, post, wait_delivery
from tests.helpers.processes import Processes
from tests.standins.smtp import SmtpStandIn

ORDER_SHIPPED = {
    "channels": {
        "EMAIL": {
            "subject": "Order {{ data.orderId }} shipped",
            "text": "Hi {{ user.id }}, it is on its way.",
            "locales": {
                "fr": {
                    "subject": "Commande {{ data.orderId }} expédiée",
                    "text": "Bonjour {{ user.id }}, elle arrive.",
                },
                "pt": {
                    "subject": "Pedido {{ data.orderId }} enviado",
                    "text": "Olá {{ user.id }}, está a caminho.",
                },
            },
        },
        "SMS": {"body": "Order {{ data.orderId }} shipped"},
    }
}


def send(**fields: Any) -> dict[str, Any]:
    return {
        "template": "order-shipped",
        "channels": ["EMAIL"],
        "userId": "ana",
        "recipientEmail": "ana@example.com",
        "data": {"orderId": 1234},
        **fields,
    }


def put_template(client: FlaskClient, auth: dict[str, str], body: Any = ORDER_SHIPPED) -> Any:
    response = client.put("/api/v1/templates/order-shipped", json=body, headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def notifications(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM notification")).scalar_one())


def test_each_recipient_gets_the_template_in_their_language_with_fallback_to_the_language(
    client: FlaskClient, auth: dict[str, str], processes: Processes, smtp: SmtpStandIn
) -> None:
    put_template(client, auth)
    processes.relay()
    processes.worker()

    sent = {}
    for address, locale in (
        ("fr@example.com", "fr"),
        ("br@example.com", "pt-BR"),
        ("en@example.com", "en-GB"),
        ("none@example.com", None),
    ):
        extra = {"locale": locale} if locale else {}
        created = post(client, auth, send(recipientEmail=address, **extra))
        assert created.status_code == 202, created.get_json()
        sent[address] = created.get_json()["id"]

    expected = {
        "fr@example.com": ("fr", "Commande 1234 expédiée", "Bonjour ana, elle arrive."),
        "br@example.com": ("pt", "Pedido 1234 enviado", "Olá ana, está a caminho."),
        "en@example.com": (None, "Order 1234 shipped", "Hi ana, it is on its way."),
        "none@example.com": (None, "Order 1234 shipped", "Hi ana, it is on its way."),
    }
    for address, (locale, subject, body) in expected.items():
        delivery = wait_delivery(client, auth, sent[address], "SENT")
        [received] = smtp.to(address)
        assert received.message["Subject"] == subject
        assert received.message.get_content().strip() == body
        # GET shows exactly what was sent, and which translation.
        assert delivery["locale"] == locale
        assert delivery["content"] == {"subject": subject, "text": body}


def test_the_version_is_pinned_at_accept_and_survives_a_later_put(
    client: FlaskClient, auth: dict[str, str], processes: Processes, smtp: SmtpStandIn
) -> None:
    put_template(client, auth)
    created = post(client, auth, send()).get_json()
    changed = {"channels": {"EMAIL": {"subject": "v2 {{ data.orderId }}", "text": "v2"}}}
    assert put_template(client, auth, changed)["version"] == 2
    pinned_old = post(client, auth, send(recipientEmail="old@example.com", templateVersion=1))
    latest = post(client, auth, send(recipientEmail="new@example.com")).get_json()

    processes.relay()
    processes.worker()
    wait_delivery(client, auth, created["id"], "SENT")
    wait_delivery(client, auth, pinned_old.get_json()["id"], "SENT")
    wait_delivery(client, auth, latest["id"], "SENT")

    assert smtp.to("ana@example.com")[0].message["Subject"] == "Order 1234 shipped"
    assert smtp.to("old@example.com")[0].message["Subject"] == "Order 1234 shipped"
    assert smtp.to("new@example.com")[0].message["Subject"] == "v2 1234"


def test_a_layout_wraps_the_html_and_a_text_part_is_derived(
    client: FlaskClient, auth: dict[str, str], processes: Processes, smtp: SmtpStandIn
) -> None:
    layout = {"html": "<html><body><h1>ACME</h1>{{ content }}<p>{{ user.id }}</p></body></html>"}
    assert client.put("/api/v1/layouts/brand", json=layout, headers=auth).status_code == 201
    put_template(
        client,
        auth,
        {
            "channels": {
                "EMAIL": {
                    "subject": "Order {{ data.orderId }}",
                    "html": "<p>Dear {{ data.name }}</p>",
                }
            },
            "layout": "brand",
        },
    )
    processes.relay()
    processes.worker()

    created = post(client, auth, send(data={"orderId": 1, "name": "<script>x</script>"}))
    delivery = wait_delivery(client, auth, created.get_json()["id"], "SENT")

    [received] = smtp.to("ana@example.com")
    html = received.message.get_body(("html",)).get_content()
    assert "<h1>ACME</h1><p>Dear &lt;script&gt;x&lt;/script&gt;</p><p>ana</p>" in html
    text_part = received.message.get_body(("plain",)).get_content()
    assert text_part.split() == ["ACME", "Dear", "<script>x</script>", "ana"]
    assert delivery["content"]["html"].startswith("<html><body><h1>ACME</h1>")


def test_a_retry_sends_the_content_stored_by_the_first_attempt(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    smtp: SmtpStandIn,
    engine: Engine,
) -> None:
    put_template(client, auth)
    smtp.plan("ana@example.com", 451)
    processes.relay()
    created = post(client, auth, send()).get_json()
    processes.worker(RETRY_BACKOFF_BASE_SECONDS="4")
    delivery = wait_delivery(client, auth, created["id"], "RETRYING")
    assert delivery["content"]["subject"] == "Order 1234 shipped"
    # What the second attempt sends comes from the delivery, not from a new render.
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE delivery SET rendered = jsonb_set(rendered, '{subject}', '\"stored\"')"
                " WHERE id = :id"
            ),
            {"id": delivery["id"]},
        )

    done = wait_delivery(client, auth, created["id"], "SENT")

    assert done["attempts"] == 2
    [received] = smtp.to("ana@example.com")
    assert received.message["Subject"] == "stored"


def test_accept_refuses_what_could_not_be_rendered_and_writes_nothing(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    put_template(client, auth)

    missing = post(client, auth, send(data={}))
    assert missing.status_code == 422
    assert ("data.orderId", "template_variable_missing") in field_rules(missing)
    french = post(
        client,
        auth,
        {
            **send(),
            "template": "fr-only",
        },
    )
    assert ("template", "template_not_found") in field_rules(french)
    assert ("channels", "template_channel_missing") in field_rules(
        post(client, auth, send(channels=["PUSH"]))
    )
    assert ("templateVersion", "template_version_not_found") in field_rules(
        post(client, auth, send(templateVersion=9))
    )
    assert ("body", "template_with_content") in field_rules(post(client, auth, send(body="x")))
    assert ("body", "missing") in field_rules(
        post(client, auth, {"channels": ["SMS"], "recipientPhone": "+14155550100"})
    )
    assert client.delete("/api/v1/templates/order-shipped", headers=auth).status_code == 204
    assert ("template", "template_archived") in field_rules(post(client, auth, send()))
    assert notifications(engine) == 0


def test_a_variable_only_one_translation_uses_is_required_at_accept(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    template = {
        "channels": {
            "SMS": {
                "body": "Order {{ data.orderId }}",
                "locales": {"fr": {"body": "Commande {{ data.orderId }} pour {{ data.city }}"}},
            }
        }
    }
    put_template(client, auth, template)
    sms = {"channels": ["SMS"], "recipientPhone": "+14155550100"}

    refused = post(client, auth, send(**sms))
    assert refused.status_code == 422
    [error] = refused.get_json()["error"]["fields"]
    assert (error["field"], error["rule"]) == ("data.city", "template_variable_missing")
    assert "locale fr" in error["message"]
    optional = {"channels": {"SMS": {"body": "{% if data.coupon %}{{ data.coupon }}{% endif %}"}}}
    put_template(client, auth, optional)
    assert post(client, auth, send(**sms)).status_code == 202


def test_the_recipients_profile_fills_user_and_the_unsubscribe_link_fills_unsubscribe_url(
    client: FlaskClient, auth: dict[str, str], processes: Processes, smtp: SmtpStandIn
) -> None:
    profile = {"email": "ana@example.com", "name": "Ana Lima", "locale": "fr"}
    assert client.put("/api/v1/users/ana", json=profile, headers=auth).status_code == 201
    template = {
        "channels": {
            "EMAIL": {
                "subject": "News for {{ user.name }}",
                "text": "Hi {{ user.name }}. Leave: {{ unsubscribeUrl }}",
                "locales": {"fr": {"subject": "Nouvelles", "text": "{{ user.name }}"}},
            }
        }
    }
    put_template(client, auth, template)
    processes.relay()
    processes.worker()

    # The profile gives the address and the name; the request's locale wins over the profile's.
    marketing = send(type="MARKETING", locale="en", recipientEmail=None)
    created = post(client, auth, {k: v for k, v in marketing.items() if v is not None})
    assert created.status_code == 202, created.get_json()
    wait_delivery(client, auth, created.get_json()["id"], "SENT")

    [received] = smtp.to("ana@example.com")
    assert received.message["Subject"] == "News for Ana Lima"
    link = received.message["List-Unsubscribe"].strip("<>")
    assert received.message.get_content().strip() == f"Hi Ana Lima. Leave: {link}"

    # Without a locale in the request, the profile's picks the translation.
    again = {k: v for k, v in send(type="MARKETING").items() if k != "recipientEmail"}
    created = post(client, auth, again)
    assert created.status_code == 202, created.get_json()
    delivery = wait_delivery(client, auth, created.get_json()["id"], "SENT")
    assert delivery["locale"] == "fr"
    assert smtp.to("ana@example.com")[1].message["Subject"] == "Nouvelles"
