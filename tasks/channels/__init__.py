"""Channel providers, one module per channel, chosen by configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine

from app.domain import Channel, PushPlatform
from app.settings import Settings
from tasks.channels.base import Provider

if TYPE_CHECKING:
    from tasks.channels.push import PlatformSender


def build_providers(settings: Settings, engine: Engine) -> dict[Channel, Provider]:
    """The provider of every channel this service can deliver, as configured. ``engine`` is for
    the providers that keep channel state in the database (PUSH: devices and their results)."""
    from tasks.channels.email import SmtpEmailProvider
    from tasks.channels.log import LogProvider
    from tasks.channels.push import PushProvider

    return {
        Channel.EMAIL: SmtpEmailProvider(settings)
        if settings.email_provider == "smtp"
        else LogProvider(),
        Channel.PUSH: PushProvider(settings, engine, push_senders(settings)),
    }


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
    The same channels as build_providers (checked by a test), without building any provider:
    the API process needs neither credentials nor provider connections."""
    return frozenset({Channel.EMAIL, Channel.PUSH})
