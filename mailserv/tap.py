"""``twistd imapserv``: the command-line options and the service tree they describe.

``build_server(config)`` does the assembly (data dir, TLS, passwd-file, backend, portal,
factory) without listening, for tests and embedders; ``build_service(config)`` adds one
listener per endpoint and starts/stops the backend with the service.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IPushProducer,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from mailserv.auth.apppasswords import FILE_NAME as APP_PASSWORDS
from mailserv.auth.apppasswords import AppPasswordChecker, AppPasswordFile
from mailserv.auth.passwd import PasswdFile
from mailserv.auth.portal import build_portal
from mailserv.auth.sasl import Mechanisms
from mailserv.auth.sasl.oauthbearer import oauth_mechanisms
from mailserv.auth.scramoffer import FileScramCensus
from mailserv.auth.throttle import ILoginThrottle
from mailserv.auth.tokens import OAuthUserChecker, build_validator
from mailserv.auth.users import UserStoreChecker
from mailserv.backends import UnknownBackend, available_backends, find_backend
from mailserv.collector import CollectorPolicy, NoSessions
from mailserv.config import (
    DEFAULT_BACKEND,
    DEFAULT_DATA_DIR,
    MAX_WORKERS,
    Config,
    load_config,
    parse_assignment,
    parse_limit,
)
from mailserv.delivery.service import lmtp_factory, managesieve_factory
from mailserv.errors import BackendOptionError
from mailserv.events.logs import JSONLogService, json_observer
from mailserv.events.metrics import IMetrics, PrometheusMetrics, WorkerMetrics, metrics_site
from mailserv.events.webhooks import WebhookService
from mailserv.imap.admission import IConnectionLimits
from mailserv.imap.factory import IMAPServerFactory
from mailserv.imap.settings import ServerSettings
from mailserv.interfaces import (
    IBackend,
    IHomeLookupConsumer,
    IMultiProcessBackend,
    ISlicedBackend,
)
from mailserv.tls import TLSError, TLSMaterial, prepare_tls
from mailserv.workers.master import WorkerPool

__all__ = ["Options", "ServerParts", "build_server", "build_service", "makeService"]

_log = Logger()
T = TypeVar("T")


def _limits_help() -> str:
    fields = dataclasses.fields(ServerSettings)
    return ", ".join(f"{f.name}={f.default!r}" for f in fields if f.name != "quota")


class Options(usage.Options):
    """Command line of ``twistd imapserv``; ``self.config`` holds the merged result."""

    synopsis = "[options]"
    longdesc = (
        "Serves IMAP4rev1 from a pluggable mail store.  Every option can also be set in a "
        "TOML file given with --config, under the same names ([backend-option] and [limits] "
        "are tables; [quota] holds storage, messages and a [quota.users] table of per-user "
        "overrides); the command line wins.  ENDPOINT is a Twisted server endpoint string; "
        "an --imaps ssl: endpoint without privateKey= is served with the configured "
        "certificate, and so is any other kind of --imaps endpoint.  "
        "Limits (--limit NAME=VALUE) and their defaults: " + _limits_help() + "."
    )
    optFlags = [
        ["no-imap", None, "Do not listen for IMAP (STARTTLS) connections."],
        ["no-imaps", None, "Do not listen for implicit-TLS IMAP connections."],
        [
            "allow-plaintext-auth",
            None,
            "Allow LOGIN/AUTHENTICATE without TLS from non-loopback clients.",
        ],
    ]
    optParameters = [
        ["config", "c", None, "TOML configuration file; the command line overrides it."],
        [
            "data-dir",
            "d",
            None,
            f"Directory for TLS material, passwd-file and backend data [default: "
            f"./{DEFAULT_DATA_DIR}; created with mode 0700].",
        ],
        [
            "backend",
            "b",
            None,
            f"Mail store plugin (see --help-backends) [default: {DEFAULT_BACKEND}].",
        ],
        [
            "passwd-file",
            None,
            None,
            "Dovecot-style passwd-file of users [default: DATA/passwd, created empty, 0600].",
        ],
        [
            "tls-cert",
            None,
            None,
            "PEM certificate, leaf first then intermediates [default: DATA/tls/cert.pem, "
            "a self-signed one generated on first start].",
        ],
        ["tls-key", None, None, "PEM private key of --tls-cert [default: DATA/tls/key.pem]."],
        [
            "workers",
            "w",
            None,
            "Processes serving the listeners [default: the number of cores (at most "
            f"{MAX_WORKERS}) for backends that share their store between processes (maildir, "
            "sql on PostgreSQL), else 1].  Connection limits and the failed-login "
            "throttle hold for all of them together.",
        ],
        [
            "quota-storage",
            None,
            None,
            "Storage quota of every user in KiB (RFC 9208 STORAGE) [default: 0, no limit].",
        ],
        [
            "quota-messages",
            None,
            None,
            "Message-count quota of every user (RFC 9208 MESSAGE) [default: 0, no limit].",
        ],
        # OAUTHBEARER/XOAUTH2 ([oauth] in the file; client-id/client-secret only there).
        ["oauth-introspect", None, None, "RFC 7662 token introspection https:// URL."],
        ["oauth-jwks", None, None, "JWKS https:// URL to check JWT access tokens locally."],
        ["oauth-issuer", None, None, "The tokens' required issuer (iss)."],
        ["oauth-audience", None, None, "The tokens' required audience (aud)."],
        ["oauth-user-claim", None, None, "Claim naming the user [default: sub]."],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics over HTTP on ENDPOINT (e.g. tcp:9100:interface=127.0.0.1) "
            "[default: none].",
        ],
        [
            "log-format",
            None,
            None,
            "text (twistd's log) or json: one JSON object per line on standard output, "
            "for log shippers (run with twistd -n) [default: text].",
        ],
        [
            "submission",
            None,
            None,
            "Send Sieve's redirects and vacation replies by SMTP through ENDPOINT, a client "
            "endpoint string (e.g. tcp:localhost:25) [default: none: redirect is refused and "
            "vacation replies go to DATA/sieve/outbox].",
        ],
    ]

    config: Config

    def __init__(self) -> None:
        super().__init__()
        self._given: dict[str, Any] = {}

    def opt_imap(self, endpoint: str) -> None:
        """Listen for IMAP on ENDPOINT; repeatable [default: tcp:1143:interface=127.0.0.1]."""
        self._given.setdefault("imap", []).append(endpoint)

    def opt_imaps(self, endpoint: str) -> None:
        """Listen for IMAP over TLS; repeatable [default: ssl:1993:interface=127.0.0.1]."""
        self._given.setdefault("imaps", []).append(endpoint)

    def opt_lmtp(self, endpoint: str) -> None:
        """Deliver mail in over LMTP (RFC 2033) on ENDPOINT, e.g. unix:/run/mailserv/lmtp \
or tcp:24:interface=127.0.0.1; repeatable [default: none]."""
        self._given.setdefault("lmtp", []).append(endpoint)

    def opt_managesieve(self, endpoint: str) -> None:
        """Serve ManageSieve (RFC 5804: users' Sieve scripts; IMAP's sign-in, STARTTLS) \
on ENDPOINT, e.g. tcp:4190:interface=127.0.0.1; an ssl: ENDPOINT is TLS from the first \
byte, with the IMAPS certificate unless it names a key; repeatable [default: none]."""
        self._given.setdefault("managesieve", []).append(endpoint)

    def opt_backend_option(self, assignment: str) -> None:
        """KEY=VALUE passed to the backend; repeatable (keys: --help-backends)."""
        key, value = parse_assignment(assignment, "--backend-option")
        self._given.setdefault("backend-option", {})[key] = value

    def opt_webhook(self, text: str) -> None:
        """'URL;secret-file=PATH;events=a,b;...' POSTs signed events there; repeatable
        (keys and events: README, Webhooks)."""
        self._given.setdefault("webhook", []).append(text)

    def opt_limit(self, assignment: str) -> None:
        """NAME=VALUE engine limit (a ServerSettings field, listed below); repeatable."""
        name, value = parse_limit(assignment)
        self._given.setdefault("limits", {})[name] = value

    def opt_help_backends(self) -> None:
        """List the installed backends and their --backend-option keys, then exit."""
        for name, plugin in available_backends().items():
            print(f"{name}: {plugin.description}")
            for key, text in sorted(dict(plugin.options).items()):
                print(f"    {key}: {text}")
        sys.exit(0)

    def postOptions(self) -> None:
        layer = dict(self._given)
        named = ("data-dir", "backend", "passwd-file", "tls-cert", "tls-key", "workers")
        for name in named + ("quota-storage", "quota-messages", "metrics", "log-format",
                             "submission"):  # fmt: skip
            if self[name] is not None:
                layer[name] = self[name]
        oauth = {
            name: self[f"oauth-{name}"]
            for name in ("introspect", "jwks", "issuer", "audience", "user-claim")
            if self[f"oauth-{name}"] is not None
        }
        if oauth:
            layer["oauth"] = oauth
        for name in ("no-imap", "no-imaps", "allow-plaintext-auth"):
            if self[name]:
                layer[name] = True
        self.config = load_config(layer, self["config"])
        if not self.config.imap and not self.config.imaps:
            raise usage.UsageError("nothing to listen on: both --no-imap and --no-imaps")


def makeService(options: Options) -> IService:
    """twistd's entry point (named by the plugin in twisted/plugins/mailserv_imapserv.py).

    twistd shows a traceback for any exception here, so a configuration error becomes a
    one-line message and exit status 1 instead.
    """
    try:
        service = build_service(options.config)
    except usage.UsageError as e:
        raise SystemExit(f"twistd imapserv: {e}") from None
    if options.config.log_format == "json":
        # Standard output as it is now, before twistd makes it a log of its own.
        return JSONLogService(service, json_observer(sys.stdout))
    return service


@dataclass(frozen=True)
class ServerParts:
    """What ``build_server`` assembled; start ``backend`` before serving with ``factory``."""

    factory: IMAPServerFactory
    backend: IBackend
    tls: TLSMaterial
    webhooks: WebhookService | None = None
    """With ``--webhook``: start it before, stop it after the sessions (it outlives them)."""


def build_server(
    config: Config,
    reactor: IReactorTime | None = None,
    limits: IConnectionLimits | None = None,
    throttle: ILoginThrottle | None = None,
    metrics: IMetrics | None = None,
    deliver_events: bool = True,
) -> ServerParts:
    """Data dir, TLS material, passwd-file, backend (built with ``reactor``, by default the
    global one), portal and factory; no listening.  ``limits`` and ``throttle``: who counts
    connections and failed logins (default: the factory, in this process); ``metrics``:
    what the engine counts into (default: nothing).  ``deliver_events``: this process sends
    the webhooks' queue (not a worker: the master).

    Bad configuration raises usage.UsageError with a message for the operator.
    """
    if reactor is None:
        from twisted.internet import reactor as running

        reactor = IReactorTime(running)
    try:
        return _build_server(config, reactor, limits, throttle, metrics, deliver_events)
    except (BackendOptionError, TLSError, UnknownBackend) as e:
        raise usage.UsageError(str(e)) from None
    except OSError as e:
        raise usage.UsageError(f"{e.filename}: {e.strerror}" if e.filename else str(e)) from None


def _build_server(
    config: Config,
    reactor: IReactorTime,
    limits: IConnectionLimits | None,
    throttle: ILoginThrottle | None,
    metrics: IMetrics | None,
    deliver_events: bool = True,
) -> ServerParts:
    os.makedirs(config.data_dir, mode=0o700, exist_ok=True)
    _log.info("Data directory {path}", path=os.path.abspath(config.data_dir))
    tls = prepare_tls(config.data_dir, config.tls_cert, config.tls_key)
    _log.info(
        "TLS certificate {path} ({state}), SHA-256 fingerprint {fingerprint}",
        path=os.path.abspath(tls.cert_path),
        state="generated now" if tls.generated else "loaded",
        fingerprint=tls.fingerprint,
    )
    if _create_private_file(config.passwd_path):
        _log.info(
            "Created empty passwd-file {path}; add users with "
            "`mailserv user add NAME --passwd-file {path} --password-stdin`",
            path=os.path.abspath(config.passwd_path),
        )
    passwd = PasswdFile(config.passwd_path)
    options = dict(config.backend_options)
    backend = find_backend(config.backend).build(options, config.data_dir, reactor)
    _offer_homes(backend, passwd)
    _log.info("Backend {name}", name=config.backend)
    apps = AppPasswordFile(os.path.join(os.path.dirname(config.passwd_path), APP_PASSWORDS))
    census = FileScramCensus(passwd, apps)
    portal = build_portal(backend, AppPasswordChecker(passwd, apps, reactor, census=census))
    mechanisms = _oauth(config, portal, reactor)
    webhooks = None
    if config.webhooks:
        webhooks = WebhookService(config.webhooks, config.data_dir, reactor, deliver_events)
    factory = IMAPServerFactory(
        portal,
        config.settings,
        tls=tls.options,
        throttle=throttle,
        clock=reactor,
        mechanisms=mechanisms,
        limits=limits,
        metrics=metrics,
        events=webhooks.sink if webhooks is not None else None,
        turns=ISlicedBackend(backend).turns if ISlicedBackend.providedBy(backend) else None,
    )
    if webhooks is not None:
        webhooks.sessions_gone = factory.shutdown
        if webhooks.dispatcher is not None and metrics is not None:
            webhooks.dispatcher.on_failure.append(metrics.webhook_failed)
            webhooks.dispatcher.on_depth.append(metrics.webhook_queue)
    return ServerParts(factory, backend, tls, webhooks)


def _oauth(config: Config, portal: Portal, reactor: IReactorTime) -> Mechanisms | None:
    """With ``[oauth]``: OAUTHBEARER and XOAUTH2 beside the discovered mechanisms, and a
    checker letting a validated token's user in if the password checker's store knows them.
    A backend that checks passwords elsewhere (the proxy, whose upstream needs the user's
    password unless it has a master user) has no such store, so it gets no OAuth."""
    if not config.oauth.enabled:
        return None
    password_checker = portal.checkers.get(IUsernamePassword)
    if not isinstance(password_checker, UserStoreChecker):
        _log.warn(
            "OAuth is configured but not offered: the {backend} backend checks passwords "
            "itself, so there is no user store to find a token's user in",
            backend=config.backend,
        )
        return None
    try:
        validator = build_validator(config.oauth, reactor)
    except ValueError as e:
        raise usage.UsageError(f"oauth: {e}") from None
    assert validator is not None
    portal.registerChecker(OAuthUserChecker(password_checker.store, reactor))
    _log.info(
        "OAUTHBEARER and XOAUTH2 offered; tokens checked by {introspect} {jwks}",
        introspect=config.oauth.introspect or "",
        jwks=config.oauth.jwks or "",
    )
    return Mechanisms.discover(oauth_mechanisms(validator, config.oauth))


def _offer_homes(backend: IBackend, passwd: PasswdFile) -> None:
    """A backend that keeps mail under users' homes (maildir's ``root=~/Maildir``) gets a
    lookup of the passwd-file's home field, if it provides ``IHomeLookupConsumer``."""
    if IHomeLookupConsumer.providedBy(backend):

        def home_of(user: str) -> str | None:
            entry = passwd.lookup(user)
            return (entry.home or None) if entry is not None else None

        IHomeLookupConsumer(backend).set_home_lookup(home_of)


def build_service(config: Config, reactor: Any = None) -> MultiService:
    """The whole server as one service: the backend, and a listener per endpoint.

    Ports are bound when the service starts (before twistd drops privileges, so ports
    below 1024 work with ``--uid``), but accept no connection until the backend's start has
    finished (schema created, pools up): a client that connects the instant a port is
    bound waits in the kernel's backlog and is greeted once the backend can serve it.
    """
    if reactor is None:
        from twisted.internet import reactor
    counted = PrometheusMetrics() if config.metrics is not None else None
    parts = build_server(config, reactor, metrics=counted)
    top = MultiService()
    if parts.webhooks is not None:
        parts.webhooks.setServiceParent(top)  # with --workers, the master delivers
    gate = AcceptGate()
    workers = _worker_count(config, parts.backend)
    if workers > 1:
        _check_workers(config, workers, parts.backend)
    else:
        service = BackendService(parts.backend, reactor, gate, parts.factory, own_process=True)
        service.setServiceParent(top)
    listeners: list[tuple[str, str, CertificateOptions | None]] = [
        (d, "IMAP", None) for d in config.imap
    ]
    listeners += [(d, "IMAPS", parts.tls.options) for d in config.imaps]
    factories: dict[str, IProtocolFactory] = {"IMAP": parts.factory, "IMAPS": parts.factory}
    if config.lmtp:
        listeners += [(d, "LMTP", None) for d in config.lmtp]
        factories["LMTP"] = lmtp_factory(
            parts.backend, parts.factory, reactor, config.data_dir, config.submission
        )
    if config.managesieve:
        listeners += [
            (d, "MANAGESIEVES", parts.tls.options)
            if d.startswith("ssl:")
            else (d, "MANAGESIEVE", None)
            for d in config.managesieve
        ]
        factories["MANAGESIEVE"] = managesieve_factory(
            parts.factory, config.data_dir, config.submission is not None
        )
        factories["MANAGESIEVES"] = factories["MANAGESIEVE"]
    for description, label, tls in listeners:
        endpoint = _listening_endpoint(reactor, description, label, tls, gate)
        listener = StreamServerEndpointService(endpoint, factories[label])
        # As twisted.application.strports.service does: a port that cannot be bound fails
        # the start instead of leaving a server that is silently half up.
        listener._raiseSynchronously = True
        listener.setServiceParent(top)
    pool = None
    if workers > 1:
        # The ports stay held here (the gate never opens); the children accept on them.
        pool = WorkerPool(config, workers, reactor, lambda: gate.held, _announce)
    if config.metrics is not None and counted is not None:
        _metrics_listener(config.metrics, reactor, gate, counted, pool).setServiceParent(top)
    if pool is not None:
        pool.setServiceParent(top)
    return top


def _metrics_listener(
    description: str,
    reactor: Any,
    gate: AcceptGate,
    counted: PrometheusMetrics,
    pool: WorkerPool | None,
) -> Service:
    """``--metrics``: this process's counts, opened with the IMAP ports once the backend has
    started; or, the master of ``--workers``, its children's, open at once (the children's
    backends start on their own time; a scrape meanwhile shows those that answer)."""
    if pool is None:
        site = metrics_site(counted)
    else:
        gate = AcceptGate()
        gate.release()
        site = metrics_site(WorkerMetrics(pool.limits.metrics_sources, reactor))
    endpoint = _listening_endpoint(reactor, description, "Metrics", None, gate)
    listener = StreamServerEndpointService(endpoint, site)
    listener._raiseSynchronously = True
    return listener


def _worker_count(config: Config, backend: IBackend) -> int:
    """``config.workers``, or when unset: a worker per core if the backend and the
    listeners allow several, else 1 (and the log says why)."""
    if config.workers is not None:
        return config.workers
    if not IMultiProcessBackend.providedBy(backend):
        _log.info(
            "One worker: the {backend} backend keeps its state inside one process",
            backend=config.backend,
        )
        return 1
    own = _own_keys(config)
    if own:
        _log.info("One worker: an --{option} endpoint has a key of its own", option=own[0][0])
        return 1
    cores = os.cpu_count() or 1
    count = min(cores, MAX_WORKERS)
    _log.info("{count} workers ({cores} cores)", count=count, cores=cores)
    return count


def _check_workers(config: Config, workers: int, backend: IBackend) -> None:
    """``--workers N`` needs a backend whose store several processes can share, and our TLS."""
    if not IMultiProcessBackend.providedBy(backend):
        raise usage.UsageError(
            f"--workers {workers}: the {config.backend} backend keeps its state inside "
            "one process; use --workers 1 with it (or a store shared between processes: "
            "maildir, sql on PostgreSQL)"
        )
    own = _own_keys(config)
    if own:
        option, description = own[0]
        raise usage.UsageError(
            f"--{option} {description!r}: with --workers, TLS uses --tls-cert/--tls-key, "
            "not a key of the endpoint's own"
        )


def _own_keys(config: Config) -> list[tuple[str, str]]:
    """(option, endpoint) of each TLS endpoint that brings its own key."""
    tls = [("imaps", d) for d in config.imaps]
    tls += [("managesieve", d) for d in config.managesieve if d.startswith("ssl:")]
    return [(option, d) for option, d in tls if _own_key(d)]


def _own_key(description: str) -> bool:
    """An endpoint string that brings its own TLS key."""
    return "privateKey=" in description or "certKey=" in description


class AcceptGate:
    """Listening ports held paused (not accepting) until the backend has started."""

    def __init__(self) -> None:
        self.open = False
        self._held: list[tuple[str, IListeningPort]] = []

    def add(self, label: str, port: IListeningPort) -> None:
        if self.open or not IPushProducer.providedBy(port):
            # Open already, or a port that cannot pause (no Twisted port is such): serve.
            _announce(label, port)
            return
        IPushProducer(port).pauseProducing()
        self._held.append((label, port))

    @property
    def held(self) -> list[tuple[str, IListeningPort]]:
        """The ports bound and not accepting yet (with ``--workers``: the children's)."""
        return list(self._held)

    def release(self) -> None:
        """The backend is up: accept on every port bound so far, and on those bound later."""
        self.open = True
        held, self._held = self._held, []
        for label, port in held:
            IPushProducer(port).resumeProducing()
            _announce(label, port)


class BackendService(Service):
    """Runs ``backend.start()``/``stop()`` with the service; the listeners start accepting
    when the start has finished; a failed start stops the reactor.

    On stop (the listeners, later siblings, have stopped listening first), the open
    sessions of ``factory`` are told ``* BYE`` and closed before the backend stops.

    ``own_process`` (``twistd imapserv`` and its workers, not an embedding application):
    once the backend has started, the process's garbage collector follows a
    :class:`~mailserv.collector.CollectorPolicy` (what is alive then, and what survives each
    later full pass, leaves the collector's sight; what died there is swept when no
    session runs a command), so a full pass, which holds the reactor thread, walks only
    what became long-lived lately instead of the whole heap.  Stopped with the service.
    """

    def __init__(
        self,
        backend: IBackend,
        reactor: Any,
        gate: AcceptGate | None = None,
        factory: IMAPServerFactory | None = None,
        own_process: bool = False,
    ) -> None:
        self.backend = backend
        self._reactor = reactor
        self._gate = gate or AcceptGate()
        self._factory = factory
        self._own_process = own_process
        self.collector: CollectorPolicy | None = None
        """Our process's collector policy, once the backend has started (own_process)."""

    def startService(self) -> None:
        super().startService()
        started = _deferred(self.backend.start())
        started.addCallback(lambda _: self._started())
        started.addErrback(self._failed)

    def _started(self) -> None:
        if self._own_process and self.running and self.collector is None:
            quiet = self._factory.in_flight if self._factory is not None else NoSessions()
            self.collector = CollectorPolicy(self._reactor, quiet)
            self.collector.start()
        self._gate.release()

    def stopService(self) -> Deferred[object]:
        super().stopService()
        if self.collector is not None:
            self.collector.stop()
            self.collector = None
        if self._factory is None:
            return _deferred(self.backend.stop())
        closed: Deferred[object] = self._factory.shutdown()  # type: ignore[assignment]
        return closed.addCallback(lambda _: _deferred(self.backend.stop()))

    def _failed(self, failure: Failure) -> None:
        _log.failure("The backend failed to start; stopping", failure)
        self._reactor.callWhenRunning(self._reactor.stop)


def _deferred(awaitable: Awaitable[T]) -> Deferred[T]:
    """A Deferred of what the backend contract's awaitable gives (coroutine or Deferred)."""

    async def wait() -> T:
        return await awaitable

    return Deferred.fromCoroutine(wait())


def _listening_endpoint(
    reactor: Any,
    description: str,
    label: str,
    tls: CertificateOptions | None,
    gate: AcceptGate,
) -> IStreamServerEndpoint:
    """Parse an endpoint string; for IMAPS, wrap it in our TLS unless it brings its own."""
    parsed = description
    if tls is not None and description.startswith("ssl:"):
        if _own_key(description):
            tls = None  # an ssl: endpoint with its own key does the TLS itself
        else:
            parsed = "tcp:" + description.removeprefix("ssl:")
    try:
        endpoint = serverFromString(reactor, parsed)
    except (ValueError, TypeError, OSError) as e:
        option = {"MANAGESIEVES": "managesieve"}.get(label, label.lower())
        raise usage.UsageError(f"--{option} {description!r}: {e}") from None
    return _GatedEndpoint(endpoint, label, tls, gate)


@implementer(IStreamServerEndpoint)
class _GatedEndpoint:
    """Adds TLS if given; its port accepts (and is logged) once the gate opens."""

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        label: str,
        tls: CertificateOptions | None,
        gate: AcceptGate,
    ) -> None:
        self._endpoint = endpoint
        self._label = label
        self._tls = tls
        self._gate = gate

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        factory = protocolFactory
        if self._tls is not None:
            factory = TLSMemoryBIOFactory(self._tls, False, protocolFactory)
        return self._endpoint.listen(factory).addCallback(self._bound)

    def _bound(self, port: IListeningPort) -> IListeningPort:
        self._gate.add(self._label, port)
        return port


def _announce(label: str, port: IListeningPort) -> None:
    _log.info("{label} listening on {address}", label=label, address=_show(port))


def _show(port: IListeningPort) -> str:
    address = port.getHost()
    host, number = getattr(address, "host", None), getattr(address, "port", None)
    if host is None or number is None:
        return str(address)
    return f"[{host}]:{number}" if ":" in host else f"{host}:{number}"


def _create_private_file(path: str) -> bool:
    """Create an empty file readable by its owner only; False when it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True
