"""Noticing changes other programs make to a maildir: inotify, or polling where it is missing.

A mailbox registers its directory and a callback.  With inotify the callback gets each
file event of ``new/`` and ``cur/`` as ``("cur/<name>", appeared)``, where ``appeared`` is
False for a file that went away; ``(None, True)`` means "look at everything" (the watch was
lost, or the directory itself moved).  Polling only ever says ``None``, when a directory's
mtime moved or is too recent to trust (time stamps are coarser than changes).

A file created in place (not renamed in) is reported once it is closed after writing, so
a half-written file is never announced; a hard link (a COPY by another server) at once.
"""

from __future__ import annotations

import os
import select
import struct
import time
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

_log = Logger()

Callback = Callable[[str | None, bool], None]

SUBDIRS = ("new", "cur")
KEYWORDS = "dovecot-keywords"
"""Reported as ``(KEYWORDS, True)`` when another program rewrote it."""
FLAGS_NOTICE = "mailserv-flags"
"""Rewritten by a process that changed flags in the index only (``renamer``): reported as
``(FLAGS_NOTICE, True)``."""
MAX_POKE_READS = 1000
"""Bound on the chunks one poke reads (a few hundred events each)."""
FALLBACK_POLL_INTERVAL = 1.0
"""Seconds between checks of a mailbox inotify refused to watch."""
TRUST_AGE = 1.0
"""A directory mtime closer than this to now may hide a later change in the same tick."""


class Hub(Protocol):
    def add(self, directory: str, callback: Callback) -> object: ...

    def remove(self, handle: object) -> None: ...

    def pause(self, handle: object) -> None:
        """Stop reporting (we are about to make thousands of changes ourselves)."""

    def resume(self, handle: object) -> None:
        """Report again; the caller rescans for what happened meanwhile."""

    def poke(self) -> None:
        """Take notice now of changes already made (before a command answers)."""

    def close(self) -> None: ...


class _Registration:
    def __init__(self, directory: str, callback: Callback) -> None:
        self.directory = directory
        self.callback = callback
        self.paths: list[FilePath[bytes]] = []
        self.wds: list[int] = []
        self.stamps: dict[str, tuple[int, int]] = {}
        self.checked = 0.0
        self.polled: object | None = None  # a PollHub handle when inotify would not watch


_EVENT = struct.Struct("=iIII")  # wd, mask, cookie, length of the name that follows
_IN_Q_OVERFLOW = 0x00004000


def _overflowed(data: bytes) -> bool:
    """Whether a run of raw inotify events holds a queue overflow."""
    pos = 0
    while len(data) - pos >= _EVENT.size:
        _wd, mask, _cookie, size = _EVENT.unpack_from(data, pos)
        if mask & _IN_Q_OVERFLOW:
            return True
        pos += _EVENT.size + size
    return False


def inotify_available() -> bool:
    try:
        from twisted.internet import inotify  # noqa: F401
    except ImportError:
        return False
    return True


class InotifyHub:
    """One inotify descriptor for the whole backend."""

    def __init__(self, reactor: Any) -> None:
        from twisted.internet import inotify

        self._inotify = inotify
        self._reactor = reactor
        self._registrations: set[_Registration] = set()
        self._closed = False
        self._poller: PollHub | None = None
        self._owners: dict[int, tuple[_Registration, FilePath[bytes]]] = {}
        """Who watches each descriptor, under which path (the kernel has one per inode)."""
        self._notifier = self._new_notifier()

    def _new_notifier(self) -> Any:
        hub = self

        class Notifier(self._inotify.INotify):  # type: ignore[misc,name-defined]
            def connectionLost(self, reason: Failure) -> None:
                super().connectionLost(reason)
                hub._lost(self)

            def _doRead(self, data: bytes) -> None:
                # Twisted drops the kernel's queue-overflow event (it belongs to no watch);
                # look for it first, since after one every mailbox must look at its files.
                if _overflowed(getattr(self, "_buffer", b"") + data):
                    hub._overflow()
                super()._doRead(data)

            def forget_path(self, path: FilePath[bytes]) -> None:
                """``path`` no longer names its watched directory (it was renamed, and the
                watch belongs to the new name now): let a new directory there be watched."""
                self._watchpaths.pop(path.asBytesMode(), None)

        notifier = Notifier(self._reactor)
        notifier.startReading()
        return notifier

    def _lost(self, notifier: Any) -> None:
        """Twisted drops the whole descriptor when a watched directory is deleted: start a
        new one and have every mailbox look again."""
        if self._closed or notifier is not self._notifier:
            return
        _log.info(
            "inotify watch lost; re-watching {count} mailboxes", count=len(self._registrations)
        )
        self._notifier = self._new_notifier()
        self._owners.clear()
        for registration in list(self._registrations):
            self._watch(registration)
            registration.callback(None, True)

    def _overflow(self) -> None:
        _log.info("inotify queue overflowed; rescanning {count} mailboxes",
                  count=len(self._registrations))  # fmt: skip
        for registration in list(self._registrations):
            registration.callback(None, True)

    def add(self, directory: str, callback: Callback) -> object:
        registration = _Registration(directory, callback)
        self._registrations.add(registration)
        self._watch(registration)
        return registration

    def _watch(self, registration: _Registration) -> None:
        inotify = self._inotify
        mask = (
            inotify.IN_CREATE
            | inotify.IN_CLOSE_WRITE
            | inotify.IN_MOVED_TO
            | inotify.IN_MOVED_FROM
            | inotify.IN_DELETE
            | inotify.IN_MOVE_SELF
        )
        registration.paths = []
        registration.wds = []
        watches = [(sub, mask, self._relay(registration, sub)) for sub in SUBDIRS]
        # The mailbox directory itself: dovecot-keywords rewritten, or the directory moved
        # away (RENAME, DELETE by another process: its cur/ and new/ report nothing then).
        own = inotify.IN_MOVED_TO | inotify.IN_CLOSE_WRITE | inotify.IN_MOVE_SELF
        watches.append(("", own, self._relay_keywords(registration)))
        for sub, events, relay in watches:
            path = FilePath(os.path.join(registration.directory, sub).rstrip("/").encode())
            try:
                wd = self._notifier.watch(path, mask=events, callbacks=[relay])
            except Exception as exc:  # noqa: BLE001 - INotifyError (limits), a directory gone
                _log.warn("Cannot watch {path} ({error}); polling it", path=path.path, error=exc)
                self._poll(registration)
                continue
            registration.paths.append(path)
            registration.wds.append(wd)
            self._take_over(wd, registration, path)

    def _take_over(self, wd: int, registration: _Registration, path: FilePath[bytes]) -> None:
        """A directory watched under another name (renamed by another process, and opened
        by its new name here) keeps its one kernel watch, whose events now go to the new
        registration: the old one is told to look again (it finds its directory gone)."""
        previous = self._owners.get(wd)
        self._owners[wd] = (registration, path)
        if previous is None or previous[0] is registration or previous[1] == path:
            return
        self._notifier.forget_path(previous[1])
        if previous[0] in self._registrations:
            previous[0].callback(None, True)

    def _poll(self, registration: _Registration) -> None:
        """No inotify watch to be had (``max_user_watches`` reached): poll this one."""
        if registration.polled is None:
            if self._poller is None:
                self._poller = PollHub(self._reactor, FALLBACK_POLL_INTERVAL)
            registration.polled = self._poller.add(registration.directory, registration.callback)

    def _relay(self, registration: _Registration, sub: str) -> Callable[[Any, Any, int], None]:
        inotify = self._inotify

        def event(_watch: Any, path: FilePath[bytes], mask: int) -> None:
            if registration not in self._registrations:
                return
            if mask & (inotify.IN_MOVE_SELF | inotify.IN_DELETE_SELF | inotify.IN_IGNORED):
                registration.callback(None, True)
                return
            if mask & inotify.IN_ISDIR:
                return
            name = os.fsdecode(path.basename())
            if name.startswith("."):
                return
            if mask & inotify.IN_CREATE:
                try:
                    if os.lstat(path.path).st_nlink < 2:
                        return  # written in place: wait for IN_CLOSE_WRITE
                except OSError:
                    return
            appeared = not mask & (inotify.IN_MOVED_FROM | inotify.IN_DELETE)
            registration.callback(f"{sub}/{name}", appeared)

        return event

    def _relay_keywords(self, registration: _Registration) -> Callable[[Any, Any, int], None]:
        inotify = self._inotify

        def event(_watch: Any, path: FilePath[bytes], mask: int) -> None:
            if registration not in self._registrations:
                return
            if mask & (inotify.IN_MOVE_SELF | inotify.IN_DELETE_SELF):
                registration.callback(None, True)
            elif path.basename() in (KEYWORDS.encode(), FLAGS_NOTICE.encode()):
                registration.callback(os.fsdecode(path.basename()), True)

        return event

    def remove(self, handle: object) -> None:
        if not isinstance(handle, _Registration) or handle not in self._registrations:
            return
        self._registrations.discard(handle)
        self._unwatch(handle)
        if handle.polled is not None and self._poller is not None:
            self._poller.remove(handle.polled)
            handle.polled = None

    def _unwatch(self, registration: _Registration) -> None:
        for path, wd in zip(registration.paths, registration.wds, strict=True):
            owner = self._owners.get(wd)
            if owner is not None and owner[0] is not registration:
                continue  # the watch went to another name of the directory
            self._owners.pop(wd, None)
            try:
                self._notifier.ignore(path)
            except Exception:  # noqa: BLE001 - KeyError when Twisted dropped it already
                pass
        registration.paths = []
        registration.wds = []

    def pause(self, handle: object) -> None:
        """Our own bulk changes would queue two events per file (and overflow the kernel's
        queue): cheaper not to watch meanwhile and rescan after."""
        if isinstance(handle, _Registration) and handle in self._registrations:
            self.poke()  # what others did up to now still arrives as events
            self._unwatch(handle)

    def resume(self, handle: object) -> None:
        if isinstance(handle, _Registration) and handle in self._registrations:
            self._watch(handle)

    def poke(self) -> None:
        """Read everything the kernel queued (non-blocking) so callbacks run before we
        answer; Twisted reads a bounded chunk per call."""
        for _chunk in range(MAX_POKE_READS):
            if self._closed:
                return
            notifier = self._notifier
            try:
                readable, _, _ = select.select([notifier.fileno()], [], [], 0)
            except (OSError, ValueError):
                return
            if not readable:
                return
            notifier.doRead()

    def close(self) -> None:
        self._closed = True
        self._registrations.clear()
        if self._poller is not None:
            self._poller.close()
        self._notifier.stopReading()
        self._notifier.connectionLost(Failure(ConnectionError("maildir backend stopped")))


class PollHub:
    """Checks the directories of every registered mailbox each ``interval`` seconds."""

    def __init__(self, reactor: Any, interval: float) -> None:
        self._registrations: set[_Registration] = set()
        self._loop = LoopingCall(self._check_all)
        self._loop.clock = reactor
        self._loop.start(interval, now=False).addErrback(
            lambda f: _log.failure("Maildir polling stopped", f)
        )

    def add(self, directory: str, callback: Callback) -> object:
        registration = _Registration(directory, callback)
        self._stamp(registration)
        self._registrations.add(registration)
        return registration

    def remove(self, handle: object) -> None:
        if isinstance(handle, _Registration):
            self._registrations.discard(handle)

    def pause(self, handle: object) -> None:
        """Nothing to do: polling costs the same whatever changes."""

    def resume(self, handle: object) -> None:
        """Nothing to do."""

    def poke(self) -> None:
        """Polling does not look between its ticks (a stat per command would add up)."""

    def close(self) -> None:
        self._registrations.clear()
        if self._loop.running:
            self._loop.stop()

    def _check_all(self) -> None:
        for registration in list(self._registrations):
            if self._stamp(registration):
                registration.callback(None, True)

    def _stamp(self, registration: _Registration) -> bool:
        """Record the directories' state; True when they changed or cannot be trusted yet."""
        now = time.time()
        changed = False
        newest = 0.0
        for sub in (*SUBDIRS, KEYWORDS, FLAGS_NOTICE):
            try:
                st = os.stat(os.path.join(registration.directory, sub))
            except OSError:
                stamp = (0, 0)
            else:
                stamp = (st.st_ino, st.st_mtime_ns)
                newest = max(newest, st.st_mtime)
            if registration.stamps.get(sub) != stamp:
                registration.stamps[sub] = stamp
                changed = True
        uncertain = registration.checked and registration.checked - newest < TRUST_AGE
        registration.checked = now
        return changed or bool(uncertain)
