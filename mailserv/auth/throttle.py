"""Failed-login accounting per source network, to slow down and then refuse password guessing.

Addresses are grouped the way one attacker usually holds them: a single IPv4 address, an IPv6
/64.  Memory is bounded: at most ``max_tracked`` networks, the least recently failing one
forgotten first, and a network with no failure inside the window is dropped.

Who keeps the record is an ``ILoginThrottle``: a ``LoginThrottle`` in the process, or, with
``--workers N``, one kept by the master for every worker (``mailserv.workers.limits``).
"""

from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable

from twisted.internet.interfaces import IReactorTime
from zope.interface import Interface, implementer

IPV6_PREFIX = 64
MAX_KEY_LENGTH = 128


def network_key(address: str) -> str:
    """The throttling key of an address: ``a.b.c.d`` or the /64 of an IPv6 address.

    Accepts ``host``, ``host:port`` and ``[v6]:port``; IPv4-mapped IPv6 counts as IPv4.
    Anything unparsable (a UNIX socket path...) is its own key, truncated.
    """
    host = address.strip()
    if host.startswith("[") and "]" in host:
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.split("%", 1)[0]  # an IPv6 zone id
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return address[:MAX_KEY_LENGTH]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


class ILoginThrottle(Interface):
    """Failed logins per client network: how long to delay the answer, when to refuse."""

    def failures(address: str) -> int:
        """Failures from the network of ``address`` within the window."""

    def delay_for(address: str) -> float:
        """Seconds to wait before answering a failed login from ``address``."""

    def blocked(address: str) -> bool:
        """True when logins from the network of ``address`` are refused for now."""

    def record_failure(address: str) -> None:
        """A login from ``address`` failed."""

    def record_success(address: str) -> None:
        """A login from ``address`` succeeded: its network's record is cleared."""


@implementer(ILoginThrottle)
class LoginThrottle:
    """Counts failures per network within a sliding ``window`` (seconds).

    After a failure the engine waits ``delay_for(address)`` before answering: ``base_delay``
    doubled per failure in the window, at most ``max_delay``.  Once ``max_failures`` failures
    fall in the window, ``blocked`` is true: the engine refuses and disconnects.
    A success clears the network's record.
    """

    def __init__(
        self,
        clock: IReactorTime,
        max_failures: int = 10,
        window: float = 300.0,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        max_tracked: int = 100_000,
    ) -> None:
        if max_failures < 1 or max_tracked < 1 or window <= 0:
            raise ValueError("max_failures, max_tracked and window must be positive")
        self.clock = clock
        self.max_failures = max_failures
        self.window = window
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_tracked = max_tracked
        # key -> failure times, oldest first; ordered by last failure, oldest network first
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        """Networks currently tracked."""
        return len(self._failures)

    def failures(self, address: str) -> int:
        """Failures from the network of ``address`` within the window (at most max_failures)."""
        now = self.clock.seconds()
        self._expire(now)
        times = self._failures.get(network_key(address))
        if times is None:
            return 0
        self._trim(times, now)
        return len(times)

    def delay_for(self, address: str) -> float:
        """Seconds to wait before answering a failed login from ``address``."""
        count = self.failures(address)
        if count == 0:
            return 0.0
        return min(self.max_delay, self.base_delay * 2.0 ** min(count - 1, 62))

    def blocked(self, address: str) -> bool:
        """True once ``max_failures`` failures from this network fall within the window."""
        return self.failures(address) >= self.max_failures

    def record_failure(self, address: str, at: float | None = None) -> None:
        """A failure from ``address`` now, or at ``at`` (a ``clock.seconds()`` value, perhaps
        of another process of this machine)."""
        when = self.clock.seconds() if at is None else at
        self._update(address, lambda held: sorted([*held, when]))

    def history(self, address: str) -> list[float]:
        """The times of the failures from the network of ``address`` within the window."""
        self.failures(address)  # drops what left the window
        return list(self._failures.get(network_key(address), ()))

    def merge(self, address: str, times: Iterable[float]) -> None:
        """Take in another record of the network of ``address`` (its ``history``), which may
        hold failures this one holds already: a time held n times here and m times there
        ends up max(n, m) times."""
        theirs = Counter(times)
        self._update(address, lambda held: sorted((Counter(held) | theirs).elements()))

    def record_success(self, address: str) -> None:
        self._failures.pop(network_key(address), None)

    def _update(self, address: str, change: Callable[[Iterable[float]], list[float]]) -> None:
        now = self.clock.seconds()
        self._expire(now)
        key = network_key(address)
        times = deque(change(self._failures.pop(key, ())), maxlen=self.max_failures)
        self._trim(times, now)
        if times:
            self._failures[key] = times  # the most recently failing network last
        while len(self._failures) > self.max_tracked:
            self._failures.popitem(last=False)

    def _trim(self, times: deque[float], now: float) -> None:
        horizon = now - self.window
        while times and times[0] <= horizon:
            times.popleft()

    def _expire(self, now: float) -> None:
        """Drop networks whose latest failure left the window (they sit at the front)."""
        horizon = now - self.window
        while self._failures:
            key, times = next(iter(self._failures.items()))
            if times and times[-1] > horizon:
                break
            del self._failures[key]
