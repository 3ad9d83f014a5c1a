"""Channel providers, one module per channel, chosen by configuration."""

from __future__ import annotations

from collections.abc import Callable

from app.domain import Channel
from app.settings import Settings
from tasks.channels.base import Provider


def _factories(settings: Settings) -> dict[Channel, Callable[[], Provider]]:
    """How to build the provider of every channel this service can deliver, as configured."""
    from tasks.channels.email import SmtpEmailProvider
    from tasks.channels.log import LogProvider, NoopProvider
    from tasks.channels.sms import TwilioSmsProvider
    from tasks.channels.webhook import HttpWebhookProvider

    return {
        Channel.EMAIL: {
            "smtp": lambda: SmtpEmailProvider(settings),
            "noop": NoopProvider,
            "log": LogProvider,
        }[settings.email_provider],
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


def build_providers(settings: Settings) -> dict[Channel, Provider]:
    """The provider of every channel this service can deliver, as configured."""
    return {channel: build() for channel, build in _factories(settings).items()}


def available_channels(settings: Settings) -> frozenset[Channel]:
    """Channels with a provider; the API refuses the others rather than accept and lose them.
    Decided from the configuration alone, so the API opens no provider connections."""
    return frozenset(_factories(settings))
