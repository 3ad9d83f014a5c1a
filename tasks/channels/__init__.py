"""Channel providers, one module per channel, chosen by configuration."""

from __future__ import annotations

from app.domain import Channel
from app.settings import Settings
from tasks.channels.base import Provider


def build_providers(settings: Settings) -> dict[Channel, Provider]:
    """The provider of every channel this service can deliver, as configured."""
    from tasks.channels.email import SmtpEmailProvider
    from tasks.channels.log import LogProvider, NoopProvider

    email: Provider = {
        "smtp": lambda: SmtpEmailProvider(settings),
        "noop": NoopProvider,
        "log": LogProvider,
    }[settings.email_provider]()
    return {Channel.EMAIL: email}


def available_channels(settings: Settings) -> frozenset[Channel]:
    """Channels with a provider; the API refuses the others rather than accept and lose them."""
    return frozenset(build_providers(settings))
