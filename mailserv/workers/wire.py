"""What the master tells a child: the configuration and its inherited listening sockets."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from mailserv.config import Config, OAuthConfig
from mailserv.events.hookconfig import WebhookConfig
from mailserv.imap.settings import ServerSettings
from mailserv.quota import QuotaPolicy

CHANNEL_FD = 3
"""The child's end of its channel to the master (``mailserv.workers.limits``)."""
FIRST_LISTENER_FD = 4


@dataclass(frozen=True)
class Listener:
    """A listening socket the child inherits as file descriptor ``fd``."""

    fd: int
    label: str
    """``IMAP`` (STARTTLS offered), ``IMAPS`` (TLS from the first byte), ``LMTP``,
    ``MANAGESIEVE`` or ``MANAGESIEVES`` (TLS from the first byte)."""


def encode_config(config: Config) -> str:
    raw = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    raw["backend_options"] = dict(config.backend_options)
    raw["settings"] = dataclasses.asdict(config.settings)
    raw["oauth"] = dataclasses.asdict(config.oauth)
    raw["webhooks"] = [
        dict(dataclasses.asdict(h), events=sorted(h.events)) for h in config.webhooks
    ]
    return json.dumps(raw)


def decode_config(text: str) -> Config:
    raw = json.loads(text)
    settings = raw["settings"]
    settings["quota"] = QuotaPolicy.from_plain(settings["quota"])
    raw["settings"] = ServerSettings(**settings)
    raw["oauth"] = OAuthConfig(**raw["oauth"])
    raw["webhooks"] = [WebhookConfig(**hook) for hook in raw["webhooks"]]
    return Config(**raw)


def encode_listeners(listeners: list[Listener]) -> list[str]:
    return [f"{item.fd}:{item.label}" for item in listeners]


def decode_listener(text: str) -> Listener:
    fd, _, label = text.partition(":")
    if label not in ("IMAP", "IMAPS", "LMTP", "MANAGESIEVE", "MANAGESIEVES"):
        raise ValueError(f"bad listener {text!r}")
    return Listener(int(fd), label)
