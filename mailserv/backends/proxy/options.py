"""``--backend-option`` values of the proxy backend, checked and typed."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from mailserv.backends.proxy.connect import MODES, Upstream
from mailserv.errors import BackendOptionError

OPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "upstream": "Upstream server: tls:HOST[:PORT] (993), starttls:HOST[:PORT] (143), or "
        "plain:HOST[:PORT] for a loopback host only (required).",
        "ca": "PEM file of the CA(s) to verify the upstream against [default: system store].",
        "master_user": "Log in upstream as USER*MASTER (Dovecot master user); mailserv's own "
        "passwd-file then checks the users' passwords.",
        "master_password": "The master user's password (with master_user).",
        "master_separator": "Separator between user and master name [default: *].",
        "timeout": "Seconds an upstream may stay silent before it is deemed down [default: 15].",
        "connections": "Upstream connections per user at most [default: 6].",
        "linger": "Seconds a user's upstream connections outlive their last session [default: 30].",
        "cache_mb": "Message content kept in memory, MiB [default: 64].",
        "poll": "Seconds between NOOP polls when the upstream has no IDLE [default: 0.5].",
        "cache_dir": "Where parsed messages are kept between sessions, or 'none' "
        "[default: DATA_DIR/proxy-cache].",
    }
)

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


def parse_options(options: Mapping[str, str], data_dir: str = "") -> ProxyConfig:
    """The typed configuration; BackendOptionError names the first bad key."""
    for key in sorted(options):
        if key not in OPTIONS:
            raise BackendOptionError(f"The proxy backend has no option {key!r}")
    if "upstream" not in options:
        raise BackendOptionError("The proxy backend needs upstream=tls:HOST[:PORT]")
    timeout = _number(options, "timeout", 15.0, 0.1, 3600.0)
    upstream = _upstream(options["upstream"], options.get("ca"), timeout)
    master_user = options.get("master_user") or None
    master_password = options.get("master_password")
    if (master_user is None) != (master_password is None):
        raise BackendOptionError("master_user and master_password go together")
    separator = options.get("master_separator", "*")
    if not separator or any(c.isspace() for c in separator):
        raise BackendOptionError("master_separator must be a non-blank string")
    return ProxyConfig(
        upstream=upstream,
        master_user=master_user,
        master_password=None if master_password is None else master_password.encode("utf-8"),
        master_separator=separator,
        connections=int(_number(options, "connections", 6, 2, 100)),
        linger=_number(options, "linger", 30.0, 0.0, 86400.0),
        cache_bytes=int(_number(options, "cache_mb", 64, 0, 1 << 16) * (1 << 20)),
        poll=_number(options, "poll", 0.5, 0.05, 60.0),
        cache_dir=_cache_dir(options.get("cache_dir"), data_dir),
    )


def _cache_dir(value: str | None, data_dir: str) -> str | None:
    if value is None:
        return os.path.join(data_dir, "proxy-cache") if data_dir else None
    if value.lower() == "none" or not value:
        return None
    return value


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


def _number(options: Mapping[str, str], key: str, default: float, low: float, high: float) -> float:
    text = options.get(key)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise BackendOptionError(f"{key}={text!r}: not a number") from None
    if not low <= value <= high:
        raise BackendOptionError(f"{key}={text!r}: must be between {low:g} and {high:g}")
    return value
