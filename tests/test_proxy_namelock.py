"""The proxy's per-user name locks (mailserv/backends/proxy/namelock.py), on a fake clock."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from mailserv import errors
from mailserv.backends.proxy.namelock import Hold, NameLocks


class Holder:
    """Takes ``hold`` at once and keeps it until ``done()``; ``entered`` tells when it got in."""

    def __init__(self, hold: Hold) -> None:
        self.entered = False
        self.failure: BaseException | None = None
        self._finish: Deferred[None] = Deferred()
        self.result = Deferred.fromCoroutine(self._run(hold))

    async def _run(self, hold: Hold) -> None:
        try:
            async with hold:
                self.entered = True
                await self._finish
        except errors.BackendUnavailable as exc:
            self.failure = exc

    def done(self) -> None:
        self._finish.callback(None)


def test_openers_share_and_a_rename_waits_for_them() -> None:
    locks = NameLocks(Clock(), 15.0)
    first, second = Holder(locks.opening("Fresh")), Holder(locks.opening("Fresh"))
    assert first.entered and second.entered
    rename = Holder(locks.changing("Fresh", "Renamed"))
    assert not rename.entered
    first.done()
    assert not rename.entered
    second.done()
    assert rename.entered
    rename.done()
    assert not locks.busy


def test_an_opener_after_a_waiting_rename_waits_behind_it() -> None:
    locks = NameLocks(Clock(), 15.0)
    reader = Holder(locks.opening("Fresh"))
    rename = Holder(locks.changing("Fresh", "Renamed"))
    late = Holder(locks.opening("Fresh"))
    other = Holder(locks.opening("Other"))  # no conflict: in at once
    assert other.entered and not late.entered
    reader.done()
    assert rename.entered and not late.entered
    rename.done()
    assert late.entered
    late.done()
    other.done()
    assert not locks.busy


def test_a_rename_covers_the_names_inside_but_not_the_parent() -> None:
    locks = NameLocks(Clock(), 15.0)
    rename = Holder(locks.changing("Top", "Moved"))
    inside, new_inside = Holder(locks.opening("Top/Sub")), Holder(locks.opening("Moved/Sub"))
    parent, lookalike = Holder(locks.opening("Outer")), Holder(locks.opening("Topaz"))
    assert not inside.entered and not new_inside.entered
    assert parent.entered and lookalike.entered
    delete_child = Holder(locks.changing("Top/Sub"))
    assert not delete_child.entered
    rename.done()
    assert inside.entered and new_inside.entered and not delete_child.entered
    inside.done()
    new_inside.done()
    assert delete_child.entered


def test_a_wait_ends_after_the_timeout_and_frees_the_queue() -> None:
    clock = Clock()
    locks = NameLocks(clock, 15.0)
    stuck = Holder(locks.opening("Fresh"))
    rename = Holder(locks.changing("Fresh", "Renamed"))
    behind = Holder(locks.opening("Fresh"))
    clock.advance(14.9)
    assert not rename.entered and rename.failure is None
    clock.advance(0.2)
    assert isinstance(rename.failure, errors.BackendUnavailable)
    assert "Fresh" in str(rename.failure)
    assert behind.entered  # no longer behind a RENAME that gave up
    stuck.done()
    behind.done()
    assert not locks.busy
