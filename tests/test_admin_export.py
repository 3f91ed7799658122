"""``mailserv export``: Maildir++ trees (flags as info letters, keywords in
``dovecot-keywords``, internal dates as mtimes) that import back to the same mail, then
through Dovecot's LAYOUT=fs too, mbox files, an interrupted export resumed, and bad input.  The CLI
runs as a subprocess."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import transferkit as kit

from mailserv.admin.maildirs import read_keywords


def _filled(tmp_path: Path, count: int) -> tuple[Path, list[str], Path]:
    """A maildir store whose ``alice`` has ``count`` messages in INBOX and in ``A/Büro``
    (one import of a directory of mbox files, so one CLI start-up); the INBOX mbox file."""
    tree = tmp_path / "mboxes"
    source = tree / "INBOX.mbox"
    (tree / "A").mkdir(parents=True)
    kit.write_mbox(source, kit.message_list(count))
    (tree / "A" / "Büro.mbox").write_bytes(source.read_bytes())
    data_dir = tmp_path / "data"
    kit.add_user(data_dir, "alice")
    where = ["--data-dir", str(data_dir), *kit.backend_args(kit.SPECS["maildir"])]
    kit.cli("import", "alice", str(tree), *where)
    return data_dir, where, source


@pytest.mark.one_backend
def test_maildir_export_imports_back(tmp_path: Path) -> None:
    data_dir, where, source = _filled(tmp_path, 60)
    tree = tmp_path / "tree"
    kit.cli("export", "alice", str(tree), *where)

    assert sorted(p.name for p in tree.iterdir() if p.name.startswith(".")) == [".A", ".A.B&APw-ro"]
    keywords = read_keywords(str(tree))
    assert sorted(keywords.values()) == ["$Junk", "Work"]
    messages = kit.message_list(60)
    files = sorted((tree / "cur").iterdir(), key=lambda p: int(p.name.split(".M")[1].split("V")[0]))
    assert len(files) == len(messages)
    for path, (data, flags, when) in zip(files, messages, strict=True):
        letters = path.name.split(":2,")[1]
        system = {"\\Seen": "S", "\\Answered": "R", "$Forwarded": "P", "\\Flagged": "F"}
        system |= {"\\Draft": "D", "\\Deleted": "T"}
        wanted = {system.get(f) or {v: k for k, v in keywords.items()}[f] for f in flags}
        assert set(letters) == wanted
        assert int(os.stat(path).st_mtime) == int(when.timestamp())
        assert path.read_bytes() == data

    kit.add_user(data_dir, "bob")
    kit.cli("import", "bob", str(tree), *where)
    # Bob's mail out in LAYOUT=fs: INBOX at the top, a directory per level, each with its
    # own cur/ and dovecot-keywords; imported back (the layout found by looking) for carol.
    fs = tmp_path / "fs"
    kit.cli("export", "bob", str(fs), "--layout", "fs", *where)
    assert not [p.name for p in fs.iterdir() if p.name.startswith(".")]
    assert len(list((fs / "cur").iterdir())) == len(messages)
    assert len(list((fs / "A" / "B&APw-ro" / "cur").iterdir())) == len(messages)
    assert sorted(read_keywords(str(fs / "A" / "B&APw-ro")).values()) == ["$Junk", "Work"]
    kit.add_user(data_dir, "carol")
    kit.cli("import", "carol", str(fs), *where)
    out = tmp_path / "out"
    kit.cli("export", "carol", str(out), "--format", "mbox", *where)
    assert (out / "INBOX.mbox").read_bytes() == source.read_bytes()
    assert (out / "A" / "Büro.mbox").read_bytes() == source.read_bytes()


@pytest.mark.one_backend
def test_interrupted_export_resumes(tmp_path: Path) -> None:
    data_dir, where, source = _filled(tmp_path, 600)
    out = tmp_path / "out"
    args = ["export", "alice", str(out), "--format", "mbox", "--quiet", *where]
    state = kit.run_and_kill(args, data_dir, "export", 1)
    assert '"A/Büro"' not in state, "the export ended before it was interrupted"

    done = kit.cli("export", "alice", str(out), "--format", "mbox", *where)
    assert "already written by an earlier run" in done.stdout
    assert (out / "INBOX.mbox").read_bytes() == source.read_bytes()
    assert (out / "A" / "Büro.mbox").read_bytes() == source.read_bytes()

    # The state file does not stand for files removed since: they are written again.
    (out / "INBOX.mbox").unlink()
    kit.cli("export", "alice", str(out), "--format", "mbox", *where)
    assert (out / "INBOX.mbox").read_bytes() == source.read_bytes()


@pytest.mark.one_backend
def test_bad_input(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    kit.add_user(data_dir, "alice")
    for args, wanted in [
        (["nobody", str(tmp_path / "out"), "--data-dir", str(data_dir)], "no user 'nobody'"),
        (["alice", "out", "--data-dir", str(data_dir), "--format", "tar"], "invalid choice"),
        (
            ["alice", "out", "--data-dir", str(data_dir), "--format", "mbox", "--layout", "fs"],
            "--layout is for --format maildir",
        ),
    ]:
        done = kit.cli("export", *args, check=False)
        assert done.returncode != 0
        assert wanted in done.stderr
        assert "Traceback" not in done.stderr
