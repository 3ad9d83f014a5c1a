"""Templates are written by API callers: injection refused or bounded (README, "Escaping and
limits"), through preview (the API's strict rendering) and the workers' rendering alike; and
preview itself."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from app.core.templating import Limits, RenderLimit, Templating
from tests.helpers.api import field_rules

ATTACKS = {
    "nested loops": "{% for a in (1..1000) %}{% for b in (1..1000) %}x{% endfor %}{% endfor %}",
    "billion laughs": "{% assign a = 'lol' %}" + "{% assign a = a | append: a %}" * 40 + "{{ a }}",
    "output size": "{% for a in (1..100) %}{% for b in (1..100) %}"
    + "x" * 1000
    + "{% endfor %}{% endfor %}",
    "capture size": "{% capture c %}{% for a in (1..100) %}{% for b in (1..100) %}"
    + "x" * 1000
    + "{% endfor %}{% endfor %}{% endcapture %}",
}


def sms(body: str) -> dict[str, Any]:
    return {"channels": {"SMS": {"body": body}}}


def render(templating: Templating, source: str, data: Any = None) -> str:
    compiled = templating.compiled(source, sms(source))
    context = {"data": data or {}, "user": {"id": "ana"}}
    return str(templating.render_channel(compiled, "SMS", None, context).content["body"])


@pytest.mark.parametrize("source", list(ATTACKS.values()), ids=list(ATTACKS))
def test_loops_assignments_and_output_are_bounded_in_the_worker(source: str) -> None:
    templating = Templating(Limits(), strict_data=False)

    with pytest.raises(RenderLimit):
        render(templating, source)


def test_a_render_past_its_time_limit_is_stopped() -> None:
    # Within every other limit: 10,000 iterations of filters, no output until the end.
    slow = (
        "{% for a in (1..100) %}{% for b in (1..100) %}"
        "{% assign x = user.id | upcase | downcase | append: a | prepend: b %}"
        "{% endfor %}{% endfor %}{{ x }}"
    )
    generous = Templating(Limits(render_timeout_ms=10_000), strict_data=False)
    assert render(generous, slow) == "100ana100"

    with pytest.raises(RenderLimit, match="TEMPLATE_RENDER_TIMEOUT_MS"):
        render(Templating(Limits(render_timeout_ms=1), strict_data=False), slow)


@pytest.mark.parametrize(
    "source",
    [
        "{{ user.__class__ }}",
        "{{ user.__class__.__mro__ }}",
        "{{ data.__class__.__subclasses__ }}",
        "{{ user.id.__class__ }}{{ user.id.upper }}",
        "{{ user.items }}{{ user.keys }}{{ data.__dict__ }}",
        "{{ user['__class__'] }}",
    ],
)
def test_no_python_attribute_is_reachable(source: str) -> None:
    templating = Templating(Limits(), strict_data=False)

    assert render(templating, source) == ""


def test_tags_that_read_other_templates_or_files_render_nothing_of_them() -> None:
    templating = Templating(Limits(), strict_data=False)

    for source in ("{% include '/etc/passwd' %}", "{% render '/etc/passwd' %}"):
        with pytest.raises(Exception) as refused:
            render(templating, source)
        assert "root:" not in str(refused.value)


def test_preview_renders_each_channel_without_sending(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    template = {
        "channels": {
            "EMAIL": {
                "subject": "Hi {{ data.name }}",
                "html": "<b>{{ data.name }}</b>{{ data.name | safe }}",
                "locales": {"pt": {"subject": "Olá {{ data.name }}", "text": "Olá"}},
            },
            "WEBHOOK": {"payload": {"event": "hi", "who": {"name": "{{ data.name }}"}}},
        }
    }
    assert client.put("/api/v1/templates/hi", json=template, headers=auth).status_code == 201

    preview = client.post(
        "/api/v1/templates/hi/preview",
        json={"data": {"name": "<i>Ana</i>"}, "locale": "pt-BR", "userId": "ana"},
        headers=auth,
    )

    assert preview.status_code == 200
    body = preview.get_json()
    assert (body["key"], body["version"]) == ("hi", 1)
    assert body["channels"]["EMAIL"] == {
        "locale": "pt",
        "content": {"subject": "Olá <i>Ana</i>", "text": "Olá"},
    }
    assert body["channels"]["WEBHOOK"]["content"] == {
        "payload": {"event": "hi", "who": {"name": "<i>Ana</i>"}}
    }
    default = client.post(
        "/api/v1/templates/hi/preview",
        json={"data": {"name": "<i>Ana</i>"}, "channels": ["EMAIL"]},
        headers=auth,
    ).get_json()
    assert default["channels"]["EMAIL"]["content"]["html"] == (
        "<b>&lt;i&gt;Ana&lt;/i&gt;</b><i>Ana</i>"
    )
    assert default["channels"]["EMAIL"]["content"]["text"] == "<i>Ana</i>Ana"
    assert list(default["channels"]) == ["EMAIL"]


def test_preview_answers_a_sends_errors(client: FlaskClient, auth: dict[str, str]) -> None:
    loops = sms(ATTACKS["nested loops"])
    assert client.put("/api/v1/templates/loops", json=loops, headers=auth).status_code == 201
    assert (
        client.put("/api/v1/templates/t", json=sms("{{ data.x }}"), headers=auth).status_code == 201
    )

    def preview(key: str, body: Any) -> Any:
        return client.post(f"/api/v1/templates/{key}/preview", json=body, headers=auth)

    assert ("template", "template_limit") in field_rules(preview("loops", {}))
    assert ("data.x", "template_variable_missing") in field_rules(preview("t", {"data": {}}))
    assert ("channels", "template_channel_missing") in field_rules(
        preview("t", {"data": {"x": 1}, "channels": ["EMAIL"]})
    )
    assert ("template", "template_not_found") in field_rules(preview("nope", {}))
    assert preview("t", {"data": {"x": 1}}).get_json()["channels"]["SMS"]["content"] == {
        "body": "1"
    }
