"""``mailserv import``: mbox files, Maildir++ trees written by a real Dovecot, a real Dovecot
over IMAP (with the user's password and with a master user), interruption and resumption,
and bad input.  The CLI runs as a subprocess; what it stored is read back from a real
mailserv over IMAP and by ``mailserv export``."""

from __future__ import annotations

import imaplib
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dovecot
import pytest
import transferkit as kit

from mailserv.admin import cli, maildirs
from mailserv.admin.transfer import TransferError

ROUND_TRIP = 5000
"""Issue 12's round trip: a generated mbox of 5,000 messages in and out byte-identical (about
13 s per backend on this machine; bench/importexport.py times it)."""


def _store(tmp_path: Path, backend: str) -> tuple[Path, list[str]]:
    data_dir = tmp_path / "data"
    kit.add_user(data_dir, "alice")
    return data_dir, ["--data-dir", str(data_dir), *kit.backend_args(kit.SPECS[backend])]


@pytest.mark.parametrize("backend", kit.selected(["maildir", "sql-sqlite"]))
def test_mbox_round_trip(tmp_path: Path, backend: str) -> None:
    messages = kit.message_list(ROUND_TRIP)
    source = tmp_path / "source.mbox"
    kit.write_mbox(source, messages)
    _, where = _store(tmp_path, backend)

    done = kit.cli("import", "alice", str(source), "--folder", "Old/Mail", *where)
    assert f"imported {ROUND_TRIP} messages" in done.stdout

    # The flags and dates come back in the Status/X-Status/X-Keywords and From lines.
    out = tmp_path / "out"
    kit.cli("export", "alice", str(out), "--format", "mbox", *where)
    assert (out / "Old" / "Mail.mbox").read_bytes() == source.read_bytes()


@pytest.fixture(scope="module")
def dovecot_user() -> Iterator[dovecot.Dovecot]:
    """A Dovecot with Maildir++ folders (``.Work.Projects``) holding mail of ``carol``, with
    flags, keywords and internal dates set over IMAP; ``boss`` is a master user."""
    if not dovecot.available():
        pytest.skip("dovecot is not installed")
    server = dovecot.Dovecot(layout="")
    server.add_user("carol", kit.PASSWORD)
    server.add_master_user("boss", "boss-pw")
    server.start()
    try:
        client = imaplib.IMAP4(server.host, server.imap_port)
        client.login("carol", kit.PASSWORD)
        client.create("Work.Projects")
        for index, (data, flags, when) in enumerate(kit.message_list(12, seed=3)):
            folder = "INBOX" if index % 2 else "Work.Projects"
            shown = "(" + " ".join(sorted(flags)) + ")"
            typ, _ = client.append(folder, shown, imaplib.Time2Internaldate(when), data)
            assert typ == "OK"
        client.logout()
        yield server
    finally:
        server.stop()


def _expected(index_parity: int) -> list[tuple[frozenset[str], datetime]]:
    return [
        (f, d) for i, (_, f, d) in enumerate(kit.message_list(12, seed=3)) if i % 2 == index_parity
    ]


def _check_carol(data_dir: Path, folder_prefix: str = "", serve: bool = False) -> None:
    """Carol's mail exported as mbox (bodies, flags and dates); with ``serve`` also as a
    real mailserv shows it over IMAP."""
    out = data_dir.parent / "out"
    where = ["--data-dir", str(data_dir), *kit.backend_args(kit.SPECS["maildir"])]
    kit.cli("export", "alice", str(out), "--format", "mbox", *where)
    inbox, projects = folder_prefix or "INBOX", f"{folder_prefix}/Work/Projects".lstrip("/")
    messages = kit.message_list(12, seed=3)
    for name, parity in ((inbox, 1), (projects, 0)):
        wanted = [kit.mbox.entry(*m) for i, m in enumerate(messages) if i % 2 == parity]
        assert (out / f"{name}.mbox").read_bytes() == b"".join(wanted)
    if serve:
        with kit.serving(data_dir, kit.SPECS["maildir"]) as server:
            client = kit.login(server, "alice")
            assert kit.folder_state(client, inbox) == _expected(1)
            assert kit.folder_state(client, projects) == _expected(0)
            client.logout()


@pytest.mark.one_backend
def test_dovecot_maildir(tmp_path: Path, dovecot_user: dovecot.Dovecot) -> None:
    maildir = dovecot_user.home("carol") / "Maildir"
    assert (maildir / ".Work.Projects" / "dovecot-keywords").exists()
    data_dir, where = _store(tmp_path, "maildir")
    done = kit.cli("import", "alice", str(maildir), *where)
    assert "imported 12 messages into 2 folders" in done.stdout
    _check_carol(data_dir, serve=True)


FS_FOLDERS = ("INBOX", "Work", "Work/Projects", "Caf\u00e9/Notes")
"""Folders of the ``LAYOUT=fs`` tree, nested, one with a name Dovecot writes in modified
UTF-7 (``Caf&AOk-``); message ``i`` of ``kit.message_list(16, seed=5)`` is in folder ``i % 4``."""


@pytest.fixture(scope="module")
def dovecot_fs_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the ``LAYOUT=fs:DIRNAME=mAildir`` tree a real Dovecot wrote for ``dana``:
    ``Work/Projects/mAildir/cur/...``, keywords in each folder's ``dovecot-keywords``."""
    if not dovecot.available():
        pytest.skip("dovecot is not installed")
    server = dovecot.Dovecot(layout="fs")
    server.add_user("dana", kit.PASSWORD)
    server.start()
    copy = tmp_path_factory.mktemp("fs") / "Maildir"
    try:
        client = imaplib.IMAP4(server.host, server.imap_port)
        client.login("dana", kit.PASSWORD)
        names = [name.encode("utf-7").decode().replace("+", "&") for name in FS_FOLDERS]
        for name in names[1:]:
            assert client.create(name)[0] == "OK"
        for index, (data, flags, when) in enumerate(kit.message_list(16, seed=5)):
            shown = "(" + " ".join(sorted(flags)) + ")"
            when_text = imaplib.Time2Internaldate(when)
            assert client.append(names[index % 4], shown, when_text, data)[0] == "OK"
        client.logout()
        shutil.copytree(server.home("dana") / "Maildir", copy)  # modification times kept
    finally:
        server.stop()
    return copy


def _without_dirname(tree: Path, into: Path) -> Path:
    """The same tree as plain ``LAYOUT=fs`` (no DIRNAME): each folder's ``mAildir/*`` moved
    up into the folder's directory, INBOX's into the root."""
    shutil.copytree(tree, into)
    for inner in sorted(into.rglob("mAildir"), reverse=True):
        target = into if inner.parent == into / "INBOX" else inner.parent
        for entry in os.listdir(inner):
            os.rename(inner / entry, target / entry)
        inner.rmdir()
    (into / "INBOX").rmdir()
    return into


@pytest.mark.one_backend
def test_dovecot_fs_layout(tmp_path: Path, dovecot_fs_tree: Path) -> None:
    """Dovecot's LAYOUT=fs with DIRNAME (found without --layout) and without it (under
    --folder Plain, with --layout fs): every message byte for byte in its nested folder,
    flags, keywords and dates kept."""
    assert (dovecot_fs_tree / "Work" / "Projects" / "mAildir" / "dovecot-keywords").exists()
    plain = _without_dirname(dovecot_fs_tree, tmp_path / "plain")
    assert (plain / "Work" / "Projects" / "cur").is_dir() and (plain / "cur").is_dir()
    _, where = _store(tmp_path, "maildir")
    done = kit.cli("import", "alice", str(dovecot_fs_tree), *where)
    assert "imported 16 messages into 4 folders" in done.stdout, done.stdout
    done = kit.cli("import", "alice", str(plain), "--layout", "fs", "--folder", "Plain", *where)
    assert "imported 16 messages into 4 folders" in done.stdout, done.stdout
    out = tmp_path / "out"
    kit.cli("export", "alice", str(out), "--format", "mbox", *where)
    messages = kit.message_list(16, seed=5)
    for place, name in enumerate(FS_FOLDERS):
        wanted = b"".join(kit.mbox.entry(*m) for i, m in enumerate(messages) if i % 4 == place)
        assert (out / f"{name}.mbox").read_bytes() == wanted, name
        plain_name = "Plain" if name == "INBOX" else f"Plain/{name}"
        assert (out / f"{plain_name}.mbox").read_bytes() == wanted, plain_name


def test_fs_layout_shapes(tmp_path: Path) -> None:
    """Which folders a tree's layout gives, read in process: ``mailboxes/`` as the top, a
    tree that holds both dot-directories and plain ones read as Maildir++ unless told."""
    for where in ("mailboxes/INBOX/dbox/cur", "mailboxes/A&-B/Sub/dbox/new"):
        (tmp_path / "m" / where).mkdir(parents=True)
    for where in ("cur", ".Old/cur", "Notes/new", "Notes/Sub/cur"):
        (tmp_path / "both" / where).mkdir(parents=True)

    def folders(root: str, layout: str | None = None) -> list[str]:
        found = layout or maildirs.detect_layout(str(tmp_path / root))
        assert found is not None, root
        return [name for name, _ in maildirs.MaildirReader(str(tmp_path / root), found).folders]

    assert folders("m") == ["INBOX", "A&B/Sub"]
    assert folders("both") == ["INBOX", "Old"]
    assert folders("both", "fs") == ["INBOX", "Notes", "Notes/Sub"]
    (tmp_path / "none" / "Sub").mkdir(parents=True)
    assert maildirs.detect_layout(str(tmp_path / "none")) is None  # no messages below
    with pytest.raises(TransferError, match="no Maildir tree of LAYOUT=fs"):
        maildirs.MaildirReader(str(tmp_path / "none"), "fs")


@pytest.mark.one_backend
@pytest.mark.parametrize("master", [False, True])
def test_dovecot_imap(tmp_path: Path, dovecot_user: dovecot.Dovecot, master: bool) -> None:
    data_dir, where = _store(tmp_path, "maildir")
    password = tmp_path / "pw"
    password.write_text("boss-pw\n" if master else kit.PASSWORD + "\n")
    url = f"imaps://carol@localhost:{dovecot_user.imaps_port}"
    extra = ["--master-user", "boss"] if master else []
    done = kit.cli(
        "import", "alice", url, "--password-file", str(password), "--folder", "Moved",
        "--ca-file", str(dovecot_user.ca.ca_cert), *extra, *where,
    )  # fmt: skip
    assert "imported 12 messages into 2 folders" in done.stdout
    _check_carol(data_dir, "Moved")


@pytest.mark.one_backend
def test_interrupted_import_resumes(tmp_path: Path) -> None:
    messages = kit.message_list(600, seed=11)
    source = tmp_path / "source.mbox"
    kit.write_mbox(source, messages)
    data_dir, where = _store(tmp_path, "maildir")
    args = ["import", "alice", str(source), "--quiet", *where]
    state = kit.run_and_kill(args, data_dir, "import", 5)  # a batch in, the next begun
    assert state.count('"done"') < len(messages) // 200, "the import ended before the kill"

    done = kit.cli("import", "alice", str(source), *where)
    assert "already imported by an earlier run" in done.stdout
    # As if killed after storing the last batch but before recording it done: the batch's
    # messages are found in the mailbox by their hashes and not stored again.
    path = kit.state_files(data_dir, "import")[0]
    path.write_text(path.read_text().removesuffix('{"done":1}\n'))
    again = kit.cli("import", "alice", str(source), *where)
    assert again.stdout.startswith("imported 0 messages"), again.stdout
    out = tmp_path / "out"
    kit.cli("export", "alice", str(out), "--format", "mbox", *where)
    assert (out / "INBOX.mbox").read_bytes() == source.read_bytes()


BAD_INPUT = [
    ("not-mbox", "is not an mbox file"),
    ("unknown-user", "no user 'nobody'"),
    ("memory", "cannot use the memory backend"),
    ("missing", "no such file or directory"),
    ("bad-url", "give the user and host"),
    ("layout-of-a-file", "is not a directory (--layout names a Maildir's layout)"),
]


@pytest.mark.one_backend
def test_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before the backend starts, so in process (main() as the console script)."""
    data_dir, where = _store(tmp_path, "maildir")
    source = tmp_path / "source"
    source.write_bytes(b"Subject: not an mbox\n\nhello\n")
    cases = {
        "not-mbox": ["alice", str(source), *where],
        "unknown-user": ["nobody", str(source), *where],
        "memory": ["alice", str(source), "--data-dir", str(data_dir), "--backend", "memory"],
        "missing": ["alice", str(tmp_path / "nothing"), *where],
        "bad-url": ["alice", "imap://localhost:1", "--password-file", str(source), *where],
        "layout-of-a-file": ["alice", str(source), "--layout", "fs", *where],
    }
    for case, wanted in BAD_INPUT:
        if case == "memory":
            source.write_bytes(b"From x Tue Feb  3 04:05:06 2015\n\nhello\n")
        assert cli.main(["import", *cases[case]]) == 1, case
        err = capsys.readouterr().err
        assert wanted in err, (case, err)
        assert "Traceback" not in err


def test_internal_date_from_line(tmp_path: Path) -> None:
    """A foreign mbox (mutt's Status at the end of the header) is read with its flags."""
    source = tmp_path / "mutt.mbox"
    source.write_bytes(
        b"From someone@example.org Tue Feb  3 04:05:06 2015\n"
        b"Subject: one\nStatus: RO\nX-Status: F\n\nbody\n\n"
    )
    reader = list(kit.mbox.MboxReader(str(source), "INBOX"))
    assert [(m.data, m.flags, m.internaldate) for m in reader] == [
        (
            b"Subject: one\n\nbody\n",
            frozenset({"\\Seen", "\\Flagged"}),
            datetime(2015, 2, 3, 4, 5, 6, tzinfo=UTC),
        )
    ]
