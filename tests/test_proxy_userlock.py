"""The proxy's name locks across worker processes (mailserv/backends/proxy/userlock.py).

Two ``NameLocks`` with their own ``UserFiles`` on one directory stand for two workers: flock
counts each open of a file apart, in one process as in two.  The clock is a fake one."""

from __future__ import annotations

import os
from pathlib import Path

from test_proxy_namelock import Holder
from twisted.internet.task import Clock

from mailserv.backends.proxy.namelock import NameLocks
from mailserv.backends.proxy.userlock import POLL, UserFiles

TIMEOUT = 15.0


def workers(directory: Path, clock: Clock, user: str = "alice") -> tuple[NameLocks, NameLocks]:
    return (
        NameLocks(clock, TIMEOUT, UserFiles(str(directory), user, clock, TIMEOUT)),
        NameLocks(clock, TIMEOUT, UserFiles(str(directory), user, clock, TIMEOUT)),
    )


def test_a_rename_in_one_worker_waits_for_the_openers_of_the_other(tmp_path: Path) -> None:
    clock = Clock()
    one, two = workers(tmp_path / "locks", clock)
    opener, other = Holder(one.opening("Fresh")), Holder(one.opening("Else"))
    assert opener.entered and other.entered
    rename = Holder(two.changing("Fresh", "Renamed"))
    clock.advance(POLL)
    assert not rename.entered
    late = Holder(one.opening("Third"))  # behind the waiting rename, in every worker
    clock.advance(POLL)
    assert not late.entered
    opener.done()
    clock.advance(POLL)
    assert not rename.entered  # the worker's other opener still runs
    other.done()
    clock.advance(POLL)
    assert rename.entered and not late.entered
    rename.done()
    clock.advance(POLL)
    assert late.entered
    late.done()
    assert oct(os.stat(tmp_path / "locks").st_mode & 0o777) == "0o700"


def test_an_opener_waits_for_a_rename_in_the_other_worker(tmp_path: Path) -> None:
    clock = Clock()
    one, two = workers(tmp_path, clock)
    rename = Holder(one.changing("Box", "New"))
    assert rename.entered
    opener = Holder(two.opening("Box"))
    clock.advance(POLL)
    assert not opener.entered
    rename.done()
    clock.advance(POLL)
    assert opener.entered
    opener.done()


def test_other_users_and_a_wait_that_ends(tmp_path: Path) -> None:
    clock = Clock()
    one, _ = workers(tmp_path, clock)
    stranger, _ = workers(tmp_path, clock, "bob")
    rename = Holder(one.changing("Box"))
    assert Holder(stranger.opening("Box")).entered  # another user's files
    _, two = workers(tmp_path, clock)
    stuck = Holder(two.changing("Other"))
    for _ in range(int(TIMEOUT / POLL) + 2):
        clock.advance(POLL)
    assert stuck.failure is not None and "another process" in str(stuck.failure)
    rename.done()
    assert Holder(two.changing("Other")).entered  # the failed wait left nothing held


def test_lock_files_that_cannot_be_made(tmp_path: Path) -> None:
    """A lock directory that cannot be created: the command fails with the reason, and the
    local hold is given back."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    clock = Clock()
    locks = NameLocks(clock, TIMEOUT, UserFiles(str(blocker / "locks"), "alice", clock, TIMEOUT))
    failed = Holder(locks.opening("Box"))
    assert failed.failure is not None and "lock files" in str(failed.failure)
    assert not locks.busy
