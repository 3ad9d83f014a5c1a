"""``/u/{token}``: one-click unsubscribe (RFC 8058), without an API key.

A mail client's one-click ``POST`` with the body ``List-Unsubscribe=One-Click`` opts the user out
at once, with no confirmation step (RFC 8058 §3); a token of an email sent to an address alone
puts the address on the suppression list as ``unsubscribed``. A person following the link gets
a page (``GET``) whose one button makes the same ``POST``: a ``GET`` changes nothing, since
link scanners fetch links. The token is signed (app/core/unsubscribe.py): a forged or altered
one is 400 and changes nothing.
"""

from __future__ import annotations

import html

from flask import Blueprint, Response, request

from app.api.context import api_context
from app.api.errors import ApiError
from app.api.schemas import FieldError
from app.core import unsubscribe
from app.core.db import transaction
from app.store import preferences, suppressions

blueprint = Blueprint("unsubscribe", __name__)

ONE_CLICK = "One-Click"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Unsubscribe</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 3rem auto">
{content}
</body></html>"""

_CONFIRM = """<h1>Unsubscribe</h1>
<p>Stop receiving {what} by {channel}?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form>"""

_DONE = """<h1>You are unsubscribed</h1><p>You will no longer receive {what} by {channel}.</p>"""


@blueprint.get("/u/<token>")
def confirm(token: str) -> Response:
    scope = _verified(token)
    return _page(_CONFIRM, scope)


@blueprint.post("/u/<token>")
def one_click(token: str) -> Response:
    scope = _verified(token)
    if request.form.get("List-Unsubscribe") != ONE_CLICK:
        raise ApiError(
            400,
            "one_click_required",
            "The body must be List-Unsubscribe=One-Click (RFC 8058).",
            [
                FieldError(
                    field="List-Unsubscribe",
                    rule="one_click",
                    message="must be One-Click, form-encoded",
                )
            ],
        )
    with transaction(api_context().engine) as conn:
        if isinstance(scope, unsubscribe.AddressScope):
            suppressions.unsubscribe(
                conn, scope.project_id, scope.channel, scope.address_key, scope.delivery_id
            )
        else:
            preferences.opt_out(
                conn, scope.project_id, scope.user_id, scope.category, scope.channel
            )
    return _page(_DONE, scope)


def _verified(token: str) -> unsubscribe.Scope | unsubscribe.AddressScope:
    settings = api_context().settings
    if not settings.unsubscribe_secret:
        raise ApiError(
            503, "unsubscribe_disabled", "Unsubscribe links are not enabled (UNSUBSCRIBE_SECRET)."
        )
    try:
        return unsubscribe.verify(settings.unsubscribe_secret, token)
    except unsubscribe.TokenError:
        raise ApiError(400, "invalid_token", "This unsubscribe link is not valid.") from None


def _page(template: str, scope: unsubscribe.Scope | unsubscribe.AddressScope) -> Response:
    if isinstance(scope, unsubscribe.AddressScope):
        what = "optional messages at this address"
    else:
        what = f"“{scope.category}” messages" if scope.category else "these messages"
    content = template.format(what=html.escape(what), channel=html.escape(scope.channel.lower()))
    return Response(_PAGE.format(content=content), mimetype="text/html")
