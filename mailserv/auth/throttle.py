"""Failed-login accounting per source network and per user, to slow down and then refuse
password guessing.

Addresses are grouped the way one attacker usually holds them: a single IPv4 address, an IPv6
/64.  Memory is bounded: at most ``max_tracked`` networks, the least recently failing one
forgotten first, and a network with no failure inside the window is dropped.

An attacker holding many addresses stays under each address's bound, so failures are counted
per user name as well (the same sliding window, its own bound ``user_max_failures``): a user
under attack from anywhere gets its failed logins' answers delayed, and then its password
logins refused until failures leave the window.  That is a lockout an attacker can cause on
purpose; the bound is higher than an address's, and a success does not clear a user's record
(else the attacker would learn nothing but the user would unlock it for them).

Who keeps the record is an ``ILoginThrottle``: a ``LoginThrottle`` in the process, or, with
``--workers N``, one kept by the master for every worker (``mailserv.workers.limits``).
"""

from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import Interface, implementer

IPV6_PREFIX = 64
MAX_KEY_LENGTH = 128
USER_MAX_FAILURES = 20
"""Failed logins of one user name, from anywhere, in the window before it is locked."""


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


def user_key(user: str) -> str:
    """The throttling key of a user name (truncated: a long name is still one key)."""
    return user[:MAX_KEY_LENGTH]


class ILoginThrottle(Interface):
    """Failed logins per client network: how long to delay the answer, when to refuse."""

    def failures(address: str) -> int:
        """Failures from the network of ``address`` within the window."""

    def delay_for(address: str) -> float:
        """Seconds to wait before answering a failed login from ``address``."""

    def blocked(address: str) -> bool:
        """True when logins from the network of ``address`` are refused for now."""

    def record_failure(address: str, *, user: str = "") -> None:
        """A login from ``address`` failed (as ``user``, when a name was given)."""

    def record_success(address: str) -> None:
        """A login from ``address`` succeeded: its network's record is cleared."""

    def login_failed(address: str, *, user: str = "") -> Deferred[bool]:
        """:meth:`record_failure`, firing once every process sharing the record holds the
        failure, with whether it is the one that locked ``user`` (brought the user's record
        to its bound: exactly one failure does, however many processes count)."""

    def user_delay(user: str) -> float:
        """Seconds to wait before answering a failed login of ``user`` (from anywhere)."""

    def user_blocked(user: str) -> bool:
        """True when password logins of ``user`` are refused for now."""


class FailureRecord:
    """Counts failures per key (``key`` of the name given) within a sliding ``window``.

    ``delay_for``: ``base_delay`` doubled per failure in the window, at most ``max_delay``.
    Once ``max_failures`` failures fall in the window, ``blocked`` is true.
    """

    def __init__(
        self, clock: IReactorTime, key: Callable[[str], str], max_failures: int, window: float,
        base_delay: float, max_delay: float, max_tracked: int,
    ) -> None:  # fmt: skip
        if max_failures < 1 or max_tracked < 1 or window <= 0:
            raise ValueError("max_failures, max_tracked and window must be positive")
        self.clock = clock
        self.max_failures = max_failures
        self.window = window
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_tracked = max_tracked
        self._key = key
        # key -> failure times, oldest first; ordered by last failure, oldest network first
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        """Networks currently tracked."""
        return len(self._failures)

    def failures(self, address: str) -> int:
        """Failures from the network of ``address`` within the window (at most max_failures)."""
        now = self.clock.seconds()
        self._expire(now)
        times = self._failures.get(self._key(address))
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
        return list(self._failures.get(self._key(address), ()))

    def merge(self, address: str, times: Iterable[float]) -> None:
        """Take in another record of the network of ``address`` (its ``history``), which may
        hold failures this one holds already: a time held n times here and m times there
        ends up max(n, m) times."""
        theirs = Counter(times)
        self._update(address, lambda held: sorted((Counter(held) | theirs).elements()))

    def records(self) -> list[tuple[str, list[float]]]:
        """Every key held, with its failure times within the window."""
        horizon = self.clock.seconds() - self.window
        self._expire(horizon + self.window)
        found = [(key, [t for t in times if t > horizon]) for key, times in self._failures.items()]
        return [(key, times) for key, times in found if times]

    def clear(self, address: str) -> None:
        """Forget the failures of ``address``'s key."""
        self._failures.pop(self._key(address), None)

    def _update(self, address: str, change: Callable[[Iterable[float]], list[float]]) -> None:
        now = self.clock.seconds()
        self._expire(now)
        key = self._key(address)
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


@implementer(ILoginThrottle)
class LoginThrottle(FailureRecord):
    """Failures per network (the engine waits ``delay_for(address)`` before answering a
    failed login; once ``blocked``, it refuses and disconnects; a success clears the
    network's record), and per user name in ``users`` (same window and delays, at most
    ``user_max_failures``; 0: not counted)."""

    def __init__(
        self,
        clock: IReactorTime,
        max_failures: int = 10,
        window: float = 300.0,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        max_tracked: int = 100_000,
        user_max_failures: int = USER_MAX_FAILURES,
    ) -> None:
        delays = (window, base_delay, max_delay, max_tracked)
        super().__init__(clock, network_key, max_failures, *delays)
        self.users_counted = user_max_failures > 0
        """``user_max_failures`` 0: no per-user record."""
        self.users = FailureRecord(clock, user_key, max(1, user_max_failures), *delays)

    def record_failure(self, address: str, at: float | None = None, *, user: str = "") -> None:
        """A failure from ``address`` (of ``user``, if named) now, or at ``at`` (a
        ``clock.seconds()`` value, perhaps of another process of this machine)."""
        when = self.clock.seconds() if at is None else at
        super().record_failure(address, when)
        if user and self.users_counted:
            self.users.record_failure(user, when)

    def record_success(self, address: str) -> None:
        self.clear(address)

    def login_failed(self, address: str, *, user: str = "") -> Deferred[bool]:
        return succeed(self.record_locking(address, self.clock.seconds(), user))

    def record_locking(self, address: str, at: float, user: str) -> bool:
        """:meth:`record_failure` at ``at``; whether it locked ``user``."""
        was_blocked = bool(user) and self.user_blocked(user)
        self.record_failure(address, at, user=user)
        return bool(user) and not was_blocked and self.user_blocked(user)

    def user_delay(self, user: str) -> float:
        return self.users.delay_for(user)

    def user_blocked(self, user: str) -> bool:
        return self.users.blocked(user)
