"""Webhooks: each event POSTed as signed JSON to the URLs that asked for its type.

``WebhookSink`` (the ``IEventSink`` of a server with ``--webhook``) keeps the events each hook
wants in the durable queue (:mod:`mailserv.events.queue`): ``publish`` only adds to a list in
memory, written to the queue file by its own thread on the next turn.  ``Dispatcher`` sends
them with treq, per hook at most one request in flight per (user, mailbox), so a mailbox's
events arrive in order; a connection error, a timeout, HTTP 408, 429 or 5xx is retried after
an exponentially growing delay with jitter; any other answer below 200 or from 300 up, or
``max-attempts`` failures, or an event older than ``max-age``, sends it to the dead-letter
log.  Delivery is at least once: a receiver keys on ``X-Mailserv-Delivery`` (the event id).

Signature: ``X-Mailserv-Signature: sha256=<hex>``, the HMAC-SHA256 with the hook's secret of
``X-Mailserv-Timestamp`` (seconds since the epoch, as ASCII digits) + ``"."`` + the body.

With ``--workers N`` every worker appends to the queue file and the master alone delivers
(finding new rows by polling it); with one process, the process does both.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import HTTPConnectionPool
from zope.interface import implementer

from mailserv.auth.trust import https_agent
from mailserv.events.hookconfig import WebhookConfig
from mailserv.events.queue import QueuedEvent, StoredEvent, WebhookQueue
from mailserv.events.sink import Event, IEventSink

__all__ = ["Dispatcher", "WebhookService", "WebhookSink", "sign"]

_log = Logger()

MAX_BUFFERED = 50_000
"""Events held in memory while the queue file is slow to take them; past it the oldest are
dropped (and logged): the sessions never wait for the disk."""
POLL_INTERVAL = 1.0
"""Seconds between two looks at the queue for rows appended by other processes."""
MAX_IN_FLIGHT = 32
"""Requests sent at once, over all hooks."""
SIGNATURE_HEADER = "X-Mailserv-Signature"
TIMESTAMP_HEADER = "X-Mailserv-Timestamp"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Mailserv-Signature`` value of ``body`` sent at ``timestamp``."""
    message = str(timestamp).encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def queue_paths(data_dir: str) -> tuple[str, str]:
    """The queue file and the dead-letter log of the server whose data dir is ``data_dir``."""
    folder = os.path.join(data_dir, "webhooks")
    return os.path.join(folder, "queue.sqlite"), os.path.join(folder, "dead-letter.jsonl")


@implementer(IEventSink)
class WebhookSink:
    """Takes events, keeps those a hook wants in the queue (in publishing order)."""

    def __init__(self, hooks: Sequence[WebhookConfig], queue: WebhookQueue, reactor: Any) -> None:
        self._hooks = tuple(hooks)
        self._wanted = frozenset().union(*(hook.events for hook in hooks))
        self._queue = queue
        self._reactor = reactor
        self._buffer: list[QueuedEvent] = []
        self._flush_call: IDelayedCall | None = None
        self._writing: Deferred[None] | None = None
        self._idle: list[Deferred[None]] = []
        """Fired when no write is left (``drain``)."""
        self._open = False
        self.stored: list[Callable[[], object]] = []
        """Called (no argument) after each batch reached the queue file."""

    def wants(self, type: str) -> bool:
        return type in self._wanted

    def publish(self, event: Event) -> None:
        try:
            body = json.dumps(event.as_json(), separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError):
            _log.failure("Event {id} cannot be told: not JSON", id=event.id)
            return
        key = json.dumps([event.user, event.mailbox])
        for hook in self._hooks:
            if event.type in hook.events:
                self._buffer.append(QueuedEvent(hook.url, key, event.type, body, event.time))
        if len(self._buffer) > MAX_BUFFERED:
            lost = len(self._buffer) - MAX_BUFFERED
            del self._buffer[:lost]
            _log.error("Webhook queue file too slow: {lost} events dropped", lost=lost)
        if self._open and self._flush_call is None and self._writing is None:
            self._flush_call = self._reactor.callLater(0, self._flush)

    def open(self) -> None:
        """The queue is ready: write what came so far, and from now on."""
        self._open = True
        self._flush()

    def _flush(self) -> None:
        self._flush_call = None
        if not self._buffer or self._writing is not None:
            return
        batch, self._buffer = self._buffer, []
        writing = self._queue.append(batch)
        self._writing = writing

        def written(result: object) -> None:
            self._writing = None
            if isinstance(result, Failure):
                _log.failure("Webhook events lost: the queue file failed", result)
            for notify in self.stored:
                notify()
            self._flush()
            if self._writing is None:
                idle, self._idle = self._idle, []
                for waiter in idle:
                    waiter.callback(None)

        writing.addBoth(written)

    async def drain(self) -> None:
        """Returns once every event published so far is in the queue file."""
        self._open = False
        if self._flush_call is not None:
            self._flush_call.cancel()
            self._flush_call = None
        self._flush()
        while self._writing is not None:
            waiter: Deferred[None] = Deferred()
            self._idle.append(waiter)
            await waiter


class Dispatcher:
    """Sends the queue's events to their hooks, in order per (hook, user, mailbox)."""

    def __init__(self, hooks: Sequence[WebhookConfig], queue: WebhookQueue, reactor: Any) -> None:
        import treq.client

        self._hooks = {hook.url: hook for hook in hooks}
        self._queue = queue
        self._reactor = reactor
        # A client per hook, trusting its ca-file (or the system's roots); a pool per
        # ca-file, so no connection checked against one trust is used under another.
        self._pools: dict[str | None, HTTPConnectionPool] = {}
        self._clients: dict[str, treq.client.HTTPClient] = {}
        for hook in hooks:
            pool = self._pools.get(hook.ca_file)
            if pool is None:
                pool = self._pools[hook.ca_file] = HTTPConnectionPool(reactor, persistent=True)
            agent = https_agent(reactor, hook.ca_file, pool, f"ca-file of {hook.url}")
            self._clients[hook.url] = treq.client.HTTPClient(agent)
        self._random = random.Random()
        self._in_flight: dict[tuple[str, str], Deferred[None]] = {}
        self._pumping = False
        self._again = False
        self._timer: IDelayedCall | None = None
        self._running = False
        self.on_failure: list[Callable[[], object]] = []
        """Called at each failed POST (retried or given up): for metrics."""
        self.on_depth: list[Callable[[int], object]] = []
        """Called with the events waiting, at each look at the queue: for metrics."""

    def start(self) -> None:
        self._running = True
        self.kick()

    def kick(self) -> None:
        """Look at the queue now (new events, or a request finished)."""
        if not self._running:
            return
        if self._pumping:
            self._again = True
            return
        self._pumping = True
        Deferred.fromCoroutine(self._pump()).addErrback(self._pump_failed)

    def _pump_failed(self, failure: Failure) -> None:
        self._pumping = False
        _log.failure("Webhook queue unreadable; trying again later", failure)
        self._wake_at(self._reactor.seconds() + POLL_INTERVAL)

    async def _pump(self) -> None:
        wake: float | None = None
        self._again = True
        while self._again and self._running:
            self._again = False
            now = self._reactor.seconds()
            due, wake, depth = await self._queue.heads(now, 2 * MAX_IN_FLIGHT)
            for observe in self.on_depth:
                observe(depth)
            for event in due:
                if len(self._in_flight) >= MAX_IN_FLIGHT:
                    break
                if (event.hook, event.key) not in self._in_flight:
                    self._start_send(event)
        self._pumping = False
        poll = self._reactor.seconds() + POLL_INTERVAL
        self._wake_at(poll if wake is None else min(wake, poll))

    def _wake_at(self, when: float) -> None:
        if not self._running:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        delay = max(0.0, when - self._reactor.seconds())
        self._timer = self._reactor.callLater(delay, self.kick)

    def _start_send(self, event: StoredEvent) -> None:
        slot = (event.hook, event.key)
        sending = Deferred.fromCoroutine(self._deliver(event))
        self._in_flight[slot] = sending

        def finished(result: object) -> None:
            self._in_flight.pop(slot, None)
            if isinstance(result, Failure) and not result.check(CancelledError):
                _log.failure("Webhook delivery failed unexpectedly", result)
            self.kick()

        sending.addBoth(finished)

    async def _deliver(self, event: StoredEvent) -> None:
        hook = self._hooks.get(event.hook)
        if hook is None:
            await self._queue.give_up(event, event.attempts, "webhook no longer configured")
            return
        why = await self._post(hook, event)
        if why is None:
            await self._queue.delivered(event)
            return
        for observe in self.on_failure:
            observe()
        attempts = event.attempts + 1
        retry, reason = why
        now = self._reactor.seconds()
        if not retry or attempts >= hook.max_attempts or now - event.created >= hook.max_age:
            _log.warn(
                "Webhook {url}: event {type} given up after {attempts} attempts ({reason})",
                url=hook.url, type=event.type, attempts=attempts, reason=reason,
            )  # fmt: skip
            await self._queue.give_up(event, attempts, reason)
            return
        delay = min(hook.max_backoff, hook.backoff * 2 ** (attempts - 1))
        delay *= self._random.uniform(0.5, 1.0)
        _log.info(
            "Webhook {url}: {reason}; attempt {attempts} again in {delay:.2f} s",
            url=hook.url, reason=reason, attempts=attempts + 1, delay=delay,
        )  # fmt: skip
        await self._queue.retry(event, attempts, now + delay)

    async def _post(self, hook: WebhookConfig, event: StoredEvent) -> tuple[bool, str] | None:
        """None when the hook took the event; else (whether to retry, why not)."""
        import treq

        timestamp = int(self._reactor.seconds())
        headers: dict[bytes | str, bytes | str] = {
            "Content-Type": "application/json",
            "User-Agent": "mailserv-webhooks",
            "X-Mailserv-Event": event.type,
            "X-Mailserv-Delivery": _event_id(event.body),
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(hook.secret, timestamp, event.body),
        }

        async def exchange() -> int:
            client = self._clients[hook.url]
            response = await client.post(hook.url, data=event.body, headers=headers)
            await treq.collect(response, lambda _: None)  # read (and drop) the answer
            return int(response.code)

        attempt = Deferred.fromCoroutine(exchange())
        attempt.addTimeout(hook.timeout, self._reactor)
        try:
            code = await attempt
        except CancelledError:
            raise  # stopping
        except defer.TimeoutError:  # addTimeout fired
            return True, f"no answer within {hook.timeout:g} s"
        except Exception as e:  # noqa: BLE001 - any failure to reach the hook is retried
            return True, f"{type(e).__name__}: {e}"[:200]
        if 200 <= code < 300:
            return None
        return code in (408, 429) or code >= 500, f"HTTP {code}"

    async def stop(self) -> None:
        """Stop sending; requests in flight are abandoned (their events stay queued)."""
        self._running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        sending = list(self._in_flight.values())
        for request in sending:
            request.cancel()
        await DeferredList(sending, consumeErrors=True)
        for pool in self._pools.values():
            await pool.closeCachedConnections()


def _event_id(body: bytes) -> str:
    try:
        found = json.loads(body).get("id")
    except (ValueError, AttributeError):
        return ""
    return str(found) if found is not None else ""


class WebhookService(Service):
    """The queue, the sink that fills it and (``deliver``) the dispatcher that empties it."""

    def __init__(
        self, hooks: Sequence[WebhookConfig], data_dir: str, reactor: Any, deliver: bool = True
    ) -> None:
        path, dead_letter = queue_paths(data_dir)
        limits = {hook.url: hook.queue_limit for hook in hooks}
        self.queue = WebhookQueue(reactor, path, dead_letter, limits)
        self.sink = WebhookSink(hooks, self.queue, reactor)
        self.dispatcher = Dispatcher(hooks, self.queue, reactor) if deliver else None
        if self.dispatcher is not None:
            self.sink.stored.append(self.dispatcher.kick)
        self._hooks = hooks
        self._started: Deferred[None] | None = None
        self.sessions_gone: Callable[[], Deferred[None]] | None = None
        """On stop, waited for before the last events are written: the server's sessions
        closing (their commands' events come until then).  Its services stop together."""

    def startService(self) -> None:
        super().startService()
        _log.info(
            "Webhooks: {urls} ({role})",
            urls=", ".join(hook.url for hook in self._hooks),
            role="delivering" if self.dispatcher is not None else "queueing only",
        )
        self._started = self.queue.start()
        self._started.addCallback(lambda _: self._opened())
        self._started.addErrback(lambda f: _log.failure("Webhook queue cannot open", f))

    def _opened(self) -> None:
        self.sink.open()
        if self.dispatcher is not None:
            self.dispatcher.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self.sessions_gone is not None:
            await self.sessions_gone()
        if self._started is not None:
            await self._started
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        await self.sink.drain()
        await self.queue.stop()
