"""NOTIFY's mailbox name events (RFC 5465 5.4, 5.5) under ``--workers 2``: a CREATE, RENAME,
DELETE or (UN)SUBSCRIBE answered in one child is told to a NOTIFY session of the same user
in the other child (the master passes it on), as within one process."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from imapserver import new_user, ok
from test_service_workers import SPECS, children, run_workers, serving_pid, two_workers
from test_workers_coherence import in_worker

from bench.harness import RawClient, ServerProcess


def read_until(client: RawClient, last: bytes) -> bytes:
    """The lines ``client`` gets until one starts with ``last`` (10 s each: a hang)."""
    client.settimeout(10)
    lines = [client.read_line()]
    while not lines[-1].startswith(last):
        lines.append(client.read_line())
    return b"".join(lines)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data", SPECS["maildir"], extra_args=["--workers", "2"])
    yield from run_workers(proc)


def test_name_events_cross_workers(server: ServerProcess) -> None:
    user = new_user()
    server.add_user(user.name, user.password)
    watcher, actor = two_workers(server, user.name, user.password)
    ok(watcher, "NOTIFY SET (PERSONAL (MessageNew MailboxName SubscriptionChange))")
    ok(actor, "CREATE Fresh")
    ok(actor, "SUBSCRIBE Fresh")
    ok(actor, "RENAME Fresh Renamed")
    ok(actor, "UNSUBSCRIBE Renamed")
    ok(actor, "DELETE Renamed")
    told = read_until(watcher, b'* LIST (\\NonExistent) "/" Renamed\r\n')
    expected = [
        b'* LIST () "/" Fresh\r\n',
        b'* LIST (\\Subscribed) "/" Fresh\r\n',
        b'* LIST () "/" Renamed ("OLDNAME" (Fresh))\r\n',
        b'* LIST () "/" Renamed\r\n',
        b'* LIST (\\NonExistent) "/" Renamed\r\n',
    ]
    positions = [told.find(line) for line in expected]
    assert -1 not in positions and positions == sorted(positions), told
    # The mailbox created elsewhere is watched: its new message is told too.
    ok(actor, "CREATE Kept")
    assert actor.command_with_literal("APPEND Kept ", b"Subject: k\r\n\r\nk\r\n").ok
    assert b"* STATUS Kept (MESSAGES 1 " in read_until(watcher, b"* STATUS Kept ")


@contextmanager
def stopped(server: ServerProcess, client: RawClient) -> Iterator[None]:
    """The worker serving ``client`` stopped (SIGSTOP) meanwhile: what the master relays to
    it waits in its channel, as it would behind a slow turn."""
    pid = serving_pid(client, children(server.pid))
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_mailbox_made_elsewhere_tells_what_came_before_its_watch(server: ServerProcess) -> None:
    """A CREATE (or RENAME) relayed late: the other worker's APPEND to the new name is done
    before the watcher's worker opens it.  Its message is told all the same (RFC 5465 6:
    PERSONAL is every mailbox of the user, the ones created after NOTIFY SET too)."""
    user = new_user()
    server.add_user(user.name, user.password)
    watcher, actor = two_workers(server, user.name, user.password)
    ok(watcher, "NOTIFY SET (PERSONAL (MessageNew MailboxName))")
    with stopped(server, watcher):
        ok(actor, "CREATE Early")
        assert actor.command_with_literal("APPEND Early ", b"Subject: e\r\n\r\ne\r\n").ok
    told = read_until(watcher, b"* STATUS Early ")
    assert b'* LIST () "/" Early\r\n' in told and b"* STATUS Early (MESSAGES 1 " in told
    # A rename: the watch on the old name is in place (the NOOP waits for the rescan).
    ok(actor, "CREATE Old")
    read_until(watcher, b'* LIST () "/" Old\r\n')
    ok(watcher, "NOOP")
    with stopped(server, watcher):
        ok(actor, "RENAME Old New")
        assert actor.command_with_literal("APPEND New ", b"Subject: n\r\n\r\nn\r\n").ok
    told = read_until(watcher, b"* STATUS New ")
    assert b'* LIST () "/" New ("OLDNAME" (Old))\r\n' in told, told
    assert b"* STATUS New (MESSAGES 1 " in told, told


def test_changes_made_in_two_workers_are_told_in_the_order_they_were_made(
    server: ServerProcess,
) -> None:
    """A CREATE in one worker, then a DELETE of that mailbox in the watcher's own worker
    while the first is still on its way through the master (stopped here): the watcher is
    told the CREATE first, whichever worker made each (else it ends up believing the
    mailbox exists)."""
    user = new_user()
    server.add_user(user.name, user.password)
    watcher, far = two_workers(server, user.name, user.password)
    near = in_worker(server, user.name, user.password, serving_pid(watcher, children(server.pid)))
    ok(watcher, "NOTIFY SET (PERSONAL (MailboxName))")
    master = server.proc
    assert master is not None
    master.send_signal(signal.SIGSTOP)
    try:
        ok(far, "CREATE Brief")
        ok(near, "DELETE Brief")
    finally:
        master.send_signal(signal.SIGCONT)
    told = read_until(watcher, b'* LIST (\\NonExistent) "/" Brief\r\n')
    if b'* LIST () "/" Brief\r\n' not in told:  # told in order, the DELETE comes last
        told += read_until(watcher, b'* LIST () "/" Brief\r\n')
    created, deleted = (told.find(b"* LIST %s" % a) for a in (b"()", b"(\\NonExistent)"))
    assert created < deleted, told
