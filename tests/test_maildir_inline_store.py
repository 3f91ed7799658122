"""A STORE of a few messages renames their files and writes the index on the reactor thread
(``MaildirMailbox._set_flags``), but only when that waits for nothing: while another process
holds the index's write lock the work goes to a thread, and the checkpoints those commits
leave out (a write of the database file, flushed) are made in a thread.

A real server over a socket for the lock; in process (file work inline) for the
checkpoints, which the log's header shows: SQLite starts the log again, with new salts,
at the first commit after a complete checkpoint."""

from __future__ import annotations

import itertools
import os
import sqlite3
import time
from pathlib import Path

import pytest
from test_maildir_backend import SEEN, Store, append, resolve

from bench import messages
from bench.harness import BackendSpec, RawClient, ServerProcess
from mailserv.backends.maildir import backend, index
from mailserv.backends.maildir.index import FILENAME as INDEX
from mailserv.interfaces import StoreMode

BUSY_SECONDS = index.BUSY_MS / 1000


def test_a_short_store_waits_for_another_process_in_a_thread(tmp_path: Path) -> None:
    """Another worker's transaction holds the index: the STORE waits for it in a thread, and
    the reactor answers another session meanwhile (on the reactor thread, the wait would
    hold it for up to ``BUSY_MS``)."""
    spec = BackendSpec("maildir", {"autocreate": "false"})
    server = ServerProcess(tmp_path / "data", spec, extra_args=["--workers", "1"])
    server.start()
    clients: list[RawClient] = []
    try:
        server.add_user("u", "pw")
        for _ in range(2):
            clients.append(RawClient.connect(server.imap_port, timeout=30))
            assert clients[-1].login("u", "pw").ok
        actor, other = clients
        assert all(r.ok for r in actor.append_many("INBOX", [messages.plain(subject="one")]))
        assert actor.command("SELECT INBOX").ok
        maildir = server.data_dir / "mail" / "u" / "Maildir"
        holder = sqlite3.connect(maildir / INDEX, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            tag = actor.next_tag()
            actor.send(f"{tag} UID STORE 1 +FLAGS (\\Seen)\r\n")
            time.sleep(0.3)  # the STORE is under way: waiting for the lock
            began = time.monotonic()
            assert other.command("NOOP").ok
            assert time.monotonic() - began < BUSY_SECONDS / 2
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert actor.read_until_tagged(tag).ok
        assert [name.rsplit(",", 1)[1] for name in os.listdir(maildir / "cur")] == ["S"]
        assert b"\\Seen" in actor.command("UID FETCH 1 (FLAGS)").data("FETCH")[0]
    finally:
        for client in clients:
            client.close()
        server.stop()


def test_commits_on_the_reactor_thread_leave_the_checkpoint_to_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index, "WAL_PAGES", 1)  # any other commit checkpoints
    monkeypatch.setattr(index, "CHECKPOINT_AFTER", 4)
    monkeypatch.setattr(backend, "INLINE_BUDGET", 3600.0)  # no reactor runs to end a turn
    store = Store(tmp_path)
    store.start()
    try:
        inbox = store.open()
        uid = append(inbox, 1)  # its commit is checkpointed
        log = store.root() / f"{INDEX}-wal"

        def header() -> bytes:  # the checkpoint's sequence number and the salts
            return log.read_bytes()[12:24]

        modes = itertools.cycle([StoreMode.ADD, StoreMode.REMOVE])

        def flip(count: int) -> None:  # each STORE changes the flags
            for _ in range(count):
                resolve(inbox.store([uid], next(modes), SEEN, None))

        flip(1)  # the log starts again
        started = header()
        flip(2)
        assert header() == started  # these commits made no checkpoint
        flip(1)  # the fourth: a checkpoint is owed, and made
        flip(1)
        assert header() != started
    finally:
        store.stop()
