"""The maildir backend's on-disk formats, piece by piece: names, file names, dovecot-uidlist,
dovecot-keywords, dot-locks, UIDVALIDITY allocation, subscriptions and the options."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailserv.backends.maildir import filenames, names, uidvalidity
from mailserv.backends.maildir.dotlock import DotLock, LockTimeout
from mailserv.backends.maildir.keywords import Keywords
from mailserv.backends.maildir.options import parse_options, resolve_root
from mailserv.backends.maildir.uidlist import UidList
from mailserv.errors import BackendOptionError, BackendUnavailable, InvalidMailboxName

# -- mailbox names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "entry"),
    [
        ("INBOX", ""),
        ("Sent", ".Sent"),
        ("a/b/c", ".a.b.c"),
        ("Entwürfe", ".Entw&APw-rfe"),
        ("R&D", ".R&-D"),
        ("INBOX/kid", ".INBOX.kid"),
        ("new", ".new"),
        ("cur/tmp", ".cur.tmp"),
        ("back\\slash ~", ".back\\slash ~"),
    ],
)
def test_folder_directories_round_trip(name: str, entry: str) -> None:
    assert names.folder_dir(names.check_name(name)) == entry
    if entry:
        assert names.folder_name(entry) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "..",
        "../etc",
        "a/../b",
        "/abs",
        "a//b",
        "a/",
        "a.b",
        ".hidden",
        "x\x00y",
        "x\ny",
        "x\x7f",
    ],
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidMailboxName):
        names.check_name(name)


def test_overlong_names_are_refused() -> None:
    names.check_name("x" * 254)
    with pytest.raises(InvalidMailboxName, match="too long"):
        names.check_name("x" * 255)
    with pytest.raises(InvalidMailboxName):
        names.check_name("\u00e9" * 100)  # 100 characters, but far more in modified UTF-7


@pytest.mark.parametrize("entry", [".", "..", "cur", "file", ".a..b", ".&Jjo", ".INBOX", ".a.b."])
def test_root_entries_that_are_no_folders(entry: str) -> None:
    assert names.folder_name(entry) is None


def test_subscriptions_file_is_dovecots_version_2() -> None:
    data = names.encode_subscriptions(["Sent", "a/b", "Entwürfe", "Sent"])
    assert data == b"V\t2\n\nEntw&APw-rfe\nSent\na\tb\n"
    assert sorted(names.decode_subscriptions(data)) == ["Entwürfe", "Sent", "a/b"]
    assert names.decode_subscriptions(b"Old\nx/y\n") == ["Old", "x/y"]  # version 1
    assert names.decode_subscriptions(b"") == []


# -- file names ----------------------------------------------------------------------------


def test_file_names_and_flag_letters() -> None:
    assert filenames.split("123.M1P2.host,S=5,W=6:2,FRSa") == ("123.M1P2.host,S=5,W=6", "FRSa")
    assert filenames.split("123.M1P2.host") == ("123.M1P2.host", "")
    assert filenames.split("123.x:1,experimental") == ("123.x", "")
    assert filenames.sizes("123.M1.host,S=5,W=6") == (5, 6)
    assert filenames.sizes("123.M1.host") == (None, None)
    letters = filenames.info_letters(
        {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Work", "$NoLetter"},
        {"$Work": "b"},
        keep="P",
    )
    assert letters == "DFPRSTb"


def test_unique_bases_carry_sizes() -> None:
    maker = filenames.BaseNames()
    first, second = maker.new(10, 12), maker.new(10, 12)
    assert first != second
    assert filenames.sizes(first) == (10, 12)
    assert ":" not in first and "/" not in first


# -- dovecot-uidlist -----------------------------------------------------------------------


def test_uidlist_reads_version_3_with_extension_fields(tmp_path: Path) -> None:
    (tmp_path / "dovecot-uidlist").write_text(
        "3 V1700000000 N4 G0123456789abcdef0123456789abcdef\n"
        "1 :1700.M1P1.h,S=5,W=6\n"
        "2 W1432 :1700.M2P1.h\n"
        "3 :1700.M3P1.h:2,S\n"
    )
    uidlist = UidList(str(tmp_path), fsync=False)
    assert uidlist.refresh()
    assert uidlist.uidvalidity == 1700000000
    assert uidlist.guid == "0123456789abcdef0123456789abcdef"
    assert uidlist.records == {"1700.M1P1.h,S=5,W=6": 1, "1700.M2P1.h": 2, "1700.M3P1.h": 3}
    assert uidlist.next_uid == 4
    assert not uidlist.refresh()


def test_uidlist_next_uid_follows_appended_records(tmp_path: Path) -> None:
    """Dovecot appends records without rewriting the header's N."""
    path = tmp_path / "dovecot-uidlist"
    path.write_text("3 V7 N3 Gabc\n1 :a\n2 :b\n")
    uidlist = UidList(str(tmp_path), fsync=False)
    uidlist.refresh()
    with path.open("a") as f:
        f.write("3 :c\n4 :d\n5 :e")  # the last line is still being written
    assert uidlist.refresh()
    assert uidlist.records == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert uidlist.next_uid == 5
    with path.open("a") as f:
        f.write("\n")
    uidlist.refresh()
    assert uidlist.records["e"] == 5 and uidlist.next_uid == 6


def test_uidlist_notices_a_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "dovecot-uidlist"
    path.write_text("3 V7 N3 Gabc\n1 :a\n2 :b\n")
    uidlist = UidList(str(tmp_path), fsync=False)
    uidlist.refresh()
    replacement = tmp_path / "new-list"
    replacement.write_text("3 V7 N9 Gabc\n2 :b\n8 :h\n")
    os.replace(replacement, path)
    assert uidlist.refresh()
    assert uidlist.records == {"b": 2, "h": 8}
    assert uidlist.next_uid == 9
    path.unlink()
    assert uidlist.refresh() and not uidlist.exists and uidlist.records == {}


def test_uidlist_reads_version_1(tmp_path: Path) -> None:
    (tmp_path / "dovecot-uidlist").write_text("1 1234 10\n3 1700.M3P1.h\n")
    uidlist = UidList(str(tmp_path), fsync=False)
    uidlist.refresh()
    assert (uidlist.uidvalidity, uidlist.next_uid) == (1234, 10)
    assert uidlist.records == {"1700.M3P1.h": 3}


def test_uidlist_create_add_and_rewrite(tmp_path: Path) -> None:
    uidlist = UidList(str(tmp_path), fsync=True)
    with uidlist.lock() as lock:
        uidlist.create(lock, 4242)
    assert not (tmp_path / "dovecot-uidlist.lock").exists()
    with uidlist.lock():
        assert uidlist.add(["a", "b", "c"]) == [1, 2, 3]
    text = (tmp_path / "dovecot-uidlist").read_text()
    header, *records = text.splitlines()
    assert header.startswith("3 V4242 N1 G") and len(header.split()[3]) == 33
    assert records == ["1 :a", "2 :b", "3 :c"]
    lock = uidlist.lock()
    lock.acquire()
    uidlist.rewrite(lock, ["c"])
    assert (tmp_path / "dovecot-uidlist").read_text().splitlines()[1:] == ["3 :c"]
    assert uidlist.records == {"c": 3} and uidlist.next_uid == 4
    assert not (tmp_path / "dovecot-uidlist.lock").exists()


def test_uidlist_add_ends_a_half_written_line(tmp_path: Path) -> None:
    """A writer killed mid-line leaves garbage; the next record must still be its own line."""
    path = tmp_path / "dovecot-uidlist"
    path.write_text("3 V7 N2 Gabc\n1 :a\n2 :b-trunc")
    uidlist = UidList(str(tmp_path), fsync=False)
    with uidlist.lock():
        [uid] = uidlist.add(["c"])
    assert path.read_text().endswith(f"\n{uid} :c\n")
    assert uidlist.records["c"] == uid and uid >= 2


# -- dovecot-keywords ----------------------------------------------------------------------


def test_keywords_take_free_letters(tmp_path: Path) -> None:
    (tmp_path / "dovecot-keywords").write_text("0 $Label1\n2 Junk\n")
    keywords = Keywords(str(tmp_path), fsync=False)
    keywords.refresh()
    assert keywords.flags("Sab") == (frozenset({"\\Seen", "$Label1"}), "b")
    keywords.ensure({"\\Seen", "$Work", "Junk", "$Home"})
    assert (tmp_path / "dovecot-keywords").read_text() == "0 $Label1\n1 $Home\n2 Junk\n3 $Work\n"
    assert keywords.by_name == {"$Label1": "a", "$Home": "b", "Junk": "c", "$Work": "d"}


def test_keywords_beyond_26_letters_get_none(tmp_path: Path) -> None:
    keywords = Keywords(str(tmp_path), fsync=False)
    keywords.ensure({f"kw{n:02d}" for n in range(30)})
    assert len(keywords.by_name) == 26
    assert "kw29" not in keywords.by_name


# -- dot-locks -----------------------------------------------------------------------------


def test_dotlock_is_exclusive_and_times_out(tmp_path: Path) -> None:
    target = str(tmp_path / "file")
    first = DotLock(target)
    first.acquire()
    assert Path(target + ".lock").read_text().startswith(f"{os.getpid()}:")
    second = DotLock(target, timeout=0.1)
    with pytest.raises(LockTimeout):
        second.acquire()
    first.release()
    with second:
        assert second.held
    assert not Path(target + ".lock").exists()


def test_dotlock_of_a_dead_process_is_broken_at_once(tmp_path: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(child.stdout)
    target = str(tmp_path / "file")
    Path(target + ".lock").write_text(f"{dead_pid}:{os.uname().nodename}")
    started = time.monotonic()
    with DotLock(target, timeout=5):
        assert time.monotonic() - started < 1


def test_dotlock_whose_pid_was_reused_is_broken(tmp_path: Path) -> None:
    """The pid in the lock now belongs to a process that started after the lock was taken."""
    target = str(tmp_path / "file")
    lock_file = Path(target + ".lock")
    newcomer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock_file.write_text(f"{newcomer.pid}:{os.uname().nodename}")
        taken = time.time() - 60
        os.utime(lock_file, (taken, taken))
        with DotLock(target, timeout=5, stale=3600):
            pass
    finally:
        newcomer.kill()
        newcomer.wait()


def test_empty_dotlock_is_broken_after_a_grace_period(tmp_path: Path) -> None:
    """A holder killed between creating the lock and writing its name into it."""
    target = str(tmp_path / "file")
    lock_file = Path(target + ".lock")
    lock_file.write_bytes(b"")
    with pytest.raises(LockTimeout):
        DotLock(target, timeout=0.2, stale=3600).acquire()  # maybe being written right now
    taken = time.time() - 10
    os.utime(lock_file, (taken, taken))
    with DotLock(target, timeout=5, stale=3600):
        pass


def test_replace_keeps_the_holder_named_until_the_rename(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"old")
    lock = DotLock(str(target))
    lock.acquire()
    lock.replace(b"new" * 50_000, fsync=True)
    assert target.read_bytes() == b"new" * 50_000
    assert not lock.held and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_dotlock_of_a_live_holder_is_respected(tmp_path: Path) -> None:
    target = str(tmp_path / "file")
    Path(target + ".lock").write_text(f"{os.getppid()}:{os.uname().nodename}")
    with pytest.raises(LockTimeout):
        DotLock(target, timeout=0.2, stale=3600).acquire()


def test_dotlock_untouched_for_long_is_broken(tmp_path: Path) -> None:
    target = str(tmp_path / "file")
    lock_file = Path(target + ".lock")
    lock_file.write_text("")  # another host's lock, or one that holds no owner
    old = time.time() - 600
    os.utime(lock_file, (old, old))
    with DotLock(target, timeout=5, stale=120):
        pass


def test_dotlock_replace_swaps_content_atomically(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("old")
    with DotLock(str(target)) as lock:
        lock.replace(b"new", fsync=True)
        assert not lock.held
    assert target.read_text() == "new"
    assert not Path(str(target) + ".lock").exists()


# -- UIDVALIDITY ---------------------------------------------------------------------------


def test_uidvalidity_never_repeats(tmp_path: Path) -> None:
    values = [uidvalidity.allocate(str(tmp_path)) for _ in range(5)]
    assert values == sorted(set(values)) and values[0] >= int(time.time()) - 5
    assert (tmp_path / "dovecot-uidvalidity").read_text() == f"{values[-1]:08x}"
    markers = [p.name for p in tmp_path.iterdir() if p.name.startswith("dovecot-uidvalidity.")]
    assert markers == [f"dovecot-uidvalidity.{values[-1]:08x}"]
    (tmp_path / "dovecot-uidvalidity").unlink()  # lost: the marker still blocks reuse
    assert uidvalidity.allocate(str(tmp_path)) not in values


# -- options and roots ---------------------------------------------------------------------


def test_options_defaults_and_values() -> None:
    settings = parse_options({})
    assert settings.root == "mail/%u/Maildir" and settings.fsync and settings.autocreate
    assert dict(settings.special) == {
        "\\Drafts": "Drafts",
        "\\Sent": "Sent",
        "\\Junk": "Junk",
        "\\Trash": "Trash",
        "\\Archive": "Archive",
    }
    custom = parse_options(
        {"fsync": "no", "sent": "Sent Items", "junk": "", "io-threads": "0", "watch": "poll"}
    )
    assert not custom.fsync and custom.io_threads == 0 and custom.watch == "poll"
    assert custom.special["\\Sent"] == "Sent Items" and "\\Junk" not in custom.special


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("root", "/var/mail/%x"),
        ("root", "/var/~/mail"),
        ("root", ""),
        ("fsync", "maybe"),
        ("sent", "a.b"),
        ("trash", "INBOX"),
        ("io-threads", "-1"),
        ("poll-interval", "soon"),
        ("watch", "fanotify"),
        ("colour", "blue"),
    ],
)
def test_bad_options_name_the_key(key: str, value: str) -> None:
    with pytest.raises(BackendOptionError, match=key):
        parse_options({key: value})


def test_root_templates() -> None:
    homes = {"ann@example.org": "/home/ann"}.get
    assert resolve_root("mail/%u/Maildir", "bob", "/data", None) == "/data/mail/bob/Maildir"
    assert resolve_root("/v/%d/%n/%%", "ann@example.org", "/d", None) == "/v/example.org/ann/%"
    assert resolve_root("~/Maildir", "ann@example.org", "/d", homes) == "/home/ann/Maildir"
    assert resolve_root("~", "ann@example.org", "/d", homes) == "/home/ann"
    with pytest.raises(BackendUnavailable, match="home"):
        resolve_root("~/Maildir", "bob", "/d", homes)


@pytest.mark.parametrize("user", ["..", ".", "a/b", "x@../..", "../x@y", ""])
def test_user_names_cannot_escape_the_template(user: str) -> None:
    with pytest.raises(BackendUnavailable):
        resolve_root("/var/mail/%d/%n/%u", user, "/d", None)
