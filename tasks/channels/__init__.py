"""Channel providers, one module per channel, chosen by configuration."""

from __future__ import annotations

from app.domain import Channel
from app.settings import Settings
from tasks.channels.base import Provider


def build_providers(settings: Settings) -> dict[Channel, Provider]:
    """The provider of every channel this service can deliver, as configured."""
    from tasks.channels.email import SmtpEmailProvider
    from tasks.channels.inapp import InAppProvider
    from tasks.channels.log import LogProvider

    return {
        Channel.EMAIL: SmtpEmailProvider(settings)
        if settings.email_provider == "smtp"
        else LogProvider(),
        Channel.IN_APP: InAppProvider(settings),
    }


def available_channels(settings: Settings) -> frozenset[Channel]:
    """Channels with a provider; the API refuses the others rather than accept and lose them."""
    return frozenset(build_providers(settings))
