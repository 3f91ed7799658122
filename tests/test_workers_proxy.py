"""``--workers 2`` with the proxy backend: each child has upstream sessions of its own, and
what one child changes reaches a session of the other child through the upstream (its
channel IDLEs on the mailbox), as a change made by any other upstream client would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dovecot  # type: ignore[import-not-found]  # tests/, on sys.path
import pytest
from imapserver import new_user
from test_service_workers import accepting, children, read_until, two_workers, wait_for

from bench.harness import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    spec = dovecot.proxy_backend_spec()
    proc = ServerProcess(tmp_path / "data", spec, extra_args=["--workers", "2"])
    proc.start()
    try:
        wait_for(lambda: len(children(proc.pid)) == 2)
        wait_for(lambda: accepting(proc) == 2)
        yield proc
    finally:
        proc.stop()


def test_a_change_in_one_child_reaches_an_idle_session_of_the_other(
    server: ServerProcess,
) -> None:
    user = new_user()
    server.add_user(user.name, user.password)
    watcher, actor = two_workers(server, user.name, user.password)
    assert actor.command("APPEND INBOX {5+}\r\nhello").ok
    assert watcher.command("SELECT INBOX").ok
    watcher.send(b"i1 IDLE\r\n")
    assert watcher.read_line().startswith(b"+")
    assert actor.command("APPEND INBOX {7+}\r\nsecond!").ok
    read_until(watcher, rb"^\* 2 EXISTS")
    assert actor.command("SELECT INBOX").ok
    assert actor.command("STORE 1 +FLAGS (\\Flagged)").ok
    assert b"\\Flagged" in read_until(watcher, rb"^\* 1 FETCH")
    assert actor.command("STORE 2 +FLAGS (\\Deleted)").ok
    assert actor.command("EXPUNGE").ok
    read_until(watcher, rb"^\* 2 EXPUNGE")
    watcher.send(b"DONE\r\n")
    assert watcher.read_until_tagged("i1").ok
    fetched = watcher.command("FETCH 1 (FLAGS BODY.PEEK[])")
    assert fetched.ok and b"hello" in b"".join(fetched.untagged)
