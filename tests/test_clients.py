"""Clients that tools nobody here wrote generate from the document the running API serves.

A Python client from ``openapi-python-client`` drives every operation it generated against the
real stack (gunicorn API, relay, Celery worker, the SMTP stand-in), and the answers come back as
its typed models; TypeScript types from ``openapi-typescript`` type-check a usage file with
``tsc``. The commands are the README's ("Generated clients"); ``make test`` installs both tools.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import Engine

from app.api.keys import SCOPES, create_api_key
from tests.helpers.net import free_port
from tests.helpers.processes import BIN, ROOT, Processes, wait_for
from tests.standins.smtp import SmtpStandIn

PYTHON_CONFIG = ROOT / "clients" / "openapi-python-client.yaml"
TYPESCRIPT = ROOT / "clients" / "typescript"
NPM_BIN = TYPESCRIPT / "node_modules" / ".bin"


@pytest.fixture
def api(processes: Processes) -> str:
    port = free_port()
    processes.relay()
    processes.worker(queues="email,inapp")
    processes.api(port, API_WORKERS="1")
    return f"http://127.0.0.1:{port}"


def generate_python_client(url: str, where: Path) -> ModuleType:
    """``openapi-python-client generate`` from the served document, imported fresh."""
    done = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--url",
            f"{url}/api/v1/openapi.json",
            "--config",
            str(PYTHON_CONFIG),
            "--meta",
            "none",
            "--output-path",
            str(where / "notification_client"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # The generator reports what it skipped as warnings and still exits 0: none is allowed.
    assert done.returncode == 0 and "Warning" not in done.stdout + done.stderr, done.stdout
    for name in [m for m in sys.modules if m.split(".")[0] == "notification_client"]:
        del sys.modules[name]
    sys.path.insert(0, str(where))
    try:
        return importlib.import_module("notification_client")
    finally:
        sys.path.remove(str(where))


class Driven:
    """The generated client's operations, recording which ones the test called."""

    def __init__(self, package: ModuleType, where: Path) -> None:
        self.package = package
        self.generated = {
            f"{module.parent.name}.{module.stem}"
            for module in (where / "notification_client" / "api").glob("*/*.py")
            if module.stem != "__init__"
        }
        self.called: set[str] = set()

    def __call__(self, name: str) -> Any:
        self.called.add(name)
        return importlib.import_module(f"notification_client.api.{name}")


@pytest.fixture
def generated(api: str, tmp_path: Path) -> Iterator[tuple[ModuleType, Driven]]:
    package = generate_python_client(api, tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        yield package, Driven(package, tmp_path)
    finally:
        sys.path.remove(str(tmp_path))


def test_a_generated_python_client_drives_every_operation_with_typed_results(
    api: str, generated: tuple[ModuleType, Driven], engine: Engine, smtp: SmtpStandIn
) -> None:
    package, op = generated
    models = importlib.import_module("notification_client.models")
    key = create_api_key(engine, "client", SCOPES).key
    client = package.AuthenticatedClient(base_url=api, token=key, raise_on_unexpected_status=True)
    anonymous = package.Client(base_url=api)

    # Health and the document: no key.
    for name in ("health.get_health", "health.get_liveness", "health.get_readiness"):
        health = op(name).sync(client=anonymous)
        assert (
            isinstance(health, models.HealthCheck) and health.status is models.HealthCheckStatus.OK
        )
    served = op("meta.get_open_api_document").sync(client=anonymous)
    assert served.additional_properties["openapi"] == "3.1.0"

    # Devices.
    registration = models.DeviceRegistration(
        platform=models.PushPlatform.FCM, token="client-token-1", app_id="com.example.app"
    )
    created = op("devices.register_device").sync_detailed("ana", client=client, body=registration)
    again = op("devices.register_device").sync_detailed("ana", client=client, body=registration)
    assert (created.status_code, again.status_code) == (201, 200)
    device = created.parsed
    assert isinstance(device, models.DeviceView) and isinstance(device.id, uuid.UUID)
    assert device.platform is models.PushPlatform.FCM and device.active is True
    listed = op("devices.list_devices").sync("ana", client=client)
    assert [d.id for d in listed.items] == [device.id]
    removed = op("devices.delete_device").sync_detailed("ana", device.id, client=client)
    missing = op("devices.delete_device").sync("ana", device.id, client=client)
    assert removed.status_code == 204
    assert isinstance(missing, models.ErrorBody) and missing.error.code == "not_found"

    # Notifications: create (and replay), get, list with every filter and a cursor, cancel.
    started = datetime.now(UTC) - timedelta(seconds=1)
    body = models.NotificationCreate(
        channels=[models.Channel.EMAIL, models.Channel.IN_APP],
        body="It arrives on Thursday.",
        subject="Your order shipped",
        recipient_email="ana@example.com",
        user_id="ana",
        priority=models.Priority.HIGH,
        data=models.NotificationCreateDataType0.from_dict({"orderId": 1234}),
    )
    create = op("notifications.create_notification")
    first = create.sync(client=client, body=body, idempotency_key="order-1234")
    replay = create.sync_detailed(client=client, body=body, idempotency_key="order-1234")
    assert isinstance(first, models.NotificationView) and isinstance(first.created_at, datetime)
    assert replay.parsed.id == first.id and replay.headers["Idempotent-Replayed"] == "true"
    assert {d.channel for d in first.deliveries} == {models.Channel.EMAIL, models.Channel.IN_APP}
    refused = create.sync(
        client=client, body=models.NotificationCreate(channels=[models.Channel.SMS], body="x")
    )
    assert isinstance(refused, models.ErrorBody) and refused.error.code == "validation_failed"
    assert [(f.field, f.rule) for f in refused.error.fields] == [
        ("recipientPhone", "required_for_channel")
    ]

    get = op("notifications.get_notification")

    def sent() -> Any:
        found = get.sync(first.id, client=client)
        return found if found.status is models.NotificationStatus.SENT else None

    delivered = wait_for(sent, timeout=30, what="both deliveries sent")
    assert all(d.status is models.DeliveryStatus.SENT for d in delivered.deliveries)
    assert all(isinstance(d.sent_at, datetime) for d in delivered.deliveries)

    later = create.sync(
        client=client,
        body=models.NotificationCreate(
            channels=[models.Channel.IN_APP],
            body="Tomorrow",
            user_id="ana",
            type_=models.NotificationType.MARKETING,
            send_at=datetime.now(UTC) + timedelta(days=1),
        ),
    )
    cancel = op("notifications.cancel_notification")
    cancelled = cancel.sync(later.id, client=client)
    assert isinstance(cancelled, models.CancelResult) and cancelled.cancelled == 1
    assert cancelled.notification.status is models.NotificationStatus.CANCELLED
    twice = cancel.sync(later.id, client=client)
    assert isinstance(twice, models.ErrorBody) and twice.error.code == "not_cancellable"

    listing = op("notifications.list_notifications")

    def ids(**filters: Any) -> list[uuid.UUID]:
        page = listing.sync(client=client, **filters)
        assert isinstance(page, models.NotificationPage)
        return [n.id for n in page.items]

    assert ids() == [later.id, first.id]
    assert ids(status=models.NotificationStatus.SENT) == [first.id]
    assert ids(status=models.NotificationStatus.CANCELLED) == [later.id]
    assert ids(channel=models.Channel.EMAIL) == [first.id]
    assert ids(type_=models.NotificationType.MARKETING) == [later.id]
    assert ids(created_after=started) == [later.id, first.id]
    assert ids(created_before=started) == []
    page = listing.sync(client=client, limit=1)
    assert [n.id for n in page.items] == [later.id] and isinstance(page.next_cursor, str)
    assert ids(limit=1, cursor=page.next_cursor) == [first.id]

    # The inbox the IN_APP delivery filled, and a WebSocket token.
    inbox = op("inbox.list_inbox_items").sync("ana", client=client, unread=True)
    assert isinstance(inbox, models.InboxPage) and inbox.unread_count == 1
    [item] = inbox.items
    assert item.notification_id == first.id and item.title == "Your order shipped"
    assert item.data.additional_properties == {"orderId": 1234}
    read = op("inbox.mark_inbox_item_read").sync("ana", item.id, client=client)
    assert isinstance(read, models.InboxItemView) and isinstance(read.read_at, datetime)
    all_read = op("inbox.mark_all_inbox_items_read").sync("ana", client=client)
    assert isinstance(all_read, models.InboxReadResult)
    assert (all_read.marked, all_read.unread_count) == (0, 0)
    deleted = op("inbox.delete_inbox_item").sync_detailed("ana", item.id, client=client)
    assert deleted.status_code == 204
    gone = op("inbox.delete_inbox_item").sync("ana", item.id, client=client)
    assert isinstance(gone, models.ErrorBody) and gone.error.code == "not_found"
    token = op("inbox.create_ws_token").sync("ana", client=client)
    assert isinstance(token, models.WsToken) and token.url == "/ws/notifications"
    assert token.expires_at > datetime.now(UTC)

    # API keys: issue, list, rotate, revoke; the revoked key is refused with the error model.
    issued = op("api_keys.create_api_key").sync(
        client=client,
        body=models.ApiKeyCreate(name="generated", scopes=[models.ApiKeyCreateScopesItem.READ]),
    )
    assert isinstance(issued, models.IssuedKeyView) and issued.key.startswith("nsk_")
    keys = op("api_keys.list_api_keys").sync(client=client)
    assert isinstance(keys, list) and all(isinstance(k, models.ApiKeyView) for k in keys)
    assert issued.id in {k.id for k in keys}
    rotated = op("api_keys.rotate_api_key").sync(issued.id, client=client)
    assert isinstance(rotated, models.RotatedKeyView) and rotated.rotated_from == issued.id
    revoked = op("api_keys.revoke_api_key").sync_detailed(rotated.id, client=client)
    assert revoked.status_code == 204
    as_revoked = package.AuthenticatedClient(base_url=api, token=rotated.key)
    refused_key = listing.sync(client=as_revoked)
    assert isinstance(refused_key, models.ErrorBody) and refused_key.error.code == "unauthorized"

    # The operator console's API: search, history, retry now, summary.
    smtp.plan("bounce@example.com", 554)  # refused once: FAILED at once (554: not a dead mailbox)
    bounced = create.sync(
        client=client,
        body=models.NotificationCreate(
            channels=[models.Channel.EMAIL],
            body="x",
            subject="Bounce",
            recipient_email="bounce@example.com",
        ),
    )
    wait_for(
        lambda: get.sync(bounced.id, client=client).status is models.NotificationStatus.FAILED,
        timeout=30,
        what="the refused email failed",
    )
    found = op("console.search_notifications").sync(
        client=client, recipient="BOUNCE@example.com", status=models.NotificationStatus.FAILED
    )
    assert isinstance(found, models.NotificationPage)
    assert [n.id for n in found.items] == [bounced.id]
    history = op("console.get_notification_history").sync(first.id, client=client)
    assert isinstance(history, models.NotificationHistory)
    assert history.content.subject == "Your order shipped"
    assert all(isinstance(t, models.AuditEntry) for t in history.timeline)
    assert {t.to_status for t in history.timeline} >= {models.DeliveryStatus.SENT}
    retried = op("console.retry_delivery").sync(bounced.deliveries[0].id, client=client)
    assert isinstance(retried, models.NotificationHistory)
    assert retried.timeline[-1].error_code == "operator_retry"
    wait_for(
        lambda: get.sync(bounced.id, client=client).status is models.NotificationStatus.SENT,
        timeout=30,
        what="the retried email sent",
    )
    summary = op("console.get_console_summary").sync(client=client)
    assert isinstance(summary, models.ConsoleSummary)
    assert summary.last_minute.sent >= 3 and summary.last_minute.failed == 1
    assert summary.queue_depths.additional_properties.keys() >= {"email", "inapp"}

    # Recipients: profiles, bulk, categories, preferences, suppressions, erasure.
    profile = models.UserProfileWrite.from_dict({"email": "rui@example.com", "name": "Rui"})
    made = op("users.put_user").sync_detailed("rui", client=client, body=profile)
    assert made.status_code == 201 and made.parsed.email == "rui@example.com"
    merged = op("users.patch_user").sync(
        "rui", client=client, body=models.UserProfileWrite.from_dict({"locale": "pt-PT"})
    )
    assert (merged.name, merged.locale) == ("Rui", "pt-PT")
    assert op("users.get_user").sync("rui", client=client).name == "Rui"
    bulk = op("users.identify_users").sync(
        client=client,
        body=models.UserBulkRequest.from_dict({"users": [{"userId": "eva"}, {"userId": "rui"}]}),
    )
    assert [(r.user_id, r.status) for r in bulk.results] == [("eva", 201), ("rui", 200)]
    category = op("categories.put_category").sync(
        "digest", client=client, body=models.CategoryWrite.from_dict({"required": False})
    )
    assert isinstance(category, models.CategoryView) and category.key == "digest"
    assert op("categories.get_category").sync("digest", client=client).required is False
    assert [c.key for c in op("categories.list_categories").sync(client=client).items] == ["digest"]
    chosen = op("users.put_preferences").sync(
        "rui",
        client=client,
        body=models.PreferencesWrite.from_dict({"categories": {"digest": False}}),
    )
    effective = op("users.get_preferences").sync("rui", client=client)
    assert chosen.to_dict() == effective.to_dict()
    assert (
        effective.categories.additional_properties["digest"].additional_properties["EMAIL"] is False
    )
    suppressed = op("suppressions.put_suppression").sync(
        models.PutSuppressionChannel.EMAIL,
        "gone@example.com",
        client=client,
        body=models.SuppressionWrite.from_dict({"reason": "complaint"}),
    )
    assert isinstance(suppressed, models.SuppressionView)
    read_back = op("suppressions.get_suppression").sync(
        models.GetSuppressionChannel.EMAIL, "gone@example.com", client=client
    )
    assert read_back.reason.value == "complaint"
    listed_suppressions = op("suppressions.list_suppressions").sync(client=client)
    assert [e.address for e in listed_suppressions.items] == ["gone@example.com"]
    unsuppressed = op("suppressions.delete_suppression").sync_detailed(
        models.DeleteSuppressionChannel.EMAIL, "gone@example.com", client=client
    )
    assert unsuppressed.status_code == 204
    erased = op("users.erase_user").sync("rui", client=client)
    assert isinstance(erased, models.ErasureResult) and erased.profiles == 1

    # Templates and layouts: versions, preview, archive.
    layout = op("layouts.put_layout").sync(
        "brand", client=client, body=models.LayoutPut.from_dict({"html": "<b>{{ content }}</b>"})
    )
    assert isinstance(layout, models.LayoutView) and layout.version == 1
    content = {"channels": {"SMS": {"body": "Order {{ data.orderId }}"}}, "layout": "brand"}
    for version in (1, 2):
        put = op("templates.put_template").sync(
            "order", client=client, body=models.TemplatePut.from_dict(content)
        )
        assert isinstance(put, models.TemplateView) and put.version == version
    latest = op("templates.get_template").sync("order", client=client)
    first_version = op("templates.get_template_version").sync("order", 1, client=client)
    assert (latest.latest_version, first_version.version) == (2, 1)
    assert [t.key for t in op("templates.list_templates").sync(client=client).items] == ["order"]
    preview = op("templates.preview_template").sync(
        "order", client=client, body=models.TemplatePreview.from_dict({"data": {"orderId": 7}})
    )
    assert isinstance(preview, models.PreviewView)
    assert preview.channels.additional_properties["SMS"].content["body"] == "Order 7"
    assert op("layouts.get_layout").sync("brand", client=client).html == "<b>{{ content }}</b>"
    assert op("layouts.get_layout_version").sync("brand", 1, client=client).version == 1
    assert [item.key for item in op("layouts.list_layouts").sync(client=client).items] == ["brand"]
    archived = op("templates.archive_template").sync_detailed("order", client=client)
    archived_layout = op("layouts.archive_layout").sync_detailed("brand", client=client)
    assert (archived.status_code, archived_layout.status_code) == (204, 204)
    assert op("templates.list_templates").sync(client=client).items == []

    assert op.called == op.generated, "every generated operation is driven above"


def test_openapi_typescript_types_type_check_a_usage_file(api: str, tmp_path: Path) -> None:
    shutil.copy(TYPESCRIPT / "usage.ts", tmp_path / "usage.ts")
    subprocess.run(
        [
            str(NPM_BIN / "openapi-typescript"),
            f"{api}/api/v1/openapi.json",
            # A field with a default may be left out of a request: without this flag
            # openapi-typescript makes it required (right for answers, wrong for bodies).
            "--default-non-nullable",
            "false",
            "--output",
            str(tmp_path / "api.d.ts"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    types = (tmp_path / "api.d.ts").read_text()
    assert "createNotification: {" in types and '"/api/v1/notifications": {' in types

    checked = subprocess.run(
        [
            str(NPM_BIN / "tsc"),
            "--noEmit",
            "--strict",
            "--target",
            "es2022",
            "--lib",
            "es2022,dom",
            "--module",
            "es2022",
            "--moduleResolution",
            "bundler",
            str(tmp_path / "usage.ts"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
