"""What the maildir backend promises beyond the shared contract: Dovecot's file formats,
changes made by other programs, the index (rebuilt when missing or stale, modseqs kept),
special-use folders and name safety.  In process, with file work inline."""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface import implementer

from mailserv import testing
from mailserv.backends.maildir import MaildirBackend, factory
from mailserv.backends.maildir.index import FILENAME as INDEX
from mailserv.backends.maildir.options import parse_options
from mailserv.backends.maildir.pending import ECHO_CHECK, PendingEvents
from mailserv.backends.maildir.records import Entry
from mailserv.errors import (
    InvalidMailboxName,
    MailboxExists,
    MailboxNotFound,
)
from mailserv.interfaces import (
    IDeletedUsage,
    IHomeLookupConsumer,
    IMailboxListener,
    MessageMeta,
    StoreMode,
)
from mailserv.message.info import NO_INFO
from mailserv.message.lazyinfo import LazyInfo
from mailserv.message.parse import parse_message
from mailserv.message.store import MARKER, dumps

SEEN = frozenset({"\\Seen"})
DELETED = frozenset({"\\Deleted"})


resolve = functools.partial(testing.resolve, wait=False)  # I/O inline: no reactor needed


def message(n: int, eol: bytes = b"\r\n") -> bytes:
    lines = [
        b"From: Alice <alice@example.org>",
        b"To: bob@example.org",
        b"Subject: Note %d" % n,
        b"Message-ID: <%d@example.org>" % n,
        b"",
        b"Body of note %d." % n,
        b"",
    ]
    return eol.join(lines)


@implementer(IMailboxListener)
class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, list[Any], object]] = []

    def messages_added(self, mailbox: Any, uids: Any, origin: object) -> None:
        self.events.append(("added", list(uids), origin))

    def messages_expunged(self, mailbox: Any, uids: Any, origin: object) -> None:
        self.events.append(("expunged", list(uids), origin))

    def flags_changed(self, mailbox: Any, changes: Any, origin: object) -> None:
        self.events.append(("flags", [(c.uid, c.flags) for c in changes], origin))

    def mailbox_lost(self, mailbox: Any, reason: str) -> None:
        self.events.append(("lost", [], reason))


class Store:
    """A backend over one data dir that can be stopped and started again (a restart)."""

    def __init__(self, data_dir: Path, **options: str) -> None:
        self.data_dir = data_dir
        self.options = {"io-threads": "0", "autocreate": "false", **options}
        self.backend: MaildirBackend | None = None

    def start(self, reactor: Any = None) -> MaildirBackend:
        settings = parse_options(self.options)
        self.backend = MaildirBackend(settings, str(self.data_dir), reactor or global_reactor)
        # File work runs inline and the tests take each answer at once (``resolve`` without a
        # reactor): no slice may run out.  A loaded machine's 4 ms did, mid-STORE, and the
        # call then waited for a reactor turn.  (A test of the pauses sets its own length.)
        self.backend.turns.length = 3600.0
        resolve(self.backend.start())
        return self.backend

    def stop(self) -> None:
        if self.backend is not None:
            resolve(self.backend.stop())
            self.backend = None

    def restart(self, reactor: Any = None) -> MaildirBackend:
        self.stop()
        return self.start(reactor)

    def account(self, user: str = "alice") -> Any:
        assert self.backend is not None
        return resolve(self.backend.account(user))

    def open(self, name: str = "INBOX", user: str = "alice") -> Any:
        return resolve(self.account(user).open(name))

    def root(self, user: str = "alice") -> Path:
        return self.data_dir / "mail" / user / "Maildir"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    made = Store(tmp_path)
    made.start()
    yield made
    made.stop()


def append(box: Any, n: int, flags: frozenset[str] = frozenset(), **kw: Any) -> int:
    result = resolve(box.append(message(n), flags, kw.get("when"), kw.get("origin")))
    return int(result.uid)


def metas(box: Any) -> dict[int, Any]:
    return {m.uid: m for m in resolve(box.fetch(resolve(box.uids())))}


def deliver(directory: Path, name: str, data: bytes) -> Path:
    """Deliver like an MDA: write in tmp/, then rename into new/."""
    temp = directory / "tmp" / name
    temp.write_bytes(data)
    target = directory / "new" / name
    os.rename(temp, target)
    return target


def uidlist_records(directory: Path) -> dict[str, int]:
    lines = (directory / "dovecot-uidlist").read_text().splitlines()[1:]
    return {line.split(" :", 1)[1]: int(line.split()[0]) for line in lines}


# -- Dovecot's formats -------------------------------------------------------------------


def test_deleted_usage_from_kept_flags(store: Store) -> None:
    """STATUS DELETED and DELETED-STORAGE (RFC 9208) come from the UIDs kept by flag and the
    entries' sizes (``IDeletedUsage``), and follow a flag another program sets."""
    inbox = store.open()
    assert IDeletedUsage.providedBy(inbox)
    uids = [append(inbox, n) for n in (1, 22, 333, 4444)]
    resolve(inbox.store(uids[1:3], StoreMode.ADD, frozenset({"\\Deleted"}), None))
    assert resolve(inbox.deleted_usage()) == (2, len(message(22)) + len(message(333)))
    cur = store.root() / "cur"
    records = uidlist_records(store.root())
    [name] = [n for n in os.listdir(cur) if records[n.split(":")[0]] == uids[3]]
    os.rename(cur / name, cur / (name + "T"))  # another program: \Deleted
    sizes = {m.uid: m.size for m in metas(inbox).values()}
    assert resolve(inbox.deleted_usage()) == (3, sum(sizes[u] for u in uids[1:]))
    resolve(inbox.expunge(None, None))
    assert resolve(inbox.deleted_usage()) == (0, 0)


def test_append_writes_dovecot_files(store: Store) -> None:
    inbox = store.open()
    uid = append(inbox, 1, frozenset({"\\Seen", "\\Flagged", "$Work"}))
    root = store.root()
    [name] = os.listdir(root / "cur")
    base, info = name.split(":2,")
    assert info == "FSa"
    assert f",S={len(message(1))},W={len(message(1))}" in base
    assert uidlist_records(root) == {base: uid}
    header = (root / "dovecot-uidlist").read_text().splitlines()[0].split()
    assert header[0] == "3" and header[1] == f"V{resolve(inbox.status()).uidvalidity}"
    assert (root / "dovecot-keywords").read_text() == "0 $Work\n"
    assert os.listdir(root / "tmp") == [] and os.listdir(root / "new") == []
    assert (root / INDEX).exists()


def test_folders_are_maildir_plus_plus(store: Store) -> None:
    account = store.account()
    resolve(account.create("Work/2024"))
    resolve(account.create("Entwürfe"))
    root = store.root()
    for entry in (".Work", ".Work.2024", ".Entw&APw-rfe"):
        assert (root / entry / "cur").is_dir()
        assert (root / entry / "maildirfolder").exists()
        assert (root / entry / "dovecot-uidlist").read_text().startswith("3 V")
    resolve(account.subscribe("Work/2024"))
    assert (root / "subscriptions").read_text() == "V\t2\n\nWork\t2024\n"


def test_internal_date_is_the_file_mtime(store: Store) -> None:
    inbox = store.open()
    when = datetime(2001, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=-7)))
    uid = append(inbox, 1, when=when)
    [name] = os.listdir(store.root() / "cur")
    assert os.stat(store.root() / "cur" / name).st_mtime == when.timestamp()
    meta = metas(inbox)[uid]
    assert meta.internaldate == when and meta.internaldate.utcoffset() == timedelta(hours=-7)
    store.restart()
    assert metas(store.open())[uid].internaldate.utcoffset() == timedelta(hours=-7)


def test_lf_files_are_served_with_crlf(store: Store) -> None:
    """Dovecot and MDAs store plain LF; IMAP sizes and content count CRLF."""
    inbox = store.open()
    deliver(store.root(), "1700000000.M1P1.mda", message(7, eol=b"\n"))
    [uid] = resolve(inbox.uids())
    assert resolve(inbox.content(uid)) == message(7)
    meta = metas(inbox)[uid]
    assert meta.size == len(message(7)) and meta.info.subject == "Note 7"


def test_more_keywords_than_letters_are_kept_in_the_index(store: Store) -> None:
    inbox = store.open()
    uid = append(inbox, 1)
    many = frozenset(f"kw{n:02d}" for n in range(30))
    resolve(inbox.store([uid], StoreMode.ADD, many, None))
    assert metas(inbox)[uid].flags == many
    assert len((store.root() / "dovecot-keywords").read_text().splitlines()) == 26
    store.restart()
    assert metas(store.open())[uid].flags == many


# -- other programs ------------------------------------------------------------------------


def test_delivery_into_new_is_picked_up(store: Store) -> None:
    inbox = store.open()
    recorder = Recorder()
    inbox.add_listener(recorder)
    first = append(inbox, 1)
    deliver(store.root(), "1700000000.M5P9.mda", message(2))
    uids = list(resolve(inbox.uids()))
    assert len(uids) == 2 and uids[0] == first
    assert recorder.events[-1] == ("added", [uids[1]], None)
    assert resolve(inbox.content(uids[1])) == message(2)
    # Moved to cur/ with an empty info, and given a UID in the uidlist.
    assert os.listdir(store.root() / "new") == []
    assert "1700000000.M5P9.mda:2," in os.listdir(store.root() / "cur")
    assert uidlist_records(store.root())["1700000000.M5P9.mda"] == uids[1]
    assert resolve(inbox.status()).recent == 2


def test_external_flag_change_and_delete(store: Store) -> None:
    inbox = store.open()
    recorder = Recorder()
    inbox.add_listener(recorder)
    uid = append(inbox, 1)
    other = append(inbox, 2)
    before = resolve(inbox.status()).highestmodseq
    cur = store.root() / "cur"
    [name] = [n for n in os.listdir(cur) if uidlist_records(store.root())[n.split(":")[0]] == uid]
    os.rename(cur / name, cur / (name + "RS"))  # another program: \Answered \Seen
    after = resolve(inbox.status())
    assert recorder.events[-1] == ("flags", [(uid, frozenset({"\\Answered", "\\Seen"}))], None)
    assert after.highestmodseq > before and after.unseen == 1
    assert metas(inbox)[uid].modseq == after.highestmodseq
    [gone] = [n for n in os.listdir(cur) if not n.endswith("RS")]
    os.unlink(cur / gone)
    assert list(resolve(inbox.uids())) == [uid]
    assert recorder.events[-1] == ("expunged", [other], None)
    changes = resolve(inbox.changes_since(before))
    assert [m.uid for m in changes.changed] == [uid] and list(changes.vanished) == [other]


def test_our_own_changes_are_not_reported_twice(store: Store) -> None:
    inbox = store.open()
    recorder = Recorder()
    inbox.add_listener(recorder)
    origin = object()
    uid = append(inbox, 1, origin=origin)
    resolve(inbox.store([uid], StoreMode.ADD, DELETED, origin))
    resolve(inbox.expunge(None, origin))
    resolve(inbox.status())  # reads the inotify echoes of our own renames
    assert [(kind, who) for kind, _, who in recorder.events] == [
        ("added", origin),
        ("flags", origin),
        ("expunged", origin),
    ]


def test_a_read_waits_for_other_programs_changes_not_for_another_sessions(
    store: Store,
) -> None:
    """A command is up to date with what other programs did before it: it waits for the
    lane while their changes are queued or being scanned, not while only another session
    of ours changes something (it sees the state before that change, as if it came
    first).  The echoes of our own renames are dropped without the lane when it is free."""
    inbox = store.open()
    uid = append(inbox, 1)
    append(inbox, 2)
    resolve(inbox.store([uid], StoreMode.ADD, SEEN, None))  # its echoes wait in the kernel
    lane = inbox.lane
    assert resolve(inbox.status()).messages == 2  # echoes dropped, the lane free: no scan
    resolve(lane.acquire())  # another session's change holds the lane
    first = Deferred.fromCoroutine(inbox.status())
    assert first.called  # nothing of others queued: no wait
    with inbox._scan_under_way():  # a scan holds it: what it finds is part of "now"
        scanned = Deferred.fromCoroutine(inbox.status())
        assert not scanned.called
    lane.release()
    assert scanned.called
    cur = store.root() / "cur"
    name = next(n for n in os.listdir(cur) if not n.endswith("S"))
    resolve(lane.acquire())
    os.rename(cur / name, cur / (name + "F"))  # another program's change
    later = Deferred.fromCoroutine(inbox.status())
    assert not later.called  # its event is queued: it waits for the lane, then scans
    lane.release()
    status = resolve(later)
    assert status.messages == 2
    flags = {m.uid: m.flags for m in resolve(inbox.fetch(resolve(inbox.uids())))}
    assert flags[uid + 1] == frozenset({"\\Flagged"})


def test_the_look_after_our_own_bulk_change_makes_no_read_wait(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full scan when the watch resumes after a bulk change of ours (the renames of a
    STORE of many) runs in the lane, and other sessions' reads go on meanwhile: while the
    watch was paused they saw no change of other programs either."""
    inbox = store.open()
    append(inbox, 1)
    scans: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = []
    io = inbox.io

    def held_scan(task: Any, *args: Any) -> Deferred[Any]:
        if task == inbox.disk.scan:
            scans.append((Deferred(), task, args))
            return scans[-1][0]
        return io(task, *args)

    monkeypatch.setattr(inbox, "io", held_scan)
    lane = inbox.lane
    resolve(lane.acquire())  # the renamer's
    resumed = Deferred.fromCoroutine(inbox.resume_watch(inbox.pause_watch()))
    assert len(scans) == 1 and not resumed.called  # the look is under way
    assert Deferred.fromCoroutine(inbox.status()).called
    waiting, task, args = scans[0]
    waiting.callback(task(*args))
    resolve(resumed)
    lane.release()


def test_echoes_are_compared_without_the_lane_only_while_few() -> None:
    """Events that agree with the state (a file where its entry has it, a name no entry
    has any more) are dropped; others stay for the lane's scan, and so do all of them
    beyond ``ECHO_CHECK`` (every command that comes would compare them again)."""
    entry = Entry(1, "base1", "cur/base1:2,S", SEEN, "", 1, 10, 0, 0)
    by_base = {"base1": entry}
    pending = PendingEvents()
    pending.note("cur/base1:2,S", True)
    pending.note("cur/base1:2,", False)
    pending.note("cur/base2:2,", True)
    pending.drop_echoes(by_base)
    assert pending.events == [("cur/base2:2,", True)]
    many = PendingEvents()
    for _ in range(ECHO_CHECK + 1):
        many.note("cur/base1:2,S", True)
    many.drop_echoes(by_base)
    assert len(many.events) == ECHO_CHECK + 1


def test_store_follows_a_file_renamed_meanwhile(store: Store) -> None:
    """Another program changes a file name between our reading and our rename."""
    inbox = store.open()
    uid = append(inbox, 1)
    cur = store.root() / "cur"
    [name] = os.listdir(cur)
    hub = store.backend._services.hub  # type: ignore[union-attr]
    hub.close()  # nobody watches now: the rename below goes unnoticed until ours fails
    os.rename(cur / name, cur / (name + "F"))
    result = resolve(inbox.store([uid], StoreMode.ADD, SEEN, None))
    assert [c.flags for c in result.changed][-1] == frozenset({"\\Seen", "\\Flagged"})
    assert os.listdir(cur) == [name + "FS"]


def test_a_folder_deleted_by_another_program(store: Store) -> None:
    account = store.account()
    resolve(account.create("Gone"))
    box = store.open("Gone")
    recorder = Recorder()
    box.add_listener(recorder)
    uid = append(box, 1)
    shutil.rmtree(store.root() / ".Gone")
    with pytest.raises(MailboxNotFound):
        resolve(box.uids())
    assert recorder.events[-1] == ("expunged", [uid], None)
    with pytest.raises(MailboxNotFound):
        store.open("Gone")


def test_a_folder_deleted_while_it_is_opened(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process deletes the folder while open() loads it, just before the load
    locks its uidlist (a NOTIFY session following a RENAME in another worker met this):
    MailboxNotFound, not the lock's FileNotFoundError, and nothing kept half-open."""
    from mailserv.backends.maildir.dotlock import DotLock

    account = store.account()
    resolve(account.create("Going"))
    append(store.open("Going"), 1)
    store.restart()  # the next open loads from disk, reconciling the uidlist
    folder = store.root() / ".Going"
    acquire = DotLock.acquire

    def deleted_first(self: DotLock) -> None:
        if self.path.startswith(str(folder)) and folder.exists():
            shutil.rmtree(folder)
        acquire(self)

    monkeypatch.setattr(DotLock, "acquire", deleted_first)
    with pytest.raises(MailboxNotFound):
        store.open("Going")
    monkeypatch.setattr(DotLock, "acquire", acquire)
    with pytest.raises(MailboxNotFound):
        store.open("Going")


def test_polling_without_inotify(tmp_path: Path) -> None:
    clock = Clock()
    made = Store(tmp_path, watch="poll", **{"poll-interval": "0.5"})
    made.start(reactor=clock)
    try:
        inbox = made.open()
        recorder = Recorder()
        inbox.add_listener(recorder)
        deliver(made.root(), "1700000000.M1P1.mda", message(1))
        clock.advance(0.5)  # the poll notices; the scan follows after a short delay
        clock.advance(0.1)
        assert [kind for kind, _, _ in recorder.events] == ["added"]
    finally:
        made.stop()


# -- the index -----------------------------------------------------------------------------


def test_index_survives_a_restart_with_modseqs(store: Store) -> None:
    inbox = store.open()
    uids = [append(inbox, n) for n in range(1, 4)]
    resolve(inbox.store(uids[:1], StoreMode.ADD, SEEN, None))
    resolve(inbox.store(uids[2:], StoreMode.ADD, DELETED, None))
    resolve(inbox.expunge(None, None))
    mark = resolve(inbox.status())
    before = {m.uid: (m.flags, m.modseq, m.size, m.internaldate) for m in metas(inbox).values()}
    store.restart()
    inbox = store.open()
    after = resolve(inbox.status())
    assert (after.uidvalidity, after.highestmodseq, after.uidnext) == (
        mark.uidvalidity,
        mark.highestmodseq,
        mark.uidnext,
    )
    assert {
        m.uid: (m.flags, m.modseq, m.size, m.internaldate) for m in metas(inbox).values()
    } == before
    assert list(resolve(inbox.changes_since(0)).vanished) == [uids[2]]


def test_missing_index_is_rebuilt_from_the_files(store: Store) -> None:
    inbox = store.open()
    uids = [append(inbox, n, SEEN if n == 2 else frozenset()) for n in range(1, 4)]
    store.stop()
    for suffix in ("", "-wal", "-shm"):
        (store.root() / (INDEX + suffix)).unlink(missing_ok=True)
    store.start()
    inbox = store.open()
    found = metas(inbox)
    assert sorted(found) == uids
    assert found[uids[1]].flags == SEEN and found[uids[0]].flags == frozenset()
    assert [found[u].info.subject for u in uids] == ["Note 1", "Note 2", "Note 3"]
    assert resolve(inbox.status()).highestmodseq >= 2


def test_index_records_of_an_older_format_are_parsed_again(store: Store) -> None:
    """MI1 records lack the normalised addresses SEARCH FROM/TO/... look in."""
    inbox = store.open()
    uid = append(inbox, 1)
    store.stop()
    old = replace(parse_message(message(1)), from_="Alice <alice@example.org>")
    with sqlite3.connect(store.root() / INDEX) as db:
        db.execute("UPDATE message SET info = ?", (b"MI1\n" + dumps(old)[len(MARKER) :],))
    db.close()
    store.start()
    info = metas(store.open())[uid].info
    assert info.from_.split("\n") == ["Alice <alice@example.org>", "Alice", "alice@example.org"]
    store.stop()
    with sqlite3.connect(store.root() / INDEX) as db:
        (record,) = db.execute("SELECT info FROM message").fetchone()
    db.close()
    assert bytes(record).startswith(MARKER)
    store.start()


def test_corrupt_index_is_rebuilt(store: Store) -> None:
    inbox = store.open()
    uid = append(inbox, 1)
    store.stop()
    for suffix in ("-wal", "-shm"):
        (store.root() / (INDEX + suffix)).unlink(missing_ok=True)
    (store.root() / INDEX).write_bytes(b"this is not a database" * 100)
    store.start()
    assert metas(store.open())[uid].info.subject == "Note 1"


def test_stale_index_of_another_uidvalidity_is_rebuilt(store: Store) -> None:
    inbox = store.open()
    append(inbox, 1)
    old_validity = resolve(inbox.status()).uidvalidity
    store.stop()
    path = store.root() / "dovecot-uidlist"
    header, *rest = path.read_text().splitlines()
    path.write_text("\n".join([header.replace(f" V{old_validity} ", " V77 "), *rest]) + "\n")
    store.start()
    inbox = store.open()
    assert resolve(inbox.status()).uidvalidity == 77
    assert [m.info.subject for m in metas(inbox).values()] == ["Note 1"]


def test_index_without_a_row_reindexes_the_file(store: Store) -> None:
    """A crash can lose the last index write; the file and its uidlist record remain."""
    inbox = store.open()
    uid = append(inbox, 1)
    store.stop()
    with sqlite3.connect(store.root() / INDEX) as db:
        db.execute("DELETE FROM message")
    store.start()
    inbox = store.open()
    assert list(resolve(inbox.uids())) == [uid]
    assert metas(inbox)[uid].info.subject == "Note 1"


def test_infos_load_lazily_and_damaged_ones_are_reparsed(store: Store) -> None:
    inbox = store.open()
    uid = append(inbox, 1)
    store.stop()
    with sqlite3.connect(store.root() / INDEX) as db:
        db.execute("UPDATE message SET info = ?", (b"garbage",))
    store.start()
    inbox = store.open()
    assert metas(inbox)[uid].info.subject == "Note 1"
    with sqlite3.connect(store.root() / INDEX) as db:
        [(info,)] = db.execute("SELECT info FROM message")
    assert info.startswith(MARKER)


def test_fetch_flags_loads_no_info(store: Store) -> None:
    """FETCH FLAGS of a whole mailbox after a restart (IFlagsMailbox) leaves the parsed
    messages in the index: no 100k infos made, kept and walked by the collector."""
    inbox = store.open()
    uids = [append(inbox, n, SEEN if n % 2 else frozenset()) for n in range(1, 6)]
    store.restart()
    inbox = store.open()
    light = resolve(inbox.fetch_flags(uids))
    assert [(m.uid, m.flags) for m in light] == [
        (uid, SEEN if n % 2 else frozenset()) for n, uid in enumerate(uids, start=1)
    ]
    assert all(m.info is NO_INFO for m in light)
    assert all(inbox._state.entries[uid].info is None for uid in uids)
    assert [m.info.subject for m in resolve(inbox.fetch(uids))] == [
        f"Note {n}" for n in range(1, 6)
    ]
    assert resolve(inbox.fetch_flags(uids[:1]))[0].info.subject == "Note 1"  # at hand now


def test_infos_read_from_the_index_are_decoded_when_used(store: Store) -> None:
    """After a restart the index's records are kept as read (one object each, not a tree
    of parts); FETCH ENVELOPE reads the envelope alone; another field decodes the rest."""
    inbox = store.open()
    uid = append(inbox, 1)
    expected = metas(inbox)[uid].info
    store.restart()
    inbox = store.open()
    info = metas(inbox)[uid].info
    assert isinstance(info, LazyInfo) and info._decoded is None
    assert info.envelope == expected.envelope and info._decoded is None
    assert info.subject == "Note 1" and info == expected


def test_save_dates_are_read_from_the_names_only_when_asked(store: Store) -> None:
    inbox = store.open()
    deliver(store.root(), "1700000000.M5P9.mda", message(1))
    deliver(store.root(), "mda-named.M6P9", message(2))
    dated, undated = metas(inbox).values()
    # FETCH makes no save date (a datetime per message) until one is read
    stored = MessageMeta.__dict__["savedate"]  # the dataclass's own slot
    for meta in (dated, undated):
        with pytest.raises(AttributeError):
            stored.__get__(meta)
    assert dated.savedate == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert undated.savedate is None


def test_recent_survives_a_restart(store: Store) -> None:
    inbox = store.open()
    first = append(inbox, 1)
    assert list(resolve(inbox.claim_recent())) == [first]
    second = append(inbox, 2)
    store.restart()
    inbox = store.open()
    assert list(resolve(inbox.claim_recent())) == [second]


# -- accounts ------------------------------------------------------------------------------


def test_special_use_folders_on_first_login(tmp_path: Path) -> None:
    made = Store(tmp_path, autocreate="true", sent="Sent Items", archive="")
    made.start()
    try:
        listed = {i.name: i.attributes for i in resolve(made.account().list_mailboxes())}
        assert listed == {
            "INBOX": frozenset(),
            "Drafts": frozenset({"\\Drafts"}),
            "Sent Items": frozenset({"\\Sent"}),
            "Junk": frozenset({"\\Junk"}),
            "Trash": frozenset({"\\Trash"}),
        }
        resolve(made.account().delete("Junk"))
        made.restart()  # not the first login any more: nothing comes back
        assert "Junk" not in {i.name for i in resolve(made.account().list_mailboxes())}
    finally:
        made.stop()


def test_create_with_special_use_travels_with_rename(store: Store) -> None:
    account = store.account()
    resolve(account.create("Old Mail", "\\Archive"))
    resolve(account.rename("Old Mail", "Attic/Old"))
    listed = {i.name: i.attributes for i in resolve(account.list_mailboxes())}
    assert listed["Attic/Old"] == frozenset({"\\Archive"}) and listed["Attic"] == frozenset()


def test_rename_keeps_uids_and_open_sessions(store: Store) -> None:
    account = store.account()
    resolve(account.create("a/b"))
    box = store.open("a/b")
    uid = append(box, 1)
    validity = resolve(box.status()).uidvalidity
    resolve(account.rename("a", "z"))
    assert box.name == "z/b"
    assert list(resolve(box.uids())) == [uid]
    assert resolve(box.status()).uidvalidity == validity
    assert resolve(box.content(uid)) == message(1)
    assert (store.root() / ".z.b" / "cur").is_dir() and not (store.root() / ".a.b").exists()


def test_noselect_placeholder_after_delete(store: Store) -> None:
    account = store.account()
    resolve(account.create("p/q"))
    resolve(account.delete("p"))
    assert (store.root() / ".p").is_dir() and not (store.root() / ".p" / "cur").exists()
    resolve(account.create("p"))
    assert (store.root() / ".p" / "cur").is_dir()
    with pytest.raises(MailboxExists):
        resolve(account.create("p"))


@pytest.mark.parametrize("name", ["../evil", "a/../../b", "/abs", "a.b", "..", "x\x00y", "x\ty"])
def test_names_never_leave_the_root(store: Store, name: str) -> None:
    account = store.account()
    for call in (
        lambda: account.create(name),
        lambda: account.open(name),
        lambda: account.delete(name),
        lambda: account.rename("INBOX", name),
    ):
        with pytest.raises(InvalidMailboxName):
            resolve(call())
    assert sorted(os.listdir(store.data_dir)) == ["mail"]


@pytest.mark.parametrize("name", ["cur", "new", "tmp", "x/cur"])
def test_maildir_words_as_names_do_not_collide(store: Store, name: str) -> None:
    account = store.account()
    inbox = store.open()
    uid = append(inbox, 1)
    resolve(account.create(name))
    append(store.open(name), 2)
    assert list(resolve(inbox.uids())) == [uid]
    assert len(os.listdir(store.root() / "cur")) == 1
    folder = store.root() / ("." + name.replace("/", "."))
    assert len(os.listdir(folder / "cur")) == 1


def test_root_under_the_home_directory(tmp_path: Path) -> None:
    options = {"root": "~/Maildir", "io-threads": "0"}
    built = factory.build(options, str(tmp_path / "data"), global_reactor)
    assert IHomeLookupConsumer.providedBy(built)
    homes = {"ann": str(tmp_path / "home" / "ann")}
    built.set_home_lookup(homes.get)
    resolve(built.start())
    try:
        resolve(built.account("ann"))
        assert (tmp_path / "home" / "ann" / "Maildir" / "cur").is_dir()
        assert (tmp_path / "home" / "ann" / "Maildir" / ".Sent" / "cur").is_dir()
        with pytest.raises(Exception, match="home"):
            resolve(built.account("nobody-known"))
    finally:
        resolve(built.stop())


def test_sessions_share_an_account_until_the_last_logs_out(tmp_path: Path) -> None:
    """The account stays ``linger`` seconds after its last session: a login meanwhile finds
    its mailboxes loaded; after that, its files and watches are released."""
    clock = Clock()
    store = Store(tmp_path, linger="30")
    backend = store.start(clock)
    try:
        first = resolve(backend.account("alice"))
        second = resolve(backend.account("alice"))
        assert first is second
        box = resolve(first.open("INBOX"))
        resolve(first.close())
        resolve(second.close())
        clock.advance(29)
        assert not box.closed
        again = resolve(backend.account("alice"))
        assert again is first  # back within the linger: nothing was reloaded
        resolve(again.close())
        clock.advance(29)
        assert not box.closed  # the linger started over at the last logout
        clock.advance(2)
        assert box.closed  # the last session left 31 s ago: files and watches released
        assert resolve(backend.account("alice")) is not first
    finally:
        store.stop()


def test_no_linger_releases_at_the_last_logout(tmp_path: Path) -> None:
    store = Store(tmp_path, linger="0")
    backend = store.start()
    try:
        account = resolve(backend.account("alice"))
        box = resolve(account.open("INBOX"))
        resolve(account.close())
        assert box.closed
    finally:
        store.stop()


def test_now_is_the_default_internal_date(store: Store) -> None:
    inbox = store.open()
    uid = append(inbox, 1)
    assert abs(metas(inbox)[uid].internaldate - datetime.now(UTC)) < timedelta(minutes=1)


def test_shared_root_permissions_are_inherited(tmp_path: Path) -> None:
    """An operator's group-shared root (setgid 2770): new files and directories follow it."""
    made = Store(tmp_path)
    root = made.root()
    root.mkdir(parents=True)
    group = os.getgroups()[-1] if os.getgroups() else os.getegid()
    os.chown(root, -1, group)
    os.chmod(root, 0o2770)
    made.start()
    try:
        inbox = made.open()
        append(inbox, 1, frozenset({"$Work"}))
        resolve(made.account().create("Shared"))
        resolve(made.account().subscribe("Shared"))
        for path in [
            root / "cur",
            root / ".Shared",
            root / ".Shared" / "new",
            *(root / "cur").iterdir(),
            root / "dovecot-uidlist",
            root / "dovecot-keywords",
            root / "subscriptions",
            root / ".Shared" / "dovecot-uidlist",
        ]:
            st = path.stat()
            expected = 0o2770 if path.is_dir() else 0o660
            assert (st.st_mode & 0o7777, st.st_gid) == (expected, group), path
    finally:
        made.stop()


def test_private_root_stays_private(store: Store) -> None:
    append(store.open(), 1)
    assert (store.root() / "cur").stat().st_mode & 0o777 == 0o700
    [message_file] = (store.root() / "cur").iterdir()
    assert message_file.stat().st_mode & 0o777 == 0o600


def test_a_large_index_is_built_with_helper_processes(store: Store, monkeypatch: Any) -> None:
    """Many files to parse at once (an existing Maildir, a lost index): helpers share it."""
    from mailserv.backends.maildir import bulk

    monkeypatch.setattr(bulk, "BULK_MIN", 10)
    monkeypatch.setattr(bulk, "helpers_for", lambda count: 2)
    inbox = store.open()
    recorder = Recorder()
    inbox.add_listener(recorder)
    for n in range(30):
        deliver(store.root(), f"1700000000.M{n}P1.mda", message(n, eol=b"\n"))
    uids = list(resolve(inbox.uids()))
    assert len(uids) == 30 and recorder.events == [("added", uids, None)]
    subjects = sorted(m.info.subject for m in metas(inbox).values())
    assert subjects == sorted(f"Note {n}" for n in range(30))
    assert {m.size for m in metas(inbox).values()} == {len(message(n)) for n in range(30)}


def test_parse_helpers_take_all_the_parsing(tmp_path: Path, monkeypatch: Any) -> None:
    """The server's own interpreter parses nothing while helpers work (it holds the lock
    every session needs)."""
    from mailserv.backends.maildir import bulk

    monkeypatch.setattr(bulk, "helpers_for", lambda count: 2)
    (tmp_path / "cur").mkdir()
    files = []
    for n in range(9):
        (tmp_path / "cur" / f"b{n}").write_bytes(message(n))
        files.append((f"b{n}", f"cur/b{n}"))
    done: list[tuple[str, str]] = []
    parsed = bulk.parse_shared(str(tmp_path), files, done.extend)
    assert done == []
    assert sorted(p[0] for p in parsed) == sorted(base for base, _ in files)


def test_parse_helpers_that_fail_leave_the_work_here(tmp_path: Path, monkeypatch: Any) -> None:
    from mailserv.backends.maildir import bulk

    monkeypatch.setattr(bulk, "helpers_for", lambda count: 2)
    monkeypatch.setattr(bulk, "_HELPER", "import sys; sys.exit(3)")
    done: list[tuple[str, str]] = []
    files = [(f"b{n}", f"cur/b{n}") for n in range(9)]
    assert bulk.parse_shared(str(tmp_path), files, done.extend) == []
    assert sorted(done) == sorted(files)


def test_bulk_changes_pause_the_watch_and_rescan(store: Store, monkeypatch: Any) -> None:
    """Thousands of own renames would flood inotify with echoes: the watch is paused and
    the mailbox rescanned after, which still finds what others did meanwhile."""
    from mailserv.backends.maildir import mailbox

    monkeypatch.setattr(mailbox, "QUIET_THRESHOLD", 2)
    inbox = store.open()
    recorder = Recorder()
    inbox.add_listener(recorder)
    uids = [append(inbox, n) for n in range(3)]
    deliver(store.root(), "1700000000.M9P9.mda", message(9))  # not looked at yet
    resolve(inbox.store(uids, StoreMode.ADD, SEEN, None))
    kinds = [kind for kind, _, _ in recorder.events]
    assert kinds[:3] == ["added"] * 3 and "flags" in kinds and kinds.count("added") == 4
    resolve(inbox.store(uids, StoreMode.ADD, DELETED, None))
    assert len(resolve(inbox.expunge(None, None))) == 3
    deliver(store.root(), "1700000000.M10P9.mda", message(10))
    assert len(resolve(inbox.uids())) == 2  # watching again


def test_inotify_queue_overflow_leads_to_a_rescan(store: Store) -> None:
    inbox = store.open()
    recorder = Recorder()
    inbox.add_listener(recorder)
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 40_000:
        pytest.skip("inotify queue too long to overflow quickly here")
    new = store.root() / "new"
    for n in range(limit // 2 + 100):  # two events each, never read meanwhile
        path = new / f"churn{n}"
        path.write_bytes(b"")
        path.unlink()
    deliver(store.root(), "1700000000.M1P1.late", message(1))  # its event is lost
    assert len(resolve(inbox.uids())) == 1
    assert [kind for kind, _, _ in recorder.events] == ["added"]


def test_a_mailbox_inotify_will_not_watch_is_polled(tmp_path: Path, monkeypatch: Any) -> None:
    """Past the kernel's limit on watches, mailboxes are still noticed (by polling)."""
    from twisted.internet import reactor

    from mailserv.backends.maildir.files import make_maildir
    from mailserv.backends.maildir.watch import InotifyHub

    make_maildir(str(tmp_path), folder=False)
    hub = InotifyHub(reactor)
    try:

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise OSError(28, "No space left on device")  # what ENOSPC looks like

        monkeypatch.setattr(hub._notifier, "watch", refuse)
        heard: list[tuple[str | None, bool]] = []
        handle = hub.add(str(tmp_path), lambda rel, appeared: heard.append((rel, appeared)))
        poller = hub._poller
        assert poller is not None
        deliver(tmp_path, "1700000000.M1P1.x", message(1))
        poller._check_all()
        assert heard == [(None, True)]
        hub.remove(handle)
        assert not poller._registrations
    finally:
        hub.close()


def test_another_process_changes_are_taken_from_the_index(tmp_path: Path) -> None:
    """``--workers N``: a message or flag change one process made and indexed is taken from
    the index by another process sharing the mailbox: the same modseq in both and no second
    write; and a change of the second process takes a modseq above the first's."""
    one, two = Store(tmp_path), Store(tmp_path)
    one.start()
    two.start()
    try:
        mine, theirs = one.open(), two.open()
        resolve(theirs.status())
        db = sqlite3.connect(one.root() / INDEX)

        def writes() -> int:
            """Changes as our connection sees them: it moves when another one commits."""
            return int(db.execute("PRAGMA data_version").fetchone()[0])

        first = append(mine, 1)
        before = writes()
        resolve(theirs.catch_up())
        assert writes() == before
        resolve(mine.store([first], StoreMode.ADD, SEEN, None))
        before = writes()
        resolve(theirs.catch_up())
        assert writes() == before
        [here] = resolve(mine.fetch([first]))
        [there] = resolve(theirs.fetch([first]))
        assert (there.flags, there.modseq) == (here.flags, here.modseq)
        assert there.flags == SEEN
        second = append(theirs, 2)
        [later] = resolve(theirs.fetch([second]))
        assert later.modseq > here.modseq
        db.close()
    finally:
        two.stop()
        one.stop()


def test_a_big_copy_goes_in_a_few_at_a_time(store: Store, monkeypatch: Any) -> None:
    """The entries of a COPY of many go into the target ``ADD_STEP`` at a time, the
    reactor turning between (all at once held it 15-30 ms at 100k): a reader in between
    sees the lowest of the new UIDs, with UIDNEXT and HIGHESTMODSEQ above them, as if
    they had come one after another; the listeners hear of them all at the end, in order."""
    from mailserv.backends.maildir import state
    from mailserv.interfaces import NewMessage

    monkeypatch.setattr(state, "ADD_STEP", 50, raising=False)
    count = 300
    assert store.backend is not None
    store.backend.turns.length = 0  # every pause gives way
    resolve(store.account().create("Dest"))
    inbox, dest = store.open(), store.open("Dest")
    new = [NewMessage(message(n), frozenset(), None) for n in range(count)]
    uids = [r.uid for r in testing.resolve(inbox.append_many(new, None))]
    recorder = Recorder()
    dest.add_listener(recorder)
    seen: list[tuple[tuple[int, ...], int, int]] = []

    def look() -> None:
        known = dest._state
        seen.append((known.uids(), known.uidnext, known.modseq))
        if len(seen[-1][0]) < count:
            global_reactor.callLater(0, look)

    global_reactor.callLater(0, look)
    result = testing.resolve(inbox.copy(uids, "Dest", None))
    copies = [new for _, new in result.pairs]
    assert len(copies) == count
    between = [(listed, nexts, modseq) for listed, nexts, modseq in seen if 0 < len(listed) < count]
    assert len(between) >= 2  # a turn after each step but the last
    for listed, uidnext, modseq in between:
        assert list(listed) == copies[: len(listed)] and uidnext == listed[-1] + 1
        assert modseq >= max(dest._state.entries[uid].modseq for uid in listed)
    assert recorder.events == [("added", copies, None)]
