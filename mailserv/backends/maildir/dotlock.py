"""Dot-locks as Dovecot takes them: ``<file>.lock`` created with O_EXCL.

The holder writes ``<pid>:<host>`` into the lock so that a lock left by a process that died
(kill -9 included) on this host is recognised and broken at once; any other lock is broken
only when it has not been touched for ``stale`` seconds.  ``replace()`` writes new content
into the lock file and renames it over the locked file, so readers see the old file or the
new one and the lock is released by the same rename.
"""

from __future__ import annotations

import errno
import os
import time

from twisted.logger import Logger

from mailserv.backends.maildir.perms import PRIVATE, Permissions
from mailserv.errors import BackendUnavailable

_log = Logger()

SUFFIX = ".lock"
WAIT_STEP = 0.005
MAX_WAIT_STEP = 0.05


class LockTimeout(BackendUnavailable):
    """Another process held the lock for longer than we wait."""


class DotLock:
    """Locks ``target`` (which need not exist).  Blocking: call it off the reactor thread
    when it may wait (the maildir backend does, unless configured for inline I/O)."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 30.0,
        stale: float = 120.0,
        perms: Permissions = PRIVATE,
    ) -> None:
        self.target = target
        self.perms = perms
        self.path = target + SUFFIX
        self.timeout = timeout
        self.stale = stale
        self._fd: int | None = None
        self._host = os.uname().nodename

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        step = WAIT_STEP
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                if self._break_if_stale():
                    continue
                if time.monotonic() > deadline:
                    raise LockTimeout(f"{self.path} is held by another process") from None
                time.sleep(step)
                step = min(step * 2, MAX_WAIT_STEP)
                continue
            self._fd = fd
            try:
                self.perms.apply_fd(fd)  # the lock may become the file (replace())
                os.write(fd, f"{os.getpid()}:{self._host}".encode())
            except BaseException:
                self.release()
                raise
            return

    def release(self) -> None:
        """Drop the lock without touching the target."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        os.close(fd)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            _log.warn("Lock {path} vanished while held", path=self.path)

    def replace(self, data: bytes, fsync: bool) -> None:
        """Make ``data`` the target's content atomically and release the lock."""
        fd = self._fd
        if fd is None:
            raise RuntimeError(f"{self.path} is not held")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            if fsync:
                os.fsync(fd)
            os.rename(self.path, self.target)
        except BaseException:
            self.release()
            raise
        self._fd = None
        os.close(fd)

    def __enter__(self) -> DotLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _break_if_stale(self) -> bool:
        """True when a stale lock was removed (and acquiring should be retried at once)."""
        try:
            st = os.stat(self.path)
            with open(self.path, "rb") as f:
                owner = f.read(256)
        except FileNotFoundError:
            return True
        dead = self._owner_is_dead(owner, st.st_mtime)
        old = time.time() - st.st_mtime > self.stale
        if not (dead or old):
            return False
        try:
            # Only remove the very lock we judged (not one taken meanwhile by someone else).
            if os.stat(self.path).st_ino != st.st_ino:
                return True
            os.unlink(self.path)
        except FileNotFoundError:
            return True
        _log.warn(
            "Broke stale lock {path} ({why})",
            path=self.path,
            why="holder died" if dead else "not touched for a long time",
        )
        return True

    def _owner_is_dead(self, owner: bytes, locked_at: float) -> bool:
        """The lock names a process of this host that is gone, or whose number now belongs
        to a process started after the lock was taken (pids are reused)."""
        pid_text, sep, host = owner.decode("ascii", "replace").partition(":")
        if not sep or host != self._host or not pid_text.isdigit():
            return False
        pid = int(pid_text)
        if pid == os.getpid():
            return False  # our own lock, held by another thread: wait for it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError as exc:
            return exc.errno not in (errno.EPERM,)
        started = _process_start(pid)
        return started is not None and started > locked_at + 1


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), where /proc tells."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        ticks = os.sysconf("SC_CLK_TCK")
        return boot + int(fields[19]) / ticks
    except (OSError, ValueError, IndexError, StopIteration):
        return None
