"""Schemas of ``/api/v1/templates`` and ``/api/v1/layouts`` (validation and OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_camel

from app.api.schemas import (
    Locale,
    TemplateKey,
    UserId,
    _Camel,
    _example,
    _storable_json,
)
from app.core.domain import Channel

# One template field's Liquid source.
Source = Annotated[str, StringConstraints(max_length=100_000)]
MAX_LOCALES = 100


class EmailFields(_Camel):
    subject: Source
    text: Source | None = None
    html: Source | None = Field(
        default=None, description="Variables are HTML-escaped; `| safe` outputs one as it is"
    )

    @model_validator(mode="after")
    def _a_body(self) -> EmailFields:
        if self.text is None and self.html is None:
            raise ValueError("an email needs text or html (a text part is derived from html)")
        return self


class SmsFields(_Camel):
    body: Source


class PushFields(_Camel):
    title: Source | None = None
    body: Source


class WebhookFields(_Camel):
    payload: dict[str, Any] = Field(
        description="A JSON object; every string in it (at any depth) is a template"
    )

    @field_validator("payload")
    @classmethod
    def _payload_storable(cls, payload: dict[str, Any]) -> dict[str, Any]:
        _storable_json(payload)
        return payload


class EmailContent(EmailFields):
    locales: dict[Locale, EmailFields] | None = Field(default=None, max_length=MAX_LOCALES)


class SmsContent(SmsFields):
    locales: dict[Locale, SmsFields] | None = Field(default=None, max_length=MAX_LOCALES)


class PushContent(PushFields):
    locales: dict[Locale, PushFields] | None = Field(default=None, max_length=MAX_LOCALES)


class WebhookContent(WebhookFields):
    locales: dict[Locale, WebhookFields] | None = Field(default=None, max_length=MAX_LOCALES)


class TemplateChannels(_Camel):
    """Content per channel, named as the channels are."""

    model_config = ConfigDict(alias_generator=None)

    EMAIL: EmailContent | None = None
    SMS: SmsContent | None = None
    PUSH: PushContent | None = None
    IN_APP: PushContent | None = None
    WEBHOOK: WebhookContent | None = None

    @model_validator(mode="after")
    def _one_channel(self) -> TemplateChannels:
        if not self.model_dump(exclude_none=True):
            raise ValueError("a template needs content for at least one channel")
        return self


_CHANNELS_EXAMPLE: dict[str, Any] = {
    "EMAIL": {
        "subject": "Order {{ data.orderId }} shipped",
        "text": "Hi {{ user.name }}, it is on its way.",
        "locales": {"fr": {"subject": "Commande {{ data.orderId }} expédiée"}},
    },
    "SMS": {"body": "Order {{ data.orderId }} shipped"},
}
_TEMPLATE_VIEW_EXAMPLE: dict[str, Any] = {
    "key": "order-shipped",
    "version": 2,
    "latestVersion": 2,
    "channels": _CHANNELS_EXAMPLE,
    "layout": "brand",
    "createdAt": "2026-12-04T10:00:00Z",
    "archivedAt": None,
}
_LAYOUT_VIEW_EXAMPLE: dict[str, Any] = {
    "key": "brand",
    "version": 1,
    "latestVersion": 1,
    "html": "<html><body>{{ content }}</body></html>",
    "text": None,
    "createdAt": "2026-12-04T10:00:00Z",
    "archivedAt": None,
}


class TemplatePut(_Camel):
    """``PUT /templates/{key}``: the content of the template's next version."""

    model_config = _example({"channels": _CHANNELS_EXAMPLE, "layout": "brand"})

    channels: TemplateChannels
    layout: TemplateKey | None = Field(
        default=None, description="A layout's key: its html (and text) wrap EMAIL's"
    )


class LayoutPut(_Camel):
    """``PUT /layouts/{key}``: an email wrapper; ``{{ content }}`` is where the email goes."""

    model_config = _example({"html": "<html><body>{{ content }}</body></html>"})

    html: Source
    text: Source | None = None


class _View(_Camel):
    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)


class TemplateView(_View):
    model_config = _example(_TEMPLATE_VIEW_EXAMPLE, _View.model_config)

    key: str
    version: int
    latest_version: int
    channels: dict[str, Any]
    layout: str | None
    created_at: datetime = Field(description="When this version was written")
    archived_at: datetime | None


class LayoutView(_View):
    model_config = _example(_LAYOUT_VIEW_EXAMPLE, _View.model_config)

    key: str
    version: int
    latest_version: int
    html: str
    text: str | None
    created_at: datetime = Field(description="When this version was written")
    archived_at: datetime | None


class TemplatePage(_View):
    model_config = _example(
        {"items": [_TEMPLATE_VIEW_EXAMPLE], "nextCursor": None}, _View.model_config
    )

    items: list[TemplateView]
    next_cursor: str | None


class LayoutPage(_View):
    model_config = _example(
        {"items": [_LAYOUT_VIEW_EXAMPLE], "nextCursor": None}, _View.model_config
    )

    items: list[LayoutView]
    next_cursor: str | None


class TemplateListQuery(_Camel):
    model_config = ConfigDict(
        alias_generator=None, extra="forbid", validate_by_alias=True, validate_by_name=True
    )

    cursor: TemplateKey | None = None
    limit: int = Field(default=50, ge=1, le=100)
    archived: bool = False


class TemplatePreview(_Camel):
    """``POST /templates/{key}/preview``: render without sending."""

    model_config = _example({"data": {"orderId": 1234}, "userId": "ana", "locale": "fr"})

    data: dict[str, Any] | None = None
    user_id: UserId | None = None
    locale: Locale | None = None
    channels: list[Channel] | None = Field(default=None, min_length=1, max_length=len(Channel))
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)

    @field_validator("data")
    @classmethod
    def _data_storable(cls, data: dict[str, Any] | None) -> dict[str, Any] | None:
        if data is not None:
            _storable_json(data)
        return data


class RenderedChannel(_View):
    locale: str | None = Field(description="The template locale used (null: its default)")
    content: dict[str, Any]


class PreviewView(_View):
    model_config = _example(
        {
            "key": "order-shipped",
            "version": 2,
            "channels": {
                "SMS": {"locale": "fr", "content": {"body": "Commande 1234 expédiée"}},
            },
        },
        _View.model_config,
    )

    key: str
    version: int
    channels: dict[str, RenderedChannel]
