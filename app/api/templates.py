"""``/api/v1/templates`` and ``/api/v1/layouts``: versioned content, archiving, preview; and
what a send naming a template is checked against at accept (:func:`pin_for_send`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from flask import Blueprint, Response, g, request
from pydantic import BaseModel, Field

from app.api import openapi
from app.api.auth import require_api_key
from app.api.context import api_context
from app.api.errors import ApiError
from app.api.openapi import operation
from app.api.params import json_response, parse_body, validate
from app.api.schemas import FieldError, NotificationCreate, TemplateKey
from app.api.template_schemas import (
    LayoutPage,
    LayoutPut,
    LayoutView,
    PreviewView,
    TemplateListQuery,
    TemplatePage,
    TemplatePreview,
    TemplatePut,
    TemplateView,
)
from app.core.db import transaction
from app.core.templating import TemplateProblem, Templating, VariableMissing, request_user
from app.store import templates
from app.store.templates import LAYOUT, TEMPLATE

blueprint = Blueprint("templates", __name__)
layouts_blueprint = Blueprint("layouts", __name__)
blueprint.before_request(require_api_key)
layouts_blueprint.before_request(require_api_key)
openapi.tag(
    blueprint, "Templates", "Versioned content per channel and locale, rendered per recipient."
)
openapi.tag(layouts_blueprint, "Layouts", "Versioned email wrappers that templates name.")
_PATH = {"key": TemplateKey, "version": Annotated[int, Field(ge=1)]}

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _key(key: str) -> str:
    """The path's key (as TemplateKey), or 422 naming it."""
    if not _KEY.fullmatch(key):
        raise ApiError.invalid(
            [
                FieldError(
                    field="key",
                    rule="template_key",
                    message="1 to 128 of letters, digits, '.', '_' and '-', starting with a"
                    " letter or digit",
                )
            ],
            where="path",
        )
    return key


def _json_body(model: type[Any]) -> Any:
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json.")
    return parse_body(model, request.get_data())


def _template_view(found: templates.Version) -> dict[str, Any]:
    return {
        "key": found.key,
        "version": found.version,
        "latestVersion": found.latest_version,
        "channels": found.content["channels"],
        "layout": found.content.get("layout"),
        "createdAt": found.created_at,
        "archivedAt": found.archived_at,
    }


def _layout_view(found: templates.Version) -> dict[str, Any]:
    return {
        "key": found.key,
        "version": found.version,
        "latestVersion": found.latest_version,
        "html": found.content["html"],
        "text": found.content.get("text"),
        "createdAt": found.created_at,
        "archivedAt": found.archived_at,
    }


def _syntax_errors(templating: Templating, content: Mapping[str, Any]) -> list[FieldError]:
    return [
        FieldError(
            field=path,
            rule=problem.rule,
            message=problem.message,
            line=problem.line,
            column=problem.column,
        )
        for path, problem in templating.syntax_errors(content)
    ]


def _created(view: type[BaseModel], body: dict[str, Any], kind: str) -> Response:
    response = json_response(view, body, 201)
    response.headers["Location"] = f"/api/v1/{kind}s/{body['key']}/versions/{body['version']}"
    return response


@blueprint.put("/<key>")
@operation(
    "putTemplate",
    "Add the next version of a template (created at its first); one that does not"
    " compile is refused with its line and column",
    body=TemplatePut,
    responses={201: TemplateView},
    errors=(415,),
    path=_PATH,
)
def put_template(key: str) -> Response:
    key = _key(key)
    body = _json_body(TemplatePut)
    content = body.model_dump(mode="json", exclude_none=True)
    # Refused at PUT, so a stored template always compiles: a send never meets a syntax error.
    problems = _syntax_errors(api_context().templating, content["channels"])
    if problems:
        for problem in problems:
            problem.field = f"channels.{problem.field}"
        raise ApiError.invalid(problems)
    with transaction(api_context().engine) as conn:
        layout = body.layout
        if layout is not None and not templates.is_live(conn, g.project_id, LAYOUT, layout):
            raise ApiError.invalid(
                [FieldError(field="layout", rule="layout_not_found", message="no such layout")]
            )
        written = templates.put(conn, g.project_id, TEMPLATE, key, content)
    return _created(TemplateView, _template_view(written), TEMPLATE)


@layouts_blueprint.put("/<key>")
@operation(
    "putLayout",
    "Add the next version of a layout (created at its first)",
    body=LayoutPut,
    responses={201: LayoutView},
    errors=(415,),
    path=_PATH,
)
def put_layout(key: str) -> Response:
    key = _key(key)
    body = _json_body(LayoutPut)
    content = body.model_dump(mode="json", exclude_none=True)
    problems = _syntax_errors(api_context().templating, content)
    if problems:
        raise ApiError.invalid(problems)
    with transaction(api_context().engine) as conn:
        written = templates.put(conn, g.project_id, LAYOUT, key, content)
    return _created(LayoutView, _layout_view(written), LAYOUT)


def _get(kind: str, key: str, version: int | None) -> templates.Version:
    with transaction(api_context().engine) as conn:
        found = templates.get(conn, g.project_id, kind, _key(key), version)
    if found is None:
        raise ApiError(404, "not_found", f"No {kind} has this key (and version).")
    return found


def _version(version: str) -> int:
    if not version.isdigit() or not 1 <= int(version) < 2**31:
        raise ApiError.invalid(
            [FieldError(field="version", rule="int", message="a version number, from 1")],
            where="path",
        )
    return int(version)


@blueprint.get("/<key>")
@operation(
    "getTemplate",
    "The template's latest version",
    responses={200: TemplateView},
    errors=(404,),
    path=_PATH,
)
def get_template(key: str) -> Response:
    return json_response(TemplateView, _template_view(_get(TEMPLATE, key, None)))


@blueprint.get("/<key>/versions/<version>")
@operation(
    "getTemplateVersion",
    "One version of the template",
    responses={200: TemplateView},
    errors=(404,),
    path=_PATH,
)
def get_template_version(key: str, version: str) -> Response:
    found = _get(TEMPLATE, key, _version(version))
    return json_response(TemplateView, _template_view(found))


@layouts_blueprint.get("/<key>")
@operation(
    "getLayout",
    "The layout's latest version",
    responses={200: LayoutView},
    errors=(404,),
    path=_PATH,
)
def get_layout(key: str) -> Response:
    return json_response(LayoutView, _layout_view(_get(LAYOUT, key, None)))


@layouts_blueprint.get("/<key>/versions/<version>")
@operation(
    "getLayoutVersion",
    "One version of the layout",
    responses={200: LayoutView},
    errors=(404,),
    path=_PATH,
)
def get_layout_version(key: str, version: str) -> Response:
    return json_response(LayoutView, _layout_view(_get(LAYOUT, key, _version(version))))


def _list(kind: str) -> tuple[list[templates.Version], str | None]:
    query = validate(TemplateListQuery, dict(request.args), where="query string")
    with transaction(api_context().engine) as conn:
        found = templates.list_(
            conn, g.project_id, kind, query.cursor or "", query.limit + 1, query.archived
        )
    page = found[: query.limit]
    return page, (page[-1].key if len(found) > query.limit else None)


@blueprint.get("")
@operation(
    "listTemplates",
    "List templates by key, each at its latest version",
    query=TemplateListQuery,
    responses={200: TemplatePage},
    path=_PATH,
)
def list_templates() -> Response:
    page, cursor = _list(TEMPLATE)
    items = [_template_view(v) for v in page]
    return json_response(TemplatePage, {"items": items, "nextCursor": cursor})


@layouts_blueprint.get("")
@operation(
    "listLayouts",
    "List layouts by key, each at its latest version",
    query=TemplateListQuery,
    responses={200: LayoutPage},
    path=_PATH,
)
def list_layouts() -> Response:
    page, cursor = _list(LAYOUT)
    items = [_layout_view(v) for v in page]
    return json_response(LayoutPage, {"items": items, "nextCursor": cursor})


def _archive(kind: str, key: str) -> Response:
    with transaction(api_context().engine) as conn:
        archived = templates.archive(conn, g.project_id, kind, _key(key))
    if not archived:
        raise ApiError(404, "not_found", f"No live {kind} has this key.")
    return Response(status=204)


@blueprint.delete("/<key>")
@operation(
    "archiveTemplate",
    "Archive the template: sends naming it are refused from then on",
    responses={204: None},
    errors=(404,),
    path=_PATH,
)
def archive_template(key: str) -> Response:
    return _archive(TEMPLATE, key)


@layouts_blueprint.delete("/<key>")
@operation(
    "archiveLayout",
    "Archive the layout: sends naming it are refused from then on",
    responses={204: None},
    errors=(404,),
    path=_PATH,
)
def archive_layout(key: str) -> Response:
    return _archive(LAYOUT, key)


@dataclass(frozen=True)
class Pinned:
    """What a notification is accepted with: the template version and its layout's."""

    key: str
    version: int
    layout_version: int | None


@dataclass(frozen=True)
class _Loaded:
    key: str
    version: int
    compiled: Any
    layout_version: int | None
    layout: Any


def _load(conn: Any, project_id: str, key: str, version: int | None, version_field: str) -> _Loaded:
    """The template version a send or a preview names, compiled; 422 if it cannot be used."""
    found = templates.for_send(conn, project_id, key, version)

    def refused(field: str, rule: str, message: str) -> ApiError:
        return ApiError.invalid([FieldError(field=field, rule=rule, message=message)])

    if found is None:
        if version is not None and templates.get(conn, project_id, TEMPLATE, key) is not None:
            raise refused(version_field, "template_version_not_found", "no such version")
        raise refused("template", "template_not_found", f"no template has the key {key!r}")
    if found.archived:
        raise refused("template", "template_archived", f"the template {key!r} is archived")
    layout_key = found.content.get("layout")
    if layout_key is not None and found.layout_version is None:
        raise refused(
            "template", "layout_not_found", f"the template's layout {layout_key!r} is archived"
        )
    templating = api_context().templating
    compiled = templating.compiled((project_id, TEMPLATE, key, found.version), found.content)
    layout = None
    if layout_key is not None and found.layout_content is not None:
        layout = templating.compiled(
            (project_id, LAYOUT, layout_key, found.layout_version), found.layout_content
        )
    return _Loaded(key, found.version, compiled, found.layout_version, layout)


def _render_all(
    loaded: _Loaded, channels: list[str], locale: str | None, context: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Each channel rendered for ``locale``; 422 for a channel the template lacks or a render
    that fails (a ``data.*`` variable the request lacks names it)."""
    templating = api_context().templating
    problems: list[FieldError] = []
    rendered: dict[str, dict[str, Any]] = {}
    for channel in channels:
        if channel not in loaded.compiled["channels"]:
            problems.append(
                FieldError(
                    field="channels",
                    rule="template_channel_missing",
                    message=f"the template has no content for channel {channel}",
                )
            )
            continue
        # At accept every translation must render, not only the one this request's locale
        # picks: a recipient's profile may pick another.
        tags = [None, *(loaded.compiled["channels"][channel].get("locales") or {})]
        for tag in [locale, *tags] if locale else tags:
            try:
                done = templating.render_channel(
                    loaded.compiled, channel, tag, context, loaded.layout
                )
            except VariableMissing as exc:
                problems.append(
                    FieldError(
                        field=exc.variable,
                        rule=exc.rule,
                        message=f"{exc.message} (channel {channel}, locale {tag or 'default'})",
                    )
                )
                break
            except TemplateProblem as exc:
                problems.append(FieldError(field="template", rule=exc.rule, message=exc.message))
                break
            if tag == locale or (locale is None and tag is None):
                rendered.setdefault(channel, {"locale": done.locale, "content": done.content})
    if problems:
        raise ApiError.invalid(problems)
    return rendered


def content_problems(body: NotificationCreate) -> list[FieldError]:
    """A notification has its own content (``body``, ``subject``, ``htmlBody``) or a
    ``template``, not both."""
    if body.template is None:
        problems = []
        if body.body is None:
            problems.append(FieldError(field="body", rule="missing", message="Field required"))
        if body.template_version is not None:
            problems.append(
                FieldError(
                    field="templateVersion",
                    rule="template_missing",
                    message="templateVersion needs template",
                )
            )
        return problems
    return [
        FieldError(
            field=field,
            rule="template_with_content",
            message=f"{field} cannot be given with a template, which renders it",
        )
        for field, value in (
            ("subject", body.subject),
            ("body", body.body),
            ("htmlBody", body.html_body),
        )
        if value is not None
    ]


def pin_for_send_request(project_id: str, body: NotificationCreate) -> Pinned | None:
    """:func:`pin_for_send` for a request naming a template; None for one with its own
    content."""
    if body.template is None:
        return None
    # One read, so one autocommitted round trip: a transaction around it (BEGIN, SELECT,
    # COMMIT) tripled the round trips and the time each request holds a pooled connection.
    with api_context().engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return pin_for_send(conn, project_id, body)


def pin_for_send(conn: Any, project_id: str, body: NotificationCreate) -> Pinned:
    """The template version a send is accepted with (the latest unless it names one), after
    checking that every requested channel renders with the request's own ``data``."""
    assert body.template is not None
    loaded = _load(conn, project_id, body.template, body.template_version, "templateVersion")
    context = {"data": body.data or {}, "user": request_user(body.user_id, body.locale)}
    _render_all(loaded, [c.value for c in body.channels], body.locale, context)
    return Pinned(loaded.key, loaded.version, loaded.layout_version)


@blueprint.post("/<key>/preview")
@operation(
    "previewTemplate",
    "Render the template per channel for data, a user and a locale, without sending;"
    " the errors a send would get",
    body=TemplatePreview,
    responses={200: PreviewView},
    errors=(415,),
    path=_PATH,
)
def preview(key: str) -> Response:
    key = _key(key)
    body = _json_body(TemplatePreview)
    with transaction(api_context().engine) as conn:
        loaded = _load(conn, g.project_id, key, body.version, "version")
    channels = (
        [c.value for c in body.channels]
        if body.channels is not None
        else list(loaded.compiled["channels"])
    )
    context = {"data": body.data or {}, "user": request_user(body.user_id, body.locale)}
    rendered = _render_all(loaded, channels, body.locale, context)
    return json_response(
        PreviewView, {"key": loaded.key, "version": loaded.version, "channels": rendered}
    )
