"""Rendering a claimed chunk's templated deliveries for their recipients, before any is sent.

Per chunk, not per delivery: template versions are compiled once per process (bounded cache,
app/core/templating.py) and what the process lacks is fetched in one query; the rendered
content is stored on the deliveries in one statement before the first send, so a retry (and
``GET /notifications/{id}``) has exactly what was sent. A delivery rendered by an earlier attempt
comes back with the claim and is sent as stored, never rendered again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Engine

from app.core.db import retried_transaction
from app.core.domain import Channel, DeliveryStatus
from app.core.settings import Settings
from app.core.templating import Limits, TemplateProblem, Templating, request_user
from app.core.unsubscribe import UNSUBSCRIBE_PLACEHOLDER
from app.store import deliveries, templates, users
from app.store.deliveries import DeliveryResult
from app.store.templates import LAYOUT, TEMPLATE
from tasks.channels.base import Message

log = logging.getLogger(__name__)

_templating: tuple[int, Templating] | None = None
_lock = threading.Lock()


def templating(settings: Settings) -> Templating:
    """This process's templating (and compile cache); a forked child builds its own."""
    global _templating
    found = _templating
    if found is not None and found[0] == os.getpid():
        return found[1]
    with _lock:
        if _templating is None or _templating[0] != os.getpid():
            _templating = (os.getpid(), Templating(Limits.of(settings), strict_data=False))
        return _templating[1]


def recipient_contexts(conn: Connection, rows: Sequence[Any]) -> dict[uuid.UUID, dict[str, Any]]:
    """``user`` for each templated delivery of the chunk: the recipient's profile (``name``,
    ``email``, ``phone``, ``locale``, ``timezone``, ``data``), read for the whole chunk in one
    statement, with what the request said over it (``id``; its ``locale`` wins: a caller that
    names a language for one notification means it)."""
    keys = {(row.project_id, row.user_id) for row in rows if row.user_id}
    profiles = users.for_templates(conn, sorted(keys))
    return {
        row.id: {
            **profiles.get((row.project_id, row.user_id), {}),
            **request_user(row.user_id, row.locale),
        }
        for row in rows
    }


def _as_message(message: Message, channel: str, content: Mapping[str, Any]) -> Message:
    """``message`` carrying its rendered content where its channel's provider reads it."""
    if channel == Channel.EMAIL:
        return dataclasses.replace(
            message,
            subject=content["subject"],
            body=content.get("text", ""),
            html_body=content.get("html"),
        )
    if channel == Channel.WEBHOOK:
        # The rendered payload is the webhook's ``data``; the envelope stays the same.
        return dataclasses.replace(message, subject=None, body="", data=content["payload"])
    return dataclasses.replace(message, subject=content.get("title"), body=content["body"])


def render_chunk(
    engine: Engine, settings: Settings, claimed: Sequence[Any], messages: dict[uuid.UUID, Message]
) -> tuple[dict[uuid.UUID, Message], list[DeliveryResult]]:
    """``messages`` with every templated one's content rendered (or as stored by an earlier
    attempt), and a FAILED result for each that cannot be rendered (``template_limit``,
    ``template_render_failed``): those are not sent."""
    templated = [r for r in claimed if r.id in messages and r.template_key is not None]
    if not templated:
        return messages, []
    out = dict(messages)
    failed: list[DeliveryResult] = []
    fresh = [r for r in templated if r.rendered is None]
    for row in templated:
        if row.rendered is not None:
            out[row.id] = _as_message(messages[row.id], row.channel, row.rendered)
    if not fresh:
        return out, failed
    engine_templating = templating(settings)
    to_store: list[tuple[uuid.UUID, int, str | None, str]] = []

    def render(conn: Connection) -> None:
        compiled = _compiled(conn, engine_templating, fresh)
        users = recipient_contexts(conn, fresh)
        for row in fresh:
            pin = (row.project_id, row.template_key, row.template_version, row.layout_version)
            found = compiled.get(pin)
            try:
                if found is None:
                    raise TemplateProblem("the pinned template version is missing")
                template, layout = found
                rendered = engine_templating.render_channel(
                    template,
                    row.channel,
                    users[row.id].get("locale"),
                    {
                        "data": row.data or {},
                        "user": users[row.id],
                        # The email provider puts the recipient's own link in its place at send.
                        "unsubscribeUrl": UNSUBSCRIBE_PLACEHOLDER if row.channel == "EMAIL" else "",
                    },
                    layout,
                )
            except TemplateProblem as exc:
                failed.append(
                    DeliveryResult(row.id, DeliveryStatus.FAILED, None, exc.rule, exc.message)
                )
                out.pop(row.id)
                continue
            out[row.id] = _as_message(messages[row.id], row.channel, rendered.content)
            to_store.append(
                (row.id, row.attempts, rendered.locale, orjson.dumps(rendered.content).decode())
            )
        deliveries.store_rendered(conn, to_store)

    retried_transaction(engine, render)
    return out, failed


def _compiled(
    conn: Connection, engine_templating: Templating, rows: Sequence[Any]
) -> dict[tuple[str, str, int, int | None], tuple[Any, Any]]:
    """Each pinned (project, key, version, layout version) compiled, with its layout; what this
    process has not compiled yet (the template or its layout) is fetched in one query."""
    pinned = {(r.project_id, r.template_key, r.template_version, r.layout_version) for r in rows}
    have: dict[tuple[str, str, int, int | None], tuple[Any, Any]] = {}
    for project_id, key, version, layout_version in pinned:
        template = engine_templating.cached((project_id, TEMPLATE, key, version))
        if template is None:
            continue
        layout_key = template.get("layout")
        layout = None
        if layout_key is not None and layout_version is not None:
            layout = engine_templating.cached((project_id, LAYOUT, layout_key, layout_version))
            if layout is None:
                continue
        have[(project_id, key, version, layout_version)] = (template, layout)
    fetched = templates.contents(conn, [p for p in pinned if p not in have])
    for pin, (content, layout_content) in fetched.items():
        project_id, key, version, layout_version = pin
        template = engine_templating.compiled((project_id, TEMPLATE, key, version), content)
        layout = None
        if layout_content is not None:
            layout_key = (project_id, LAYOUT, template["layout"], layout_version)
            layout = engine_templating.compiled(layout_key, layout_content)
        have[pin] = (template, layout)
    return have
