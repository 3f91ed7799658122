"""One user's name locks across the processes of ``--workers``: two lock files per user.

The holds of :mod:`namelock` live in one process, but Dovecot's lock race (a RENAME moving
a mailbox's directory while another connection opens it) happens as well between the
upstream connections of two workers.  So every hold also takes a lock on files shared by
the processes, under the data directory (``lock_dir``), named after the user:

* ``<user>.names``: each process holds it shared while any of its openers runs upstream
  (taken by the first, dropped by the last); a RENAME or DELETE holds it alone.
* ``<user>.gate``: a RENAME or DELETE holds it alone from the moment it waits for
  ``names``; an opener passes only while nobody holds it (it takes it shared and drops it
  at once), so a stream of openers in other processes cannot starve the RENAME.

One lock per user, not per name: a RENAME holds up the user's other openers in every
process for the time it runs upstream (renames are rare, and short).  ``flock`` is asked
without blocking and asked again every ``POLL`` seconds, so the reactor never waits in
it; a wait ends with BackendUnavailable after the upstream timeout, as a local one does.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from mailserv import errors

POLL = 0.005
"""Seconds between two tries of a lock another process holds."""


def _locked(fd: int, how: int) -> bool:
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class UserFiles:
    """The lock files of one user, as one process uses them."""

    def __init__(self, directory: str, username: str, clock: IReactorTime, timeout: float) -> None:
        key = hashlib.sha256(username.encode("utf-8")).hexdigest()[:32]
        self._gate_path = os.path.join(directory, key + ".gate")
        self._names_path = os.path.join(directory, key + ".names")
        self._directory = directory
        self._clock = clock
        self._timeout = timeout
        self._gate: int | None = None
        """This process's descriptor of the gate file, to look whether it is open."""
        self._names: int | None = None
        """This process's shared hold of the names file (while ``_sharers``)."""
        self._sharers = 0

    def _open(self, path: str) -> int:
        os.makedirs(self._directory, mode=0o700, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    async def hold(self, exclusive: bool, what: str) -> Callable[[], None]:
        """Wait for the hold (``what``: the names, for the error); its release."""
        try:
            return await (self._alone(what) if exclusive else self._share(what))
        except OSError as exc:  # the directory cannot be written, no descriptor left...
            raise errors.BackendUnavailable(f"the lock files in {self._directory}: {exc}") from exc

    async def _share(self, what: str) -> Callable[[], None]:
        if self._gate is None or self._names is None:
            gate = self._open(self._gate_path)
            try:
                names = self._open(self._names_path)
            except OSError:
                os.close(gate)
                raise
            self._gate, self._names = gate, names
        gate, names = self._gate, self._names
        waited = 0.0
        while True:
            if _locked(gate, fcntl.LOCK_SH):  # no RENAME or DELETE holds or waits
                fcntl.flock(gate, fcntl.LOCK_UN)
                if self._sharers or _locked(names, fcntl.LOCK_SH):
                    self._sharers += 1
                    return self._unshare
            waited = await self._pause(waited, what)

    def _unshare(self) -> None:
        if self._sharers == 0:
            return  # closed meanwhile
        self._sharers -= 1
        if self._sharers == 0 and self._names is not None:
            fcntl.flock(self._names, fcntl.LOCK_UN)

    async def _alone(self, what: str) -> Callable[[], None]:
        # Descriptors of its own: flock counts them apart from this process's shared one,
        # so this process's own openers must end too.
        gate = self._open(self._gate_path)
        names = -1
        try:
            waited = 0.0
            while not _locked(gate, fcntl.LOCK_EX):
                waited = await self._pause(waited, what)
            names = self._open(self._names_path)
            while not _locked(names, fcntl.LOCK_EX):
                waited = await self._pause(waited, what)
        except BaseException:
            if names >= 0:
                os.close(names)
            os.close(gate)
            raise

        def release() -> None:
            os.close(names)  # closing drops the lock
            os.close(gate)

        return release

    async def _pause(self, waited: float, what: str) -> float:
        if waited >= self._timeout:
            raise errors.BackendUnavailable(
                f"the mailbox {what} stayed busy upstream (renamed or deleted in another process)"
            )
        await deferLater(self._clock, POLL, lambda: None)
        return waited + POLL

    def close(self) -> None:
        """The process is done with the user (no hold is left)."""
        for fd in (self._names, self._gate):
            if fd is not None:
                os.close(fd)
        self._gate = self._names = None
        self._sharers = 0
