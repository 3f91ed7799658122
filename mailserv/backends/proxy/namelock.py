"""One user's locks on mailbox names: no upstream command opens a mailbox while another of
the user's upstream connections renames or deletes it.

Why: Dovecot's Maildir takes a dot-lock file (``dovecot-uidlist.lock``) inside a mailbox's
directory while a SELECT, EXAMINE, STATUS or APPEND brings its UID list up to date (always
on the first open of a new mailbox).  A RENAME on another connection meanwhile moves the
directory with the lock file in it; the locker then removes a path that is gone, and the
moved lock, naming a process that lives on (our pooled connection), blocks every later
opener and the DELETE of the new name until that process ends or two minutes pass.

Openers hold one name, shared; RENAME and DELETE hold their names and every name inside
them, alone.  Conflicting requests are served in arrival order (an opener that comes after
a waiting RENAME waits behind it), so a stream of SELECTs cannot starve a RENAME.  Take a
hold before acquiring an upstream connection or a channel's lock, never while holding one:
then the holds cannot wait on each other in a circle.  A wait is bounded by the upstream
timeout all the same (BackendUnavailable afterwards).  Under ``--workers`` each hold also
takes the user's lock files, which the other processes' holds take too (``userlock``).
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime

from mailserv import errors
from mailserv.backends.kit.names import is_inside
from mailserv.backends.proxy.userlock import UserFiles


class _Request:
    __slots__ = ("exclusive", "names", "undo", "waiter")

    def __init__(self, names: tuple[str, ...], exclusive: bool) -> None:
        self.names = names
        self.exclusive = exclusive
        self.waiter: Deferred[None] | None = None
        self.undo: Callable[[], None] | None = None
        """Releases the hold on the lock files the other processes see (``userlock``)."""

    @property
    def what(self) -> str:
        return self.names[0] if self.names else "list"

    def conflicts(self, other: _Request) -> bool:
        """An exclusive request covers the names inside its own; shared ones never clash."""
        if not (self.exclusive or other.exclusive):
            return False
        return any(
            mine == theirs
            or (other.exclusive and is_inside(mine, theirs))
            or (self.exclusive and is_inside(theirs, mine))
            for mine in self.names
            for theirs in other.names
        )


class Hold:
    """``async with``: the names are held inside the block."""

    def __init__(self, locks: NameLocks, request: _Request) -> None:
        self._locks = locks
        self._request = request

    async def __aenter__(self) -> None:
        await self._locks.acquire(self._request)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._locks.release(self._request)


class NameLocks:
    """The holds on one upstream account's mailbox names."""

    def __init__(self, clock: IReactorTime, timeout: float, files: UserFiles | None = None) -> None:
        self.clock = clock
        self.timeout = timeout
        self.files = files
        """The user's lock files, which every worker process's holds also take (None: this
        process is alone with the user, or the files are switched off)."""
        self._held: list[_Request] = []
        self._waiting: list[_Request] = []

    def opening(self, *names: str) -> Hold:
        """For a command that opens ``names`` upstream (SELECT, EXAMINE, STATUS, APPEND;
        LIST-STATUS opens every mailbox it lists)."""
        return Hold(self, _Request(names, exclusive=False))

    def changing(self, *names: str) -> Hold:
        """For a RENAME or DELETE of ``names`` (and what is inside them)."""
        return Hold(self, _Request(names, exclusive=True))

    @property
    def busy(self) -> bool:
        return bool(self._held or self._waiting)

    def _free(self, request: _Request, ahead: list[_Request]) -> bool:
        return not any(request.conflicts(other) for other in (*self._held, *ahead))

    async def acquire(self, request: _Request) -> None:
        await self._here(request)
        if self.files is None:
            return
        try:
            request.undo = await self.files.hold(request.exclusive, request.what)
        except BaseException:
            self.release(request)
            raise

    async def _here(self, request: _Request) -> None:
        """The hold among this process's requests."""
        if self._free(request, self._waiting):
            self._held.append(request)
            return
        waiter: Deferred[None] = Deferred()
        request.waiter = waiter
        self._waiting.append(request)
        waiter.addTimeout(self.timeout, self.clock)
        try:
            await waiter
        except (TimeoutError, CancelledError):
            if request in self._waiting:
                self._waiting.remove(request)
                self._grant()
            raise errors.BackendUnavailable(
                f"the mailbox {request.what} stayed busy upstream (renamed or deleted)"
            ) from None

    def release(self, request: _Request) -> None:
        undo, request.undo = request.undo, None
        if undo is not None:
            undo()
        if request in self._held:
            self._held.remove(request)
            self._grant()

    def _grant(self) -> None:
        """Hand out what no held or earlier waiting request stands against; the waiters
        resume after the bookkeeping is done (they may take or give holds at once)."""
        granted: list[_Request] = []
        still: list[_Request] = []
        for request in self._waiting:
            if self._free(request, still):
                self._held.append(request)
                granted.append(request)
            else:
                still.append(request)
        self._waiting = still
        for request in granted:
            if request.waiter is not None and not request.waiter.called:
                request.waiter.callback(None)
