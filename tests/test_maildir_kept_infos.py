"""The parsed messages a maildir backend keeps in memory stay within ``kept-infos`` for all
its mailboxes (``infos.KeptInfos``), and a command whose own loading pushes some out still
answers with every message (it keeps its own references).

In process (file work inline) with a budget of a few, where the entries show what is kept;
then a real server over a socket."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_maildir_backend import Store, append, message, resolve

from bench import messages
from bench.harness import BackendSpec, RawClient, ServerProcess, fetches
from mailserv.backends.maildir import mailbox
from mailserv.backends.maildir.index import FILENAME as INDEX
from mailserv.message.lazyinfo import LazyInfo
from mailserv.message.sortcolumns import keys_of

KEPT = 3


def holding(*boxes: Any) -> int:
    """How many entries of ``boxes`` hold an info."""
    return sum(e.info is not None for box in boxes for e in box._state.entries.values())


def subjects(box: Any, uids: list[int]) -> dict[int, str]:
    return {meta.uid: meta.info.subject for meta in resolve(box.fetch(uids))}


@pytest.fixture(params=["inline", "in a thread"])
def store(tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A budget of ``KEPT``; infos and FETCH views made on the reactor thread or handed to
    a thread (inline here too: the code path is what differs)."""
    if request.param == "in a thread":
        monkeypatch.setattr(mailbox, "INLINE_INFOS", 1)
        monkeypatch.setattr(mailbox, "INLINE_METAS", 1)
    made = Store(tmp_path, **{"kept-infos": str(KEPT)})
    made.start()
    yield made
    made.stop()


def test_delivered_and_loaded_infos_stay_within_the_budget(store: Store) -> None:
    inbox = store.open()
    uids = [append(inbox, n) for n in range(7)]
    assert holding(inbox) == KEPT  # the delivered ones come parsed: the last three stay
    expected = {uid: f"Note {n}" for n, uid in enumerate(uids)}
    assert subjects(inbox, uids) == expected  # loads four, pushing out its own first ones
    assert holding(inbox) == KEPT
    store.restart()
    inbox = store.open()
    assert holding(inbox) == 0
    assert subjects(inbox, uids) == expected
    assert subjects(inbox, uids[:2]) == {uid: expected[uid] for uid in uids[:2]}
    assert holding(inbox) == KEPT


def test_the_budget_is_the_whole_backends(store: Store) -> None:
    account = store.account()
    resolve(account.create("Other"))
    inbox, other = store.open(), store.open("Other")
    mine = [append(inbox, n) for n in range(4)]
    theirs = [append(other, n) for n in range(4, 8)]
    assert holding(inbox, other) == KEPT
    assert list(subjects(inbox, mine).values()) == [f"Note {n}" for n in range(4)]
    assert holding(other) == 0 and holding(inbox) == KEPT
    assert list(subjects(other, theirs).values()) == [f"Note {n}" for n in range(4, 8)]
    assert holding(inbox, other) == KEPT


def test_a_copy_of_more_than_the_budget_copies_every_info(store: Store) -> None:
    account = store.account()
    resolve(account.create("Copies"))
    inbox = store.open()
    uids = [append(inbox, n) for n in range(6)]
    store.restart()  # nothing kept: the COPY loads them all
    inbox, copies = store.open(), store.open("Copies")
    result = resolve(inbox.copy(uids, "Copies", None))
    assert [source for source, _ in result.pairs] == uids
    copied = [target for _, target in result.pairs]
    assert list(subjects(copies, copied).values()) == [f"Note {n}" for n in range(6)]
    assert holding(inbox, copies) <= KEPT
    assert message(0) in resolve(copies.content(copied[0]))


def test_a_server_with_a_small_budget_answers_every_fetch(tmp_path: Path) -> None:
    count = 40
    spec = BackendSpec("maildir", {"autocreate": "false", "kept-infos": "5"})
    server = ServerProcess(tmp_path / "data", spec, extra_args=["--workers", "1"])
    server.start()
    client: RawClient | None = None
    try:
        server.add_user("u", "pw")
        client = RawClient.connect(server.imap_port, timeout=30)
        assert client.login("u", "pw").ok
        mail = [messages.plain(subject=f"m{n}") for n in range(count)]
        assert all(r.ok for r in client.append_many("INBOX", mail))
        assert client.command("CREATE Copies").ok
        assert client.command("SELECT INBOX").ok
        assert client.command("COPY 1:* Copies").ok
        for folder in ("INBOX", "Copies"):
            assert client.command(f"SELECT {folder}").ok
            for _ in range(2):
                found = fetches(client.command("FETCH 1:* (ENVELOPE)"))
                assert sorted(found) == list(range(1, count + 1))
                envelopes = [found[seq]["ENVELOPE"] for seq in sorted(found)]
                assert [e[1] for e in envelopes] == [f"m{n}".encode() for n in range(count)]
    finally:
        if client is not None:
            client.close()
        server.stop()


def test_sort_keys_are_read_aside_and_leave_the_kept_infos_undecoded(store: Store) -> None:
    """From the infos kept, the index, or the file when the index has none; the same keys
    as the engine reads from ``fetch()``, and what was decoded for them is not kept."""
    inbox = store.open()
    uids = [append(inbox, n) for n in range(5)]
    store.restart()
    inbox = store.open()
    resolve(inbox.fetch(uids[:2]))  # kept, as records not yet decoded
    db = sqlite3.connect(store.root() / INDEX)
    with db:
        db.execute(
            "UPDATE message SET info = NULL, heads = NULL, sorting = NULL WHERE uid = ?",
            (uids[4],),
        )
    db.close()
    names = ("DATE", "SUBJECT", "REFERENCES", "FROM")
    got = resolve(inbox.sort_keys([*uids, uids[-1] + 1], names))
    entries = inbox._state.entries
    for uid in uids[:2]:
        info = entries[uid].info
        assert isinstance(info, LazyInfo) and info.kept_record() is not None
    assert holding(inbox) == 2
    work = keys_of(resolve(inbox.fetch(uids)), names)
    try:
        while True:
            next(work)
    except StopIteration as done:
        expected = done.value
    assert list(got.uids) == list(expected.uids) == uids
    for name in names:
        assert list(got.columns[name]) == list(expected.columns[name]), name
    assert got.columns["SUBJECT"][4] == "NOTE 4"  # parsed from the file


def test_each_message_keeps_its_sort_keys_once_read(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later SORT or THREAD reads neither the index nor a record again: the keys stay on
    the entry (a few hundred bytes), the decoded message does not."""
    inbox = store.open()
    uids = [append(inbox, n) for n in range(5)]
    store.restart()
    inbox = store.open()
    first = resolve(inbox.sort_keys(uids, ("DATE",)))
    assert holding(inbox) == 0
    asked: list[list[int]] = []
    load = inbox.disk.load_infos
    monkeypatch.setattr(inbox.disk, "load_infos", lambda u: asked.append(list(u)) or load(u))
    again = resolve(inbox.sort_keys(uids, ("SUBJECT", "DATE", "REFERENCES")))
    assert asked == []
    assert list(again.columns["DATE"]) == list(first.columns["DATE"])
    assert list(again.columns["SUBJECT"]) == [f"NOTE {n}" for n in range(5)]
