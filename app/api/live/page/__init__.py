"""``/inbox``: a small page that shows one user's in-app notifications arriving live.

Plain HTML, CSS and JavaScript shipped in the package; no build step. The page asks for a user
id and an API key (kept in the page's memory only), fetches the user's recent items and a
WebSocket token with the key, and follows the socket. ``notification-service dev`` prints a
link that fills both in through the URL fragment, which browsers never send to the server.
"""

from __future__ import annotations

from flask import Blueprint, Response

from app.api.params import static_page

blueprint = Blueprint("page", __name__, static_folder="static", static_url_path="/inbox/static")


@blueprint.get("/inbox")
def inbox_page() -> Response:
    return static_page(blueprint, "inbox.html")
