"""The effective configuration: defaults, then a TOML file, then the command line.

A TOML file uses the long option names as keys (``data-dir``, ``imap = [...]``,
``[backend-option]``, ...) plus a ``[limits]`` table keyed by ``ServerSettings`` field names,
so one vocabulary serves both.  Lists replace what a lower layer said; the tables merge
key by key.  Quotas (RFC 9208): ``quota-storage`` (KiB) and ``quota-messages`` for everyone,
or a ``[quota]`` table of ``storage``, ``messages`` and ``[quota.users]`` (per user name, a
table of ``storage``/``messages`` overriding the default's; 0 is no limit).  ``[oauth]``
holds the bearer-token settings (:class:`OAuthConfig`, keys with dashes).  Relative paths
in a file are taken from the file's directory.  ``[[webhook]]`` (an array of tables) and
``webhook = ["URL;key=value", ...]`` list the webhooks (:mod:`mailserv.events.hookconfig`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from twisted.python.usage import UsageError

from mailserv.backends.kit.options import parse_bool, parse_int, parse_number
from mailserv.events.hookconfig import WebhookConfig, parse_webhook, webhook_from_table
from mailserv.imap.settings import ServerSettings
from mailserv.quota import QuotaLimits, QuotaPolicy

__all__ = [
    "DEFAULT_BACKEND",
    "DEFAULT_DATA_DIR",
    "DEFAULT_IMAP",
    "DEFAULT_IMAPS",
    "Config",
    "ConfigError",
    "OAuthConfig",
    "load_config",
    "parse_assignment",
    "parse_limit",
    "read_toml",
]

DEFAULT_DATA_DIR = "imapserv-data"
DEFAULT_IMAP = ("tcp:1143:interface=127.0.0.1",)
DEFAULT_IMAPS = ("ssl:1993:interface=127.0.0.1",)
DEFAULT_BACKEND = "maildir"
MAX_WORKERS = 64

LimitValue = int | float | bool | str

_LIMIT_TYPES: Mapping[str, type] = {
    name: kind
    for name, kind in typing.get_type_hints(ServerSettings).items()
    if kind in (int, float, bool) or typing.get_origin(kind) is typing.Literal
}
"""The scalar ServerSettings fields, which ``--limit`` and ``[limits]`` set; a ``Literal``
one takes one of its words (``true``/``false`` among them may be given as booleans)."""
_KIND_NAMES: Mapping[type, str] = {int: "a whole number", float: "a number"}


@dataclass(frozen=True)
class OAuthConfig:
    """``[oauth]``: how OAUTHBEARER and XOAUTH2 check bearer tokens (``mailserv.auth.tokens``).

    ``introspect`` (RFC 7662, with ``client_id``/``client_secret``) and ``jwks`` (local JWT
    checks against ``issuer`` and ``audience``) may both be set: a token shaped like a JWT is
    then checked locally, any other is introspected.  Neither: no OAuth mechanism is offered.
    """

    introspect: str | None = None
    jwks: str | None = None
    issuer: str | None = None
    audience: str | None = None
    user_claim: str = "sub"
    client_id: str | None = None
    client_secret: str | None = None
    """From the configuration file only, never the command line."""
    ca_file: str | None = None
    """PEM certificates trusted for the endpoints instead of the system's."""
    timeout: float = 5.0
    cache_ttl: float = 60.0
    cache_size: int = 10_000
    leeway: int = 30
    jwks_max_age: float = 3600.0
    jwks_refetch_interval: float = 60.0
    scope: str | None = None
    """Told to a client whose token failed (RFC 7628 error ``scope``)."""
    openid_configuration: str | None = None
    """Told likewise (``openid-configuration``): where the client finds the provider."""

    @property
    def enabled(self) -> bool:
        return bool(self.introspect or self.jwks)


class ConfigError(UsageError, ValueError):
    """The configuration cannot be used; the text names the source and the key.

    A UsageError, so twistd reports it like any other bad option.
    """


@dataclass(frozen=True)
class Config:
    """Everything ``makeService`` needs; build one directly to embed or test."""

    data_dir: str = DEFAULT_DATA_DIR
    imap: tuple[str, ...] = DEFAULT_IMAP
    imaps: tuple[str, ...] = DEFAULT_IMAPS
    backend: str = DEFAULT_BACKEND
    backend_options: Mapping[str, str] = field(default_factory=dict)
    passwd_file: str | None = None
    """None means ``<data-dir>/passwd``."""
    tls_cert: str | None = None
    """With ``tls_key``: the certificate (chain) to serve; None generates one in the data dir."""
    tls_key: str | None = None
    settings: ServerSettings = field(default_factory=ServerSettings)
    lmtp: tuple[str, ...] = ()
    """Endpoints of the LMTP service (``--lmtp``, RFC 2033); none by default."""
    managesieve: tuple[str, ...] = ()
    """Endpoints of the ManageSieve service (``--managesieve``, RFC 5804); none by default."""
    workers: int | None = None
    """Processes serving the listeners (``--workers``); above 1 a master runs the children.
    None: one per core when the backend can share its store between processes, else 1."""
    oauth: OAuthConfig = field(default_factory=OAuthConfig)
    metrics: str | None = None
    """Endpoint string serving Prometheus metrics (``--metrics``); None: no metrics."""
    log_format: str = "text"
    """``text`` (twistd's log) or ``json``: one JSON object per line on standard output."""
    webhooks: tuple[WebhookConfig, ...] = ()
    submission: str | None = None
    """Client endpoint string of the SMTP submission host Sieve's redirect and vacation send
    through (``--submission``, e.g. ``tcp:localhost:25``); None: no mail is sent."""

    def __post_init__(self) -> None:
        # Built directly (embedders, tests), the fields may arrive as lists and dicts.
        object.__setattr__(self, "imap", tuple(self.imap))
        object.__setattr__(self, "imaps", tuple(self.imaps))
        object.__setattr__(self, "lmtp", tuple(self.lmtp))
        object.__setattr__(self, "managesieve", tuple(self.managesieve))
        object.__setattr__(self, "webhooks", tuple(self.webhooks))
        object.__setattr__(self, "backend_options", MappingProxyType(dict(self.backend_options)))

    @property
    def passwd_path(self) -> str:
        return self.passwd_file or os.path.join(self.data_dir, "passwd")


def load_config(command_line: Mapping[str, object], config_file: str | None = None) -> Config:
    """Defaults, then ``config_file`` (if any), then ``command_line`` (TOML-shaped keys)."""
    layers = []
    if config_file is not None:
        layers.append(_Layer.parse(read_toml(config_file), config_file, config_file))
    layers.append(_Layer.parse(command_line, "command line", None))
    return _merge(layers)


def read_toml(path: str) -> dict[str, object]:
    """The raw table of a configuration file; ConfigError says why it cannot be read."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def parse_assignment(text: str, what: str) -> tuple[str, str]:
    """Split ``KEY=VALUE`` (the value may contain ``=``); ``what`` names the option."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{what} expects KEY=VALUE, got {text!r}")
    return key, value


def parse_limit(text: str) -> tuple[str, LimitValue]:
    """``NAME=VALUE`` for ``--limit``: NAME a ServerSettings field, VALUE typed by it."""
    name, raw = parse_assignment(text, "--limit")
    kind = _limit_type(name, "--limit")
    return name, _check_limit(name, _parse_scalar(raw.strip(), kind, f"--limit {name}"), "--limit")


def _limit_type(name: str, source: str) -> type:
    kind = _LIMIT_TYPES.get(name)
    if kind is None:
        known = ", ".join(sorted(_LIMIT_TYPES))
        raise ConfigError(f"{source}: unknown limit {name!r} (known: {known})")
    return kind


def _check_limit(name: str, value: object, source: str) -> LimitValue:
    kind = _limit_type(name, source)
    if typing.get_origin(kind) is typing.Literal:
        words: tuple[str, ...] = typing.get_args(kind)
        if isinstance(value, bool):
            value = "true" if value else "false"
        if isinstance(value, str) and value.strip().lower() in words:
            return value.strip().lower()
        raise ConfigError(
            f"{source}: limit {name} must be one of {', '.join(words)}, got {value!r}"
        )
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: limit {name} must be true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{source}: limit {name} must be {_KIND_NAMES[kind]}, got {value!r}")
    if kind is int and not isinstance(value, int):
        raise ConfigError(f"{source}: limit {name} must be a whole number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{source}: limit {name} must be a finite number >= 0, got {value!r}")
    return value if kind is int else float(value)


def _parse_scalar(text: str, kind: type, what: str) -> LimitValue:
    if typing.get_origin(kind) is typing.Literal:
        return text  # one of its words, checked by _check_limit
    parse: Callable[[str], LimitValue] = (
        parse_bool if kind is bool else parse_int if kind is int else parse_number
    )
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigError(f"{what} {exc}") from None


@dataclass
class _Layer:
    """One source's say, checked and in Config terms; what it does not mention is absent."""

    fields: dict[str, object]
    backend_options: dict[str, str]
    limits: dict[str, LimitValue]
    quota: dict[str, int] = field(default_factory=dict)
    quota_users: dict[str, dict[str, int]] = field(default_factory=dict)
    oauth: dict[str, object] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Mapping[str, object], source: str, path: str | None) -> _Layer:
        base = os.path.dirname(os.path.abspath(path)) if path is not None else None
        layer = cls({}, {}, {})
        for key, value in raw.items():
            handler = _KEYS.get(key)
            if handler is None:
                known = ", ".join(sorted(_KEYS))
                raise ConfigError(f"{source}: unknown key {key!r} (known: {known})")
            handler(layer, key, value, _Context(source, base))
        for name in ("imap", "imaps"):
            if raw.get(f"no-{name}") and raw.get(name):
                raise ConfigError(f"{source}: {name} and no-{name} together")
        return layer


@dataclass(frozen=True)
class _Context:
    source: str
    base: str | None

    def fail(self, key: str, what: str, value: object) -> ConfigError:
        return ConfigError(f"{self.source}: {key} must be {what}, got {value!r}")

    def path(self, key: str, value: object) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, "a non-empty path", value)
        return os.path.join(self.base, value) if self.base is not None else value


def _path_key(layer: _Layer, key: str, value: object, ctx: _Context) -> None:
    layer.fields[key.replace("-", "_")] = ctx.path(key, value)


def _backend_key(layer: _Layer, key: str, value: object, ctx: _Context) -> None:
    if not isinstance(value, str) or not value:
        raise ctx.fail(key, "a backend name", value)
    layer.fields["backend"] = value


def _endpoints_key(layer: _Layer, key: str, value: object, ctx: _Context) -> None:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ctx.fail(key, "a list of endpoint strings", value)
    layer.fields[key] = tuple(value)


def _no_endpoints_key(layer: _Layer, key: str, value: object, ctx: _Context) -> None:
    if not isinstance(value, bool):
        raise ctx.fail(key, "true or false", value)
    if value:
        layer.fields[key.removeprefix("no-")] = ()


def _plaintext_key(layer: _Layer, key: str, value: object, ctx: _Context) -> None:
    if not isinstance(value, bool):
        raise ctx.fail(key, "true or false", value)
    layer.limits["allow_plaintext_auth"] = value


def _backend_options_key(layer: _Layer, key: str, value: object, ctx: _Context) -> None:
    if not isinstance(value, Mapping):
        raise ctx.fail(key, "a table of KEY = VALUE", value)
    for name, option in value.items():
        if isinstance(option, bool):
            option = "true" if option else "false"
        elif isinstance(option, int | float):
            option = str(option)
        if not isinstance(option, str):
            raise ctx.fail(f"{key}.{name}", "a string, number or boolean", option)
        layer.backend_options[str(name)] = option


def _workers_key(layer: _Layer, key: str, value: object, ctx: _Context) -> None:
    if isinstance(value, str):
        try:
            value = parse_int(value)
        except ValueError:
            raise ctx.fail(key, f"a whole number from 1 to {MAX_WORKERS}", value) from None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        raise ctx.fail(key, f"a whole number from 1 to {MAX_WORKERS}", value)
    layer.fields["workers"] = value


def _metrics_key(layer: _Layer, key: str, value: object, ctx: _Context) -> None:
    if not isinstance(value, str) or not value:
        raise ctx.fail(key, "an endpoint string", value)
    layer.fields["metrics"] = value


LOG_FORMATS = ("text", "json")


def _submission_key(layer: _Layer, key: str, value: object, ctx: _Context) -> None:
    if not isinstance(value, str) or not value:
        raise ctx.fail(key, "a client endpoint string (e.g. tcp:localhost:25)", value)
    layer.fields["submission"] = value


def _log_format_key(layer: _Layer, key: str, value: object, ctx: _Context) -> None:
    if value not in LOG_FORMATS:
        raise ctx.fail(key, " or ".join(LOG_FORMATS), value)
    layer.fields["log_format"] = value


def _limits_key(layer: _Layer, key: str, value: object, ctx: _Context) -> None:
    if not isinstance(value, Mapping):
        raise ctx.fail(key, "a table of ServerSettings fields", value)
    for name, limit in value.items():
        layer.limits[str(name)] = _check_limit(str(name), limit, ctx.source)


_QUOTA_RESOURCES = ("storage", "messages")


def _quota_number(key: str, value: object, ctx: _Context) -> int:
    if isinstance(value, str):
        try:
            value = parse_int(value)
        except ValueError:
            raise ctx.fail(key, "a whole number >= 0 (0: no limit)", value) from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ctx.fail(key, "a whole number >= 0 (0: no limit)", value)
    return value


def _quota_limits(key: str, value: object, ctx: _Context) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise ctx.fail(key, "a table of storage and messages", value)
    found: dict[str, int] = {}
    for name, number in value.items():
        if name not in _QUOTA_RESOURCES:
            raise ConfigError(f"{ctx.source}: unknown key {key}.{name} (known: storage, messages)")
        found[name] = _quota_number(f"{key}.{name}", number, ctx)
    return found


def _quota_option_key(layer: _Layer, key: str, value: object, ctx: _Context) -> None:
    layer.quota[key.removeprefix("quota-")] = _quota_number(key, value, ctx)


def _quota_key(layer: _Layer, key: str, value: object, ctx: _Context) -> None:
    if not isinstance(value, Mapping):
        raise ctx.fail(key, "a table of storage, messages and users", value)
    rest = dict(value)
    users = rest.pop("users", {})
    layer.quota.update(_quota_limits(key, rest, ctx))
    if not isinstance(users, Mapping):
        raise ctx.fail(f"{key}.users", "a table of user names", users)
    for user, limits in users.items():
        layer.quota_users[str(user)] = _quota_limits(f"{key}.users.{user}", limits, ctx)


_OAUTH_TEXT = ("issuer", "audience", "user-claim", "client-id", "client-secret", "scope")
_OAUTH_URLS = ("introspect", "jwks", "openid-configuration")
_OAUTH_NUMBERS = ("timeout", "cache-ttl", "leeway", "jwks-max-age", "jwks-refetch-interval")


def _oauth_key(layer: _Layer, key: str, value: object, ctx: _Context) -> None:
    if not isinstance(value, Mapping):
        raise ctx.fail(key, "a table of OAuth settings", value)
    for name, item in value.items():
        where = f"{key}.{name}"
        if name in _OAUTH_URLS:
            if not isinstance(item, str) or not item.startswith("https://"):
                raise ctx.fail(where, "an https:// URL", item)
        elif name in _OAUTH_TEXT:
            if not isinstance(item, str) or not item:
                raise ctx.fail(where, "a non-empty string", item)
        elif name == "ca-file":
            item = ctx.path(where, item)
        elif name in _OAUTH_NUMBERS or name == "cache-size":
            whole = name in ("cache-size", "leeway")
            if isinstance(item, str):
                item = _parse_scalar(item, int if whole else float, where)
            if isinstance(item, bool) or not isinstance(item, int if whole else int | float):
                raise ctx.fail(where, "a number >= 0", item)
            if not math.isfinite(item) or item < 0:
                raise ctx.fail(where, "a number >= 0", item)
        else:
            known = ", ".join(sorted(_OAUTH_TEXT + _OAUTH_URLS + _OAUTH_NUMBERS + ("ca-file",)))
            raise ConfigError(f"{ctx.source}: unknown key {where} (known: {known}, cache-size)")
        layer.oauth[str(name).replace("-", "_")] = item


def _webhook_key(layer: _Layer, key: str, value: object, ctx: _Context) -> None:
    """``[[webhook]]`` tables (a file) or ``URL;key=value`` strings (either source)."""
    if not isinstance(value, list | tuple):
        raise ctx.fail(key, "a list of webhooks", value)
    hooks = []
    for n, item in enumerate(value, 1):
        try:
            table = parse_webhook(item) if isinstance(item, str) else item
            if not isinstance(table, Mapping):
                raise ValueError(f"expects a table or URL;KEY=VALUE text, got {item!r}")
            hooks.append(webhook_from_table(table, ctx.base))
        except ValueError as e:
            raise ConfigError(f"{ctx.source}: webhook {n}: {e}") from None
    urls = [hook.url for hook in hooks]
    if len(set(urls)) != len(urls):
        raise ConfigError(f"{ctx.source}: the same webhook URL twice")
    layer.fields["webhooks"] = tuple(hooks)


def _oauth_config(given: dict[str, object]) -> OAuthConfig:
    oauth = OAuthConfig(**given)  # type: ignore[arg-type]
    if oauth.jwks and not (oauth.issuer and oauth.audience):
        raise ConfigError("oauth: jwks needs issuer and audience (the tokens meant for us)")
    if oauth.introspect and not (oauth.client_id and oauth.client_secret):
        raise ConfigError(
            "oauth: introspect needs client-id and client-secret (in the configuration file)"
        )
    if oauth.timeout <= 0:
        raise ConfigError("oauth: timeout must be above 0 seconds")
    return oauth


_KEYS: Mapping[str, Callable[[_Layer, str, object, _Context], None]] = {
    "data-dir": _path_key,
    "passwd-file": _path_key,
    "tls-cert": _path_key,
    "tls-key": _path_key,
    "backend": _backend_key,
    "imap": _endpoints_key,
    "imaps": _endpoints_key,
    "lmtp": _endpoints_key,
    "managesieve": _endpoints_key,
    "no-imap": _no_endpoints_key,
    "no-imaps": _no_endpoints_key,
    "allow-plaintext-auth": _plaintext_key,
    "backend-option": _backend_options_key,
    "limits": _limits_key,
    "workers": _workers_key,
    "quota-storage": _quota_option_key,
    "quota-messages": _quota_option_key,
    "quota": _quota_key,
    "oauth": _oauth_key,
    "metrics": _metrics_key,
    "log-format": _log_format_key,
    "webhook": _webhook_key,
    "submission": _submission_key,
}


def _merge(layers: list[_Layer]) -> Config:
    fields: dict[str, object] = {}
    backend_options: dict[str, str] = {}
    limits: dict[str, LimitValue] = {}
    quota: dict[str, int] = {}
    quota_users: dict[str, dict[str, int]] = {}
    oauth: dict[str, object] = {}
    for layer in layers:
        oauth.update(layer.oauth)
        fields.update(layer.fields)
        backend_options.update(layer.backend_options)
        limits.update(layer.limits)
        quota.update(layer.quota)
        for user, given in layer.quota_users.items():
            quota_users.setdefault(user, {}).update(given)
    if (fields.get("tls_cert") is None) != (fields.get("tls_key") is None):
        raise ConfigError("tls-cert and tls-key go together: give both or neither")
    default = QuotaLimits(**quota)
    policy = QuotaPolicy(
        default,
        {user: dataclasses.replace(default, **given) for user, given in quota_users.items()},
    )
    settings = dataclasses.replace(ServerSettings(), **limits, quota=policy)  # type: ignore[arg-type]
    return Config(
        backend_options=backend_options,
        settings=settings,
        oauth=_oauth_config(oauth),
        **fields,  # type: ignore[arg-type]
    )
