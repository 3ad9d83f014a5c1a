"""Channel providers, one module per channel, chosen by configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from app.domain import Channel, PushPlatform
from app.settings import Settings
from tasks.channels.base import Provider

if TYPE_CHECKING:
    from tasks.channels.push import PlatformSender


def _factories(
    settings: Settings, engine: Engine | None = None
) -> dict[Channel, Callable[[], Provider]]:
    """How to build the provider of every channel this service can deliver, as configured.
    ``engine`` is for the providers that keep channel state in the database (PUSH: devices and
    their results)."""
    from tasks.channels.email import SmtpEmailProvider
    from tasks.channels.inapp import InAppProvider
    from tasks.channels.log import LogProvider, NoopProvider
    from tasks.channels.push import PushProvider
    from tasks.channels.sms import TwilioSmsProvider
    from tasks.channels.webhook import HttpWebhookProvider

    email: dict[str, Callable[[], Provider]] = {
        "smtp": lambda: SmtpEmailProvider(settings),
        "noop": NoopProvider,
        "log": LogProvider,
    }
    return {
        Channel.EMAIL: email[settings.email_provider],
        Channel.IN_APP: lambda: InAppProvider(settings),
        Channel.PUSH: lambda: PushProvider(settings, _required(engine), push_senders(settings)),
        Channel.SMS: (
            (lambda: TwilioSmsProvider(settings))
            if settings.sms_provider == "twilio"
            else LogProvider
        ),
        Channel.WEBHOOK: (
            (lambda: HttpWebhookProvider(settings))
            if settings.webhook_provider == "http"
            else LogProvider
        ),
    }


def _required(engine: Engine | None) -> Engine:
    if engine is None:
        raise ValueError("this provider needs the database engine")
    return engine


def build_providers(settings: Settings, engine: Engine) -> dict[Channel, Provider]:
    """The provider of every channel this service can deliver, as configured."""
    return {channel: build() for channel, build in _factories(settings, engine).items()}


def push_senders(settings: Settings) -> dict[PushPlatform, PlatformSender]:
    """One sender per push platform: both log with ``PUSH_PROVIDER=log``; with ``live``, each
    platform whose credentials are configured."""
    from tasks.channels.push import LogPushSender

    if settings.push_provider == "log":
        return {platform: LogPushSender() for platform in PushPlatform}
    senders: dict[PushPlatform, PlatformSender] = {}
    if settings.fcm_service_account_file:
        from tasks.channels.fcm import FcmSender

        senders[PushPlatform.FCM] = FcmSender(settings)
    if settings.apns_key_file:
        from tasks.channels.apns import ApnsSender

        senders[PushPlatform.APNS] = ApnsSender(settings)
    return senders


def available_channels(settings: Settings) -> frozenset[Channel]:
    """Channels with a provider; the API refuses the others rather than accept and lose them.
    Decided from the configuration alone, so the API opens no provider connections."""
    return frozenset(_factories(settings))
