"""The pages in headless Chromium: on /inbox a notification appears live and mark read works;
/docs shows the API reference; /console searches, opens, retries and cancels."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, expect, sync_playwright
from sqlalchemy import Engine

from app.api.factory import routes_only
from app.api.keys import SCOPES, create_api_key
from app.api.openapi import document
from tests.helpers.inbox import call, in_app
from tests.helpers.net import free_port
from tests.helpers.processes import Processes, wait_for
from tests.standins.smtp import SmtpStandIn

CHROMIUM = "/usr/bin/chromium"  # Debian's chromium; `make test` installs it when missing
UNREAD = re.compile(r"\bunread\b")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 900, "height": 640},
        )
        yield context
        context.close()


def test_inbox_page_shows_a_posted_notification_within_2s_and_mark_read_drops_the_count(
    processes: Processes, api_key: str, browser: BrowserContext, tmp_path: Path
) -> None:
    port = free_port()
    processes.relay()
    processes.worker(queues="inapp")
    processes.api(port, API_WORKERS="1")
    api = f"http://127.0.0.1:{port}"
    earlier = in_app("lena", "Your weekly report is ready.", subject="Weekly report", type="SYSTEM")
    call("POST", f"{api}/api/v1/notifications", api_key, earlier)
    page = browser.new_page()
    page.on("console", lambda message: print(f"browser console: {message.text}"))

    page.goto(f"{api}/inbox#user=lena&key={api_key}")
    expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    expect(page.locator(".item")).to_have_count(1)
    expect(page.locator("#unread-count")).to_have_text("1")
    assert "key=" not in page.url, "the API key is removed from the address bar"

    started = time.monotonic()
    status, created = call(
        "POST",
        f"{api}/api/v1/notifications",
        api_key,
        in_app(
            "lena",
            "Order #1234 is on its way and arrives on Thursday.",
            subject="Your order shipped",
            data={"orderId": 1234, "carrier": "DHL"},
        ),
    )
    assert status == 202, created
    arrived = page.locator(".item", has_text="Order #1234 is on its way")
    expect(arrived).to_be_visible(timeout=2_000)
    elapsed = time.monotonic() - started
    expect(page.locator("#unread-count")).to_have_text("2")
    expect(page.locator(".item").first).to_contain_text("Your order shipped")
    expect(arrived).to_have_class(UNREAD)
    live_shot = tmp_path / "inbox-live.png"
    page.screenshot(path=str(live_shot), full_page=True, animations="disabled")

    arrived.locator(".mark-read").click()
    expect(page.locator("#unread-count")).to_have_text("1", timeout=2_000)
    expect(arrived).not_to_have_class(UNREAD)
    read_shot = tmp_path / "inbox-after-mark-read.png"
    page.screenshot(path=str(read_shot), full_page=True, animations="disabled")
    print(f"\nscreenshots: {live_shot} {read_shot} (arrived {elapsed * 1000:.0f} ms after POST)")

    _, inbox = call("GET", f"{api}/api/v1/users/lena/inbox", api_key)
    assert inbox["unreadCount"] == 1
    assert [i["readAt"] is not None for i in inbox["items"]] == [True, False]
    assert elapsed < 2.0


def test_docs_page_shows_every_operation_without_a_key_and_fetches_nothing_from_outside(
    processes: Processes, browser: BrowserContext, tmp_path: Path
) -> None:
    port = free_port()
    processes.api(port, API_WORKERS="1")
    api = f"http://127.0.0.1:{port}"
    operations = [
        op["operationId"]
        for ops in document(routes_only())["paths"].values()
        for op in ops.values()
    ]
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda message: print(f"browser console: {message.text}"))

    page.goto(f"{api}/docs")

    expect(page.locator(".opblock")).to_have_count(len(operations), timeout=15_000)
    for operation_id in ("createNotification", "listNotifications", "rotateApiKey"):
        expect(page.locator(".opblock-summary-operation-id", has_text=operation_id)).to_have_count(
            1
        )
    expect(page.locator(".opblock-tag", has_text="Notifications")).to_be_visible()
    shot = tmp_path / "docs.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    outside = [url for url in requested if not url.startswith((api, "data:"))]
    assert outside == []


def test_console_searches_opens_retries_and_cancels_with_screenshots(
    processes: Processes,
    browser: BrowserContext,
    engine: Engine,
    smtp: SmtpStandIn,
    tmp_path: Path,
) -> None:
    port = free_port()
    processes.relay()
    processes.worker(queues="email")
    processes.api(port, API_WORKERS="1")
    api = f"http://127.0.0.1:{port}"
    key = create_api_key(engine, "operator", SCOPES).key
    smtp.plan("order-1234@example.com", 554)  # refused once (FAILED, not suppressed), then accepted
    _, bounced = call(
        "POST",
        f"{api}/api/v1/notifications",
        key,
        {
            "channels": ["EMAIL"],
            "recipientEmail": "order-1234@example.com",
            "subject": "Order 1234",
            "body": "Shipped.",
            "userId": "ana",
        },
    )
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    _, later = call(
        "POST",
        f"{api}/api/v1/notifications",
        key,
        {
            "channels": ["EMAIL"],
            "recipientEmail": "ana@example.com",
            "subject": "Tomorrow",
            "body": "Later.",
            "userId": "ana",
            "sendAt": tomorrow,
        },
    )

    def status_of(ident: str) -> str:
        return str(call("GET", f"{api}/api/v1/notifications/{ident}", key)[1]["status"])

    wait_for(lambda: status_of(bounced["id"]) == "FAILED", what="the refused email failed")
    page = browser.new_page()
    page.on("console", lambda message: print(f"browser console: {message.text}"))
    shots: list[Path] = []

    def shot(name: str) -> None:
        shots.append(tmp_path / f"console-{name}.png")
        page.screenshot(path=str(shots[-1]), full_page=True, animations="disabled")

    page.goto(f"{api}/console")
    page.fill("#api-key", key)
    page.click("#connect button")
    expect(page.locator("#strip")).to_be_visible()
    expect(page.locator("#failed")).to_have_text("1")

    # Search by the address the order's email went to, and open it.
    page.fill("input[name=recipient]", "order-1234@example.com")
    page.click("#search button")
    expect(page.locator("#results tbody tr")).to_have_count(1)
    shot("search")
    page.click("#results tbody tr")
    expect(page.locator("#detail-status")).to_have_text("FAILED")
    expect(page.locator("#content")).to_contain_text("Order 1234")
    expect(page.locator("#timeline tbody tr")).to_have_count(3)  # queued, sending, failed
    expect(page.locator("#deliveries tbody tr")).to_contain_text("smtp_5xx")
    shot("failed")

    # Retry now: re-queued through the outbox, then sent.
    page.click("#deliveries button.retry")
    expect(page.locator("#message")).to_have_text("Re-queued.")
    expect(page.locator("#timeline tbody tr").last).to_contain_text("FAILED → RETRYING")
    wait_for(lambda: status_of(bounced["id"]) == "SENT", what="the retried email sent")
    page.click("#results tbody tr")
    expect(page.locator("#detail-status")).to_have_text("SENT")
    shot("retried")

    # Search by user, open the scheduled one, cancel it.
    page.fill("input[name=recipient]", "")
    page.fill("input[name=user_id]", "ana")
    page.select_option("select[name=status]", "PENDING")
    page.click("#search button")
    expect(page.locator("#results tbody tr")).to_have_count(1)
    page.click("#results tbody tr")
    expect(page.locator("#detail-id")).to_have_text(later["id"])
    page.click("#cancel")
    expect(page.locator("#message")).to_have_text("Cancelled 1 delivery.")
    expect(page.locator("#detail-status")).to_have_text("CANCELLED")
    shot("cancelled")
    assert status_of(later["id"]) == "CANCELLED"
    print(f"\nscreenshots: {' '.join(str(s) for s in shots)}")
