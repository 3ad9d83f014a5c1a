"""Channel providers, one module per provider, chosen by name.

``PROVIDERS`` maps each channel's setting value to a dotted path (as Celery's
``BACKEND_ALIASES``), resolved only when a worker builds its providers: nothing imports a
provider it does not use, and the API imports none. Adding a provider is its module (a class
with ``create(process)`` and ``send(messages)``), one line here, its settings and its test.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from app.core.domain import Channel, PushPlatform
from app.core.process import ProcessContext
from tasks.channels.base import Provider

LOG = "tasks.channels.log:LogProvider"

PROVIDERS: dict[Channel, dict[str, str]] = {
    Channel.EMAIL: {
        "smtp": "tasks.channels.email:SmtpEmailProvider",
        "log": LOG,
        "noop": "tasks.channels.log:NoopProvider",
    },
    Channel.SMS: {"twilio": "tasks.channels.sms:TwilioSmsProvider", "log": LOG},
    Channel.WEBHOOK: {"http": "tasks.channels.webhook:HttpWebhookProvider", "log": LOG},
    # PUSH fans out to devices either way; ``log`` and ``live`` choose the platform senders.
    Channel.PUSH: {
        "live": "tasks.channels.push:PushProvider",
        "log": "tasks.channels.push:PushProvider",
    },
    Channel.IN_APP: {"inbox": "tasks.channels.inapp:InAppProvider"},
}

# The setting that names each channel's provider; IN_APP has only the inbox.
PROVIDER_SETTINGS: dict[Channel, str] = {
    Channel.EMAIL: "email_provider",
    Channel.SMS: "sms_provider",
    Channel.WEBHOOK: "webhook_provider",
    Channel.PUSH: "push_provider",
}

PUSH_SENDERS: dict[PushPlatform, str] = {
    PushPlatform.FCM: "tasks.channels.fcm:FcmSender",
    PushPlatform.APNS: "tasks.channels.apns:ApnsSender",
}


def resolve(dotted: str) -> Any:
    """The object a ``module:attribute`` path names, imported now."""
    module, _, attribute = dotted.partition(":")
    return getattr(import_module(module), attribute)


def provider_name(process: ProcessContext, channel: Channel) -> str:
    setting = PROVIDER_SETTINGS.get(channel)
    return "inbox" if setting is None else str(getattr(process.settings, setting))


def build_providers(process: ProcessContext) -> dict[Channel, Provider]:
    """The provider of every channel, as configured."""
    providers: dict[Channel, Provider] = {}
    for channel, names in PROVIDERS.items():
        provider: Provider = resolve(names[provider_name(process, channel)]).create(process)
        providers[channel] = provider
    return providers
