"""A STORE of many messages answers before its files are renamed (``renamer``): the index
holds the flags meanwhile, for this process, another one and a restart; another program's
change to a file still owing its rename wins.

In process (file work inline) with the threshold lowered; "the renamer never ran" is a
process that died right after the answer.  Then a real ``twistd imapserv`` with two
workers and a STORE of thousands."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_maildir_backend import DELETED, SEEN, Recorder, Store, append, metas, resolve

from bench import messages
from bench.harness import (
    BackendSpec,
    RawClient,
    ServerProcess,
    fetches,
    flag_set,
    search_numbers,
)
from mailserv.backends.kit import flagchanges
from mailserv.backends.maildir import mailbox, renamer
from mailserv.backends.maildir.index import FILENAME as INDEX
from mailserv.backends.maildir.uidlist import FILENAME as UIDLIST
from mailserv.interfaces import StoreMode
from mailserv.search import And, HasFlag, SearchProgram

FLAGGED = frozenset({"\\Flagged"})


@pytest.fixture
def lazy(monkeypatch: pytest.MonkeyPatch) -> None:
    """STOREs of more than two messages owe their renames, done two at a time."""
    monkeypatch.setattr(mailbox, "LAZY_STORE", 2)
    monkeypatch.setattr(renamer, "SLICE", 2)


@pytest.fixture
def store(tmp_path: Path, lazy: None) -> Iterator[Store]:
    made = Store(tmp_path)
    made.start()
    yield made
    made.stop()


@pytest.fixture
def dying(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No renamer runs (the process died after answering) until the fixture ends."""
    monkeypatch.setattr(renamer.Renamer, "owe", lambda self, updates: None)
    yield
    monkeypatch.undo()


def names(store: Store, folder: str = "") -> dict[str, str]:
    """The info letters of every file in cur/, by base."""
    cur = store.root() / folder / "cur"
    return dict(name.split(":2,") for name in os.listdir(cur))


def bases_by_uid(store: Store) -> list[str]:
    """The bases in UID order, as ``dovecot-uidlist`` records them (sorting the names does
    not give it: ``M<usecs>`` is not zero-padded, so ``M100000`` sorts before ``M99999``)."""
    records = (store.root() / UIDLIST).read_text().splitlines()[1:]
    return [base for _, base in sorted((int(r.split()[0]), r.split(":", 1)[1]) for r in records)]


def owed(store: Store, folder: str = "") -> list[int]:
    db = sqlite3.connect(store.root() / folder / INDEX)
    try:
        return [uid for (uid,) in db.execute("SELECT uid FROM renames ORDER BY uid")]
    finally:
        db.close()


def flags_of(box: Any) -> dict[int, frozenset[str]]:
    return {uid: meta.flags for uid, meta in metas(box).items()}


def test_a_big_store_renames_after_it_is_applied(store: Store) -> None:
    inbox = store.open()
    recorder = Recorder()
    inbox.add_listener(recorder)
    uids = [append(inbox, n) for n in range(5)]
    result = resolve(inbox.store(uids, StoreMode.ADD, SEEN, "me"))
    assert [change.uid for change in result.changed] == uids
    assert recorder.events[-1] == ("flags", [(uid, SEEN) for uid in uids], "me")
    assert set(names(store).values()) == {"S"}
    assert owed(store) == []
    assert flags_of(inbox) == dict.fromkeys(uids, SEEN)


def test_a_big_store_hands_over_its_changes_by_group(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made when read, ascending, at one modseq; the counts and the flag searches the state
    answers follow, per group of old and new flags."""
    monkeypatch.setattr(flagchanges, "LAZY_CHANGES", 2)
    inbox = store.open()
    uids = [append(inbox, n, SEEN if n % 3 == 0 else frozenset()) for n in range(9)]
    result = resolve(inbox.store(uids[1:], StoreMode.ADD, FLAGGED | SEEN, None))
    assert isinstance(result.changed, flagchanges.FlagChanges)
    modseq = resolve(inbox.status()).highestmodseq
    assert [(c.uid, c.flags, c.modseq) for c in result.changed] == [
        (uid, FLAGGED | SEEN, modseq) for uid in uids[1:]
    ]
    assert resolve(inbox.status()).unseen == 0
    assert flags_of(inbox) == {uids[0]: SEEN} | dict.fromkeys(uids[1:], FLAGGED | SEEN)
    flagged = HasFlag("\\Flagged", present=True)
    assert resolve(inbox.search(SearchProgram(flagged), uids)) == uids[1:]
    result = resolve(inbox.store(uids, StoreMode.REMOVE, SEEN, None))
    assert [c.uid for c in result.changed] == uids
    assert resolve(inbox.status()).unseen == 9
    unseen = HasFlag("\\Seen", present=False)
    assert resolve(inbox.search(SearchProgram(And((unseen, flagged))), uids)) == uids[1:]


def test_renames_left_by_a_crash_are_finished_at_the_next_load(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = store.open()
    uids = [append(inbox, n) for n in range(4)]
    with monkeypatch.context() as m:
        m.setattr(renamer.Renamer, "owe", lambda self, updates: None)
        resolve(inbox.store(uids, StoreMode.ADD, SEEN, None))
        assert owed(store) == uids
        assert set(names(store).values()) == {""}  # the files still have their old names
        before = {uid: (meta.flags, meta.modseq) for uid, meta in metas(inbox).items()}
        assert {flags for flags, _ in before.values()} == {SEEN}
        other = Store(store.data_dir)  # another process loading the mailbox now
        other.start()
        try:
            seen = {u: (m.flags, m.modseq) for u, m in metas(other.open()).items()}
            assert seen == before
        finally:
            other.stop()
    store.restart()
    inbox = store.open()
    assert {uid: (meta.flags, meta.modseq) for uid, meta in metas(inbox).items()} == before
    assert set(names(store).values()) == {"S"}
    assert owed(store) == []
    resolve(inbox.store(uids, StoreMode.REMOVE, SEEN, None))  # and the next STORE of all
    assert set(names(store).values()) == {""}
    assert set(flags_of(inbox).values()) == {frozenset()}


def test_another_programs_change_of_a_file_owing_its_rename_wins(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = store.open()
    uids = [append(inbox, n) for n in range(4)]
    bases = bases_by_uid(store)
    cur = store.root() / "cur"
    with monkeypatch.context() as m:
        m.setattr(renamer.Renamer, "owe", lambda self, updates: None)
        resolve(inbox.store(uids, StoreMode.ADD, SEEN, None))
        os.rename(cur / f"{bases[1]}:2,", cur / f"{bases[1]}:2,F")  # as it was, plus F
        resolve(inbox.catch_up())
        assert flags_of(inbox) == {1: SEEN, 2: FLAGGED, 3: SEEN, 4: SEEN}
        assert owed(store) == [1, 3, 4]
        os.rename(cur / f"{bases[2]}:2,", cur / f"{bases[2]}:2,T")  # before a stop
    store.restart()
    inbox = store.open()
    assert flags_of(inbox) == {1: SEEN, 2: FLAGGED, 3: DELETED, 4: SEEN}
    assert names(store) == dict(zip(bases, ["S", "F", "T", "S"], strict=True))
    assert owed(store) == []


def test_another_process_takes_the_flags_from_the_index(
    tmp_path: Path, lazy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--workers N``: a process that loaded the mailbox before a STORE of many by another
    sees the new flags (and their modseq) at its next command, before any file is renamed."""
    one, two = Store(tmp_path), Store(tmp_path)
    one.start()
    two.start()
    try:
        mine, theirs = one.open(), two.open()
        uids = [append(mine, n) for n in range(4)]
        resolve(theirs.status())
        recorder = Recorder()
        theirs.add_listener(recorder)
        monkeypatch.setattr(renamer.Renamer, "owe", lambda self, updates: None)
        resolve(mine.store(uids, StoreMode.ADD, SEEN, None))
        assert set(names(one).values()) == {""}
        resolve(theirs.catch_up())
        here = {uid: (meta.flags, meta.modseq) for uid, meta in metas(mine).items()}
        assert {uid: (m.flags, m.modseq) for uid, m in metas(theirs).items()} == here
        assert recorder.events == [("flags", [(uid, SEEN) for uid in uids], None)]
        resolve(mine.catch_up())  # its own notice: nothing new
        assert owed(one) == uids
    finally:
        two.stop()
        one.stop()


def test_copy_move_expunge_and_a_second_store_while_renames_are_owed(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = store.open()
    uids = [append(inbox, n) for n in range(5)]
    resolve(store.account().create("Other"))
    both = SEEN | FLAGGED
    with monkeypatch.context() as m:
        m.setattr(renamer.Renamer, "owe", lambda self, updates: None)
        resolve(inbox.store(uids, StoreMode.ADD, SEEN, None))
        resolve(inbox.store(uids, StoreMode.ADD, FLAGGED, None))  # the latest flags count
        assert owed(store) == uids
        copied = resolve(inbox.copy(uids[:1], "Other", None))
        moved = resolve(inbox.move(uids[1:2], "Other", None))
        assert len(copied.pairs) == len(moved.pairs) == 1
        resolve(inbox.store(uids[2:3], StoreMode.ADD, DELETED, None))  # one: renamed now
        assert owed(store) == uids[:1] + uids[3:]
        assert resolve(inbox.expunge(None, None)) == [uids[2]]
        assert owed(store) == uids[:1] + uids[3:]
        assert flags_of(inbox) == {uids[0]: both, uids[3]: both, uids[4]: both}
    other = store.open("Other")
    assert set(flags_of(other).values()) == {both}
    assert sorted(names(store, ".Other").values()) == ["FS", "FS"]
    store.restart()
    inbox = store.open()
    assert flags_of(inbox) == {uids[0]: both, uids[3]: both, uids[4]: both}
    assert sorted(names(store).values()) == ["FS", "FS", "FS"]
    assert owed(store) == []


# -- a real server ---------------------------------------------------------------------------


def test_store_of_thousands_answers_first_and_another_server_sees_the_flags(
    tmp_path: Path,
) -> None:
    """Two servers on one maildir (as two workers): the second one's sessions are told of
    the first's STORE of every message at their next command, from the index."""
    count = 3000
    spec = BackendSpec("maildir", {"autocreate": "false"})
    one, two = (ServerProcess(tmp_path / "data", spec, extra_args=["--workers", "1"]) for _ in "12")
    one.start()
    two.start()
    clients: list[RawClient] = []
    try:
        one.add_user("lazy", "secret")
        cur = one.data_dir / "mail" / "lazy" / "Maildir" / "cur"

        def client(server: ServerProcess) -> RawClient:
            made = RawClient.connect(server.imap_port, timeout=30)
            made.login("lazy", "secret")
            clients.append(made)
            return made

        actor = client(one)
        mail = [messages.plain(subject=f"m{n}") for n in range(count)]
        assert all(r.ok for r in actor.append_many("INBOX", mail))
        others = [client(two), client(one)]  # the other server first: before the renames
        for session in [actor, *others]:
            assert session.command("SELECT INBOX").ok
        assert actor.command("STORE 1:* +FLAGS.SILENT (\\Seen)").ok
        renamed = sum(name.endswith("S") for name in os.listdir(cur))
        assert renamed < count  # answered before the files were all renamed
        for session in others:
            # Told at the end of a command (the engine's catch_up), as of any change
            # another process made: the flags come from the index, the files are not renamed.
            assert len(session.command("NOOP").data("FETCH")) == count
            assert search_numbers(session.command("SEARCH UNSEEN")) == []
            found = fetches(session.command("FETCH 1:* (FLAGS)"))
            assert len(found) == count
            assert all(flag_set(items["FLAGS"]) == {"\\SEEN"} for items in found.values())
        deadline = time.monotonic() + 60
        while renamed < count and time.monotonic() < deadline:
            time.sleep(0.1)
            renamed = sum(name.endswith(":2,S") for name in os.listdir(cur))
        assert renamed == count
        for session in [actor, *others]:
            assert search_numbers(session.command("SEARCH SEEN")) == list(range(1, count + 1))
    finally:
        for session in clients:
            session.close()
        two.stop()
        one.stop()
