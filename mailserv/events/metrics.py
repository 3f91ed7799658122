"""Prometheus metrics: what the engine counts (``IMetrics``), and how it is served.

The engine calls an :class:`IMetrics` it is given; :class:`NoMetrics` (the default) does
nothing, so the engine never asks whether metrics are on.  :class:`PrometheusMetrics` keeps
its own ``CollectorRegistry`` (never prometheus-client's global one): two servers in one
process count apart.  Counting a command is one dict lookup of a cached labelled child and a
histogram observation.  Connections by state are not counted as they change: they are read
from the open sessions when scraped, so the hot path pays nothing for them.

``--workers N``: each child counts in its own registry; the master serves the children's
series together, each with a ``worker`` label (Prometheus sums them with
``sum without (worker) (...)``).  On each scrape the master asks every child over the AMP
channel it already has (:mod:`mailserv.workers.limits`) for a snapshot of its registry: the
families as JSON, compressed, in pages (an AMP value holds at most 64 KiB).  Asking when
scraped keeps the figures current with no shared files and nothing to clean up after a
child dies, unlike prometheus-client's multiprocess mode, whose directory outlives its
processes and which cannot read the sessions at scrape time.

Served by twisted.web on ``--metrics ENDPOINT`` (:func:`metrics_site`).
"""

from __future__ import annotations

import json
import zlib
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from twisted.internet.defer import Deferred, DeferredLock
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import Interface, implementer

__all__ = [
    "LISTENERS",
    "STATES",
    "IMetrics",
    "MetricsResource",
    "NoMetrics",
    "PrometheusMetrics",
    "SnapshotPages",
    "WorkerMetrics",
    "metrics_site",
]

_log = Logger()

LISTENERS = ("imap", "imaps")
"""``listener`` label: where the connection came in (STARTTLS port, implicit TLS port)."""
STATES = ("not_authenticated", "authenticated", "selected", "idle")
"""``state`` label of ``mailserv_connections``."""

COMMAND_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
DELAY_BUCKETS = (0.1, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)

ConnectionSource = Callable[[], Iterable[tuple[str, str]]]
"""Gives (listener, state) of each open connection, when scraped."""
PageSource = Callable[[int], Awaitable[tuple[bytes, int]]]
"""Asks one worker for page N of its snapshot: (the page, how many pages)."""

PAGE_SIZE = 60_000
"""Bytes of a snapshot page: under AMP's 65,535-byte bound of a value."""
SCRAPE_TIMEOUT = 5.0
"""Seconds a worker has to answer the master's scrape; a late worker is left out."""


class IMetrics(Interface):
    """What the engine counts; every call must be cheap (it runs on the reactor thread)."""

    def command(name: str, uid: bool, status: bytes, seconds: float) -> None:
        """A command ended: its name (``uid``: after the UID prefix), tagged status
        (``OK``/``NO``/``BAD``; ``BYE``: the connection went meanwhile) and duration."""

    def login(mechanism: str, result: str) -> None:
        """A login attempt ended: ``result`` is ``ok``, ``failed``, ``blocked``, ``error``
        or ``unavailable`` (not decided: an OAuth provider could not be asked)."""

    def login_delayed(seconds: float) -> None:
        """A failed login's answer is held back ``seconds`` (the failed-login throttle)."""

    def lockout(scope: str) -> None:
        """Logins refused: ``address`` (the throttle blocks the network), ``user`` (it
        blocks the user name, failing from anywhere) or ``connection`` (too many failures
        on one connection: BYE)."""

    def backend_error(kind: str) -> None:
        """A command failed in the backend (``kind``: the error class) or in the server
        (``internal``)."""

    def delivery(result: str) -> None:
        """A message delivered (LMTP, ``deliver``): ``result`` e.g. ``ok``, ``rejected``."""

    def webhook_queue(depth: int) -> None:
        """Webhook events waiting to be sent."""

    def webhook_failed() -> None:
        """A webhook POST failed (it will be retried or dead-lettered)."""

    def watch_connections(source: ConnectionSource) -> None:
        """Read the open connections from ``source`` when scraped (a factory's sessions)."""


@implementer(IMetrics)
class NoMetrics:
    """Metrics off: every call does nothing."""

    def command(self, name: str, uid: bool, status: bytes, seconds: float) -> None:
        pass

    def login(self, mechanism: str, result: str) -> None:
        pass

    def login_delayed(self, seconds: float) -> None:
        pass

    def lockout(self, scope: str) -> None:
        pass

    def backend_error(self, kind: str) -> None:
        pass

    def delivery(self, result: str) -> None:
        pass

    def webhook_queue(self, depth: int) -> None:
        pass

    def webhook_failed(self) -> None:
        pass

    def watch_connections(self, source: ConnectionSource) -> None:
        pass


@implementer(IMetrics)
class PrometheusMetrics:
    """Counts into ``self.registry``, a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._connections = _Connections()
        r.register(self._connections)
        self._commands = _CommandTimes()
        r.register(self._commands)
        self._logins = Counter(
            "mailserv_logins", "Login attempts by SASL mechanism (LOGIN-COMMAND: the LOGIN "
            "command) and result", ["mechanism", "result"], registry=r,
        )  # fmt: skip
        self._delays = Histogram(
            "mailserv_login_delay_seconds", "Failed logins' answers held back by the throttle",
            buckets=DELAY_BUCKETS, registry=r,
        )  # fmt: skip
        self._lockouts = Counter(
            "mailserv_login_lockouts", "Logins refused after too many failures, by scope "
            "(address: the network is blocked; user: the user name is; connection: BYE)",
            ["scope"], registry=r,
        )  # fmt: skip
        self._backend_errors = Counter(
            "mailserv_backend_errors", "Commands failed by the backend (by error class) or the "
            "server (internal)", ["kind"], registry=r,
        )  # fmt: skip
        self._deliveries = Counter(
            "mailserv_deliveries", "Messages delivered, by result", ["result"], registry=r
        )
        self._webhook_depth = Gauge(
            "mailserv_webhook_queue_depth", "Webhook events waiting to be sent", registry=r
        )
        self._webhook_failures = Counter(
            "mailserv_webhook_failures", "Webhook POSTs that failed", registry=r
        )

    def command(self, name: str, uid: bool, status: bytes, seconds: float) -> None:
        rows = self._commands.rows
        key = (name, uid, status)
        row = rows.get(key)
        if row is None:
            row = rows[key] = [0.0] * (len(COMMAND_BUCKETS) + 2)
        row[bisect_left(COMMAND_BUCKETS, seconds)] += 1
        row[-1] += seconds

    def login(self, mechanism: str, result: str) -> None:
        self._logins.labels(mechanism, result).inc()

    def login_delayed(self, seconds: float) -> None:
        self._delays.observe(seconds)

    def lockout(self, scope: str) -> None:
        self._lockouts.labels(scope).inc()

    def backend_error(self, kind: str) -> None:
        self._backend_errors.labels(kind).inc()

    def delivery(self, result: str) -> None:
        self._deliveries.labels(result).inc()

    def webhook_queue(self, depth: int) -> None:
        self._webhook_depth.set(depth)

    def webhook_failed(self) -> None:
        self._webhook_failures.inc()

    def watch_connections(self, source: ConnectionSource) -> None:
        self._connections.sources.append(source)


class _CommandTimes:
    """``mailserv_command_duration_seconds{command,result}``: a histogram kept as plain
    lists, written and read on the reactor thread only, so counting a command takes no lock
    (prometheus-client's Histogram takes one per bucket and sum: several times the cost)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, bool, bytes], list[float]] = {}
        """(name, uid, status) -> the count of each bucket (not cumulative), of +Inf, and
        the sum of the durations last."""

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        bounds = [floatToGoString(b) for b in COMMAND_BUCKETS] + ["+Inf"]
        for (name, uid, status), row in list(self.rows.items()):
            buckets, seen = [], 0.0
            for bound, count in zip(bounds, row, strict=False):
                seen += count
                buckets.append((bound, seen))
            label = f"UID {name}" if uid else name
            family.add_metric([label, status.decode("ascii", "replace")], buckets, row[-1])
        yield family

    @staticmethod
    def _family() -> HistogramMetricFamily:
        return HistogramMetricFamily(
            "mailserv_command_duration_seconds",
            "IMAP commands by name and tagged result, and how long they took",
            labels=["command", "result"],
        )  # fmt: skip


class _Connections:
    """``mailserv_connections{listener,state}``, counted from the sessions when scraped."""

    def __init__(self) -> None:
        self.sources: list[ConnectionSource] = []

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        counts = dict.fromkeys(((lst, st) for lst in LISTENERS for st in STATES), 0)
        for source in self.sources:
            for key in source():
                counts[key] = counts.get(key, 0) + 1
        family = self._family()
        for (listener, state), count in counts.items():
            family.add_metric([listener, state], count)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "mailserv_connections", "Open IMAP connections by listener and state",
            labels=["listener", "state"],
        )  # fmt: skip


# -- --workers N: the children's registries, served by the master -------------------------


def snapshot(registry: CollectorRegistry) -> bytes:
    """The registry's families and samples as compressed JSON (what a child sends)."""
    families = [
        [m.name, m.documentation, m.type, m.unit, [[s.name, s.labels, s.value] for s in m.samples]]
        for m in registry.collect()
    ]
    return zlib.compress(json.dumps(families, separators=(",", ":")).encode("utf-8"))


def _families(data: bytes) -> list[Metric]:
    families = []
    for name, documentation, kind, unit, samples in json.loads(zlib.decompress(data)):
        metric = Metric(name, documentation, kind, unit)
        for sample_name, labels, value in samples:
            metric.add_sample(sample_name, labels, value)
        families.append(metric)
    return families


class SnapshotPages:
    """A child's answers to the master's scrape: page 0 takes a new snapshot of ``registry``,
    the next pages are read from it (the master asks for them in order, one scrape at a
    time)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._data = b""

    def page(self, number: int) -> tuple[bytes, int]:
        if number == 0:
            self._data = snapshot(self._registry)
        count = max(1, -(-len(self._data) // PAGE_SIZE))
        return self._data[number * PAGE_SIZE : (number + 1) * PAGE_SIZE], count


class WorkerMetrics:
    """The master's collector: the families of every child, each sample labelled with its
    worker.  ``refresh`` asks the children (before each scrape); ``collect`` serves what
    they answered."""

    def __init__(self, workers: Callable[[], Iterable[tuple[str, PageSource]]], clock: Any):
        self._workers = workers
        self._clock = clock
        self._lock = DeferredLock()
        self._latest: list[tuple[str, list[Metric]]] = []

    async def refresh(self) -> None:
        await self._lock.acquire()
        try:
            latest = []
            for worker, pages in list(self._workers()):
                try:
                    latest.append((worker, _families(await self._fetch(pages))))
                except Exception as exc:  # noqa: BLE001 - a late or gone worker is left out
                    _log.warn("Metrics of worker {worker} left out: {why}", worker=worker, why=exc)
            self._latest = latest
        finally:
            self._lock.release()

    async def _fetch(self, pages: PageSource) -> bytes:
        parts: list[bytes] = []
        count = 1
        while len(parts) < count:
            asked = Deferred.fromCoroutine(_awaited(pages(len(parts))))
            data, count = await asked.addTimeout(SCRAPE_TIMEOUT, self._clock)
            parts.append(data)
        return b"".join(parts)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for worker, families in self._latest:
            for family in families:
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for s in family.samples:
                    into.add_sample(s.name, {**s.labels, "worker": worker}, s.value)
        yield from merged.values()


async def _awaited(awaitable: Awaitable[tuple[bytes, int]]) -> tuple[bytes, int]:
    return await awaitable


# -- serving -------------------------------------------------------------------------------


class MetricsResource(Resource):
    """Renders the registry in Prometheus' text format on any GET; ``refresh`` (the
    master's: ask the workers) runs first when given."""

    isLeaf = True

    def __init__(
        self,
        registry: CollectorRegistry,
        refresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__()
        self._registry = registry
        self._refresh = refresh

    def render_GET(self, request: Request) -> bytes | int:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        if self._refresh is None:
            return generate_latest(self._registry)
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)

        async def later() -> None:
            assert self._refresh is not None
            await self._refresh()
            if not gone:
                request.write(generate_latest(self._registry))
                request.finish()

        Deferred.fromCoroutine(later()).addErrback(
            lambda f: _log.failure("Serving metrics failed", f)
        )
        return NOT_DONE_YET


class _QuietSite(Site):
    """No access log line per scrape (a scrape every few seconds would fill the log)."""

    def log(self, request: http.Request) -> None:
        pass


def metrics_site(metrics: PrometheusMetrics | WorkerMetrics) -> Site:
    """The twisted.web site of ``--metrics``: the process's own registry, or (the master of
    ``--workers``) the children's, asked for on each scrape."""
    if isinstance(metrics, PrometheusMetrics):
        resource = MetricsResource(metrics.registry)
    else:
        registry = CollectorRegistry()
        registry.register(metrics)
        resource = MetricsResource(registry, metrics.refresh)
    site = _QuietSite(resource)
    site.noisy = False
    return site
