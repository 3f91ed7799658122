"""A maildir store that has stopped starts no thread again: a task handed to it late (a
background job, a command in flight while the process stops) fails instead.  Before, such a
task started the I/O pool anew, whose threads nobody stopped: a ``--workers`` child whose
master was gone hung at exit, waiting for them."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from twisted.internet import reactor

from mailserv.backends.maildir import MaildirBackend
from mailserv.backends.maildir.options import parse_options
from mailserv.errors import BackendUnavailable
from mailserv.testing import message, resolve


def store_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if "maildir" in t.name]


def test_nothing_starts_the_threads_of_a_stopped_store_again(tmp_path: Path) -> None:
    settings = parse_options({"io-threads": "2"})
    backend = MaildirBackend(settings, str(tmp_path), reactor)
    resolve(backend.start())
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    resolve(box.append(message(1), frozenset(), None, None))
    assert store_threads()  # the pool ran the append
    resolve(backend.stop())
    assert store_threads() == []
    with pytest.raises(Exception):  # noqa: B017 - whichever layer refuses first
        resolve(box.append(message(2), frozenset(), None, None))
    with pytest.raises(BackendUnavailable):
        resolve(backend.account("bob"))
    assert store_threads() == []


def test_a_mailbox_whose_index_is_gone_does_not_keep_the_threads(tmp_path: Path) -> None:
    """A mailbox gone from disk (RENAMEd by another worker, say) has its index closed; its
    shutdown failed on it ("index is closed"), which skipped stopping the pools: a
    ``--workers`` child hung at exit after SIGTERM, as a full run showed."""
    backend = MaildirBackend(parse_options({"io-threads": "2"}), str(tmp_path), reactor)
    resolve(backend.start())
    account = resolve(backend.account("alice"))
    resolve(account.create("Old"))
    gone = resolve(account.open("Old"))
    resolve(gone.append(message(1), frozenset(), None, None))
    kept = resolve(account.open("INBOX"))
    resolve(kept.append(message(2), frozenset(), None, None))
    gone.disk.close()  # what its loss leaves: a loaded mailbox without its index
    resolve(backend.stop())
    assert store_threads() == []
    assert kept.closed
