"""Dot-locks as Dovecot takes them: ``<file>.lock`` created with O_EXCL.

The holder writes ``<pid>:<host>`` into the lock so that a lock left by a process that died
(kill -9 included) on this host is recognised and broken at once; a lock still empty after
a few seconds (its holder died between creating and writing it) is broken too; any other
lock (Dovecot's, another host's) only when it has not been touched for ``stale`` seconds.
``replace()`` writes the new content to a temporary file beside the target and renames it
over the target while the lock is held, so readers see the old file or the new one, and
the lock keeps naming its holder until the very end.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time

from twisted.logger import Logger

from mailserv.backends.maildir.perms import PRIVATE, Permissions
from mailserv.errors import BackendUnavailable

_log = Logger()

SUFFIX = ".lock"
EMPTY_GRACE = 5.0
"""Seconds an empty lock is given for its holder to write its name into it."""
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
        """Make ``data`` the target's content atomically, then release the lock."""
        if self._fd is None:
            raise RuntimeError(f"{self.path} is not held")
        temp = f"{self.target}.{os.getpid()}.{self._host}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                self.perms.apply_fd(fd)
                _write_all(fd, data)
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, self.target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        finally:
            self.release()

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
        age = time.time() - st.st_mtime
        dead = self._owner_is_dead(owner, st.st_mtime) or (not owner and age > EMPTY_GRACE)
        old = age > self.stale
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
