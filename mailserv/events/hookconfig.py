"""One webhook's settings: ``--webhook 'URL;key=value;...'`` or a ``[[webhook]]`` table.

Keys (the same in both forms, except ``secret``, which the command line refuses because
``ps`` shows it to every local user): ``url``, ``secret`` or ``secret-file`` (one of them is
required; a file's trailing newline is dropped), ``events`` (a comma-separated list on the
command line, a list in TOML; default: all), ``allow-http`` (plain http:// URLs are refused
without it), ``timeout`` (seconds per delivery attempt), ``max-attempts`` and ``max-age``
(seconds) before an event goes to the dead-letter log, ``backoff`` and ``max-backoff`` (the
first retry delay and the cap of its doubling), ``queue-limit`` (events kept waiting for
this hook; past it the oldest go to the dead-letter log), ``ca-file`` (PEM certificates the
receiver's HTTPS certificate is checked against instead of the system's roots: a private CA;
relative to the configuration file like ``secret-file``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from mailserv.auth.trust import read_certificates
from mailserv.backends.kit.options import parse_bool, parse_int, parse_number
from mailserv.events.sink import EVENT_TYPES

__all__ = ["WebhookConfig", "parse_webhook", "webhook_from_table"]


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: str = field(repr=False)
    """The HMAC key; never logged (``repr`` leaves it out)."""
    events: frozenset[str] = EVENT_TYPES
    allow_http: bool = False
    timeout: float = 10.0
    max_attempts: int = 15
    max_age: float = 86400.0
    backoff: float = 1.0
    max_backoff: float = 600.0
    queue_limit: int = 100_000
    ca_file: str | None = None
    """PEM file of the CA certificates trusted for this hook (None: the system's)."""

    def __post_init__(self) -> None:
        # Rebuilt from the workers' JSON wire, the events arrive as a list.
        object.__setattr__(self, "events", frozenset(self.events))


_NUMBERS = ("timeout", "max-age", "backoff", "max-backoff")
_WHOLE = ("max-attempts", "queue-limit")
_KNOWN = ("url", "secret", "secret-file", "events", "allow-http", "ca-file", *_NUMBERS, *_WHOLE)


def parse_webhook(text: str) -> dict[str, object]:
    """The table of ``URL;key=value;...`` (values as text) for :func:`webhook_from_table`."""
    url, *rest = text.split(";")
    table: dict[str, object] = {"url": url.strip()}
    for item in rest:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expects URL;KEY=VALUE;..., got {item!r}")
        table[key.strip()] = value.strip()
    if "secret" in table:
        raise ValueError("give the secret with secret-file= (the command line is public)")
    return table


def webhook_from_table(table: Mapping[str, object], base: str | None) -> WebhookConfig:
    """Check ``table`` (TOML values or text); relative ``secret-file`` paths are taken from
    ``base``.  ValueError names the key at fault."""
    unknown = sorted(set(table) - set(_KNOWN))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(_KNOWN)})")
    url = table.get("url")
    allow_http = table.get("allow-http", False)
    if isinstance(allow_http, str):
        try:
            allow_http = parse_bool(allow_http)
        except ValueError as e:
            raise ValueError(f"allow-http {e}") from None
    if not isinstance(allow_http, bool):
        raise ValueError(f"allow-http must be true or false, got {allow_http!r}")
    schemes = ("https://", "http://") if allow_http else ("https://",)
    if not isinstance(url, str) or not url.startswith(schemes) or len(url) <= 8:
        raise ValueError(f"url must be an https:// URL (http:// with allow-http), got {url!r}")
    settings: dict[str, object] = {
        "url": url,
        "secret": _secret(table, base),
        "allow_http": allow_http,
    }
    if "events" in table:
        settings["events"] = _events(table["events"])
    if "ca-file" in table:
        settings["ca_file"] = _ca_file(table["ca-file"], base)
    for key in _NUMBERS + _WHOLE:
        if key in table:
            settings[key.replace("-", "_")] = _number(key, table[key], key in _WHOLE)
    hook = WebhookConfig(**settings)  # type: ignore[arg-type]
    if hook.timeout <= 0 or hook.max_attempts < 1 or hook.queue_limit < 1:
        raise ValueError("timeout, max-attempts and queue-limit must be above 0")
    return hook


def _secret(table: Mapping[str, object], base: str | None) -> str:
    secret, path = table.get("secret"), table.get("secret-file")
    if (secret is None) == (path is None):
        raise ValueError("give one of secret and secret-file")
    if path is not None:
        if not isinstance(path, str) or not path:
            raise ValueError(f"secret-file must be a path, got {path!r}")
        path = os.path.join(base, path) if base is not None else path
        try:
            with open(path, encoding="utf-8") as f:
                secret = f.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read secret-file {path}: {e}") from None
    if not isinstance(secret, str) or not secret:
        raise ValueError("the secret must be a non-empty string")
    return secret


def _ca_file(value: object, base: str | None) -> str:
    """The path of a readable PEM file holding certificates (ValueError otherwise)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"ca-file must be a path, got {value!r}")
    path = os.path.join(base, value) if base is not None else value
    read_certificates(path, "ca-file")
    return os.path.abspath(path)


def _events(value: object) -> frozenset[str]:
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"events must be a list of event names, got {value!r}")
    chosen = frozenset(n.strip() for n in names if n.strip())
    wrong = sorted(chosen - EVENT_TYPES)
    if wrong or not chosen:
        known = ", ".join(sorted(EVENT_TYPES))
        raise ValueError(f"events: unknown or none {wrong} (known: {known})")
    return chosen


def _number(key: str, value: object, whole: bool) -> int | float:
    if isinstance(value, str):
        try:
            value = parse_int(value) if whole else parse_number(value)
        except ValueError as e:
            raise ValueError(f"{key} {e}") from None
    kinds = int if whole else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise ValueError(f"{key} must be a {'whole ' if whole else ''}number, got {value!r}")
    if value < 0:
        raise ValueError(f"{key} must be >= 0, got {value!r}")
    return value if whole else float(value)
