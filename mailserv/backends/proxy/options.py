"""``--backend-option`` values of the proxy backend, checked and typed."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

from mailserv.backends.kit.options import Int, Number, OptionSchema, Path, Text
from mailserv.backends.proxy.connect import MODES, Upstream
from mailserv.errors import BackendOptionError

UPSTREAM = Text[str | None](
    "Upstream server: tls:HOST[:PORT] (993), starttls:HOST[:PORT] (143), or "
    "plain:HOST[:PORT] for a loopback host only (required).",
    None,
)
CA = Text[str | None](
    "PEM file of the CA(s) to verify the upstream against [default: system store].", None
)
MASTER_USER = Text[str | None](
    "Log in upstream as USER*MASTER (Dovecot master user); mailserv's own "
    "passwd-file then checks the users' passwords.",
    None,
)
MASTER_PASSWORD = Text[str | None]("The master user's password (with master_user).", None)
MASTER_SEPARATOR = Text("Separator between user and master name [default: *].", "*")
TIMEOUT = Number(
    "Seconds an upstream may stay silent before it is deemed down [default: 15].", 15.0, 0.1, 3600
)
CONNECTIONS = Int("Upstream connections per user at most [default: 6].", 6, 2, 100)
LINGER = Number(
    "Seconds a user's upstream connections outlive their last session [default: 30].",
    30.0,
    0.0,
    86400.0,
)
CACHE_MB = Number("Message content kept in memory, MiB [default: 64].", 64, 0, 1 << 16)
POLL = Number(
    "Seconds between NOOP polls when the upstream has no IDLE [default: 0.5].", 0.5, 0.05, 60
)
CACHE_DIR = Path(
    "Where parsed messages are kept between sessions, or 'none' [default: DATA_DIR/proxy-cache].",
    "proxy-cache",
)
LOCK_DIR = Path(
    "Where the worker processes' locks on the users' mailbox names are kept, or 'none'"
    " [default: DATA_DIR/proxy-locks].",
    "proxy-locks",
)

SCHEMA = OptionSchema(
    "proxy",
    {
        "upstream": UPSTREAM,
        "ca": CA,
        "master_user": MASTER_USER,
        "master_password": MASTER_PASSWORD,
        "master_separator": MASTER_SEPARATOR,
        "timeout": TIMEOUT,
        "connections": CONNECTIONS,
        "linger": LINGER,
        "cache_mb": CACHE_MB,
        "poll": POLL,
        "cache_dir": CACHE_DIR,
        "lock_dir": LOCK_DIR,
    },
)
OPTIONS = SCHEMA.help

_DEFAULT_PORTS = {"tls": 993, "starttls": 143, "plain": 143}


@dataclass(frozen=True)
class ProxyConfig:
    upstream: Upstream
    master_user: str | None = None
    master_password: bytes | None = None
    master_separator: str = "*"
    connections: int = 6
    linger: float = 30.0
    cache_bytes: int = 64 << 20
    poll: float = 0.5
    cache_dir: str | None = None
    lock_dir: str | None = None


def parse_options(options: Mapping[str, str], data_dir: str = "") -> ProxyConfig:
    """The typed configuration; BackendOptionError names the first bad key."""
    values = SCHEMA.parse(options, data_dir)
    text = values[UPSTREAM]
    if text is None:
        raise BackendOptionError("The proxy backend needs upstream=tls:HOST[:PORT]")
    upstream = _upstream(text, values[CA], values[TIMEOUT])
    master_user = values[MASTER_USER] or None
    master_password = values[MASTER_PASSWORD]
    if (master_user is None) != (master_password is None):
        raise BackendOptionError("master_user and master_password go together")
    separator = values[MASTER_SEPARATOR]
    if not separator or any(c.isspace() for c in separator):
        raise BackendOptionError("master_separator must be a non-blank string")
    return ProxyConfig(
        upstream=upstream,
        master_user=master_user,
        master_password=None if master_password is None else master_password.encode("utf-8"),
        master_separator=separator,
        connections=values[CONNECTIONS],
        linger=values[LINGER],
        cache_bytes=int(values[CACHE_MB] * (1 << 20)),
        poll=values[POLL],
        cache_dir=values[CACHE_DIR],
        lock_dir=values[LOCK_DIR],
    )


def _upstream(value: str, ca: str | None, timeout: float) -> Upstream:
    mode, _, rest = value.partition(":")
    mode = mode.lower()
    if mode not in MODES or not rest:
        raise BackendOptionError(
            f"upstream={value!r}: expected tls:HOST[:PORT], starttls:HOST[:PORT] "
            "or plain:HOST[:PORT]"
        )
    host, port_text = rest, ""
    if rest.startswith("["):  # [IPv6]:port
        close = rest.find("]")
        if close < 0:
            raise BackendOptionError(f"upstream={value!r}: unbalanced '['")
        host, port_text = rest[1:close], rest[close + 1 :].removeprefix(":")
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    if not host:
        raise BackendOptionError(f"upstream={value!r}: no host")
    try:
        port = int(port_text) if port_text else _DEFAULT_PORTS[mode]
    except ValueError:
        raise BackendOptionError(f"upstream={value!r}: bad port {port_text!r}") from None
    if not 0 < port < 65536:
        raise BackendOptionError(f"upstream={value!r}: port out of range")
    if mode == "plain" and not _loopback(host):
        raise BackendOptionError(
            f"upstream={value!r}: plain (unencrypted) is only allowed to a loopback host"
        )
    if ca is not None:
        if mode == "plain":
            raise BackendOptionError("ca= makes no sense with a plain upstream")
        if not os.path.isfile(ca) or not os.access(ca, os.R_OK):
            raise BackendOptionError(f"ca={ca!r}: no readable file")
    return Upstream(mode, host, port, ca, timeout)


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
