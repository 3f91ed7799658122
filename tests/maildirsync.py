"""A local Maildir kept in step with the server by a sync program (mbsync, offlineimap): the
Maildir side, the server's side read over imaplib, and the round trip both programs' tests run.

A round trip: a local Maildir of N realistic messages (some with flags) is pushed to the
server; a second, empty Maildir is filled from the server and compared byte for byte (line
ends aside); then a flag is added and one removed on each side, a message deleted locally and
one expunged on the server, and both Maildirs are synced again and compared with the server.
"""

from __future__ import annotations

import imaplib
import os
import random
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from imapserver import User

from bench import messages
from bench.harness import ServerProcess

Sync = Callable[[], float]
"""One run of the sync program for one Maildir; the seconds it took (it fails the test when
the run fails or hangs)."""

# -- local Maildirs ----------------------------------------------------------------------


_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>]*>)", re.I | re.M)
_TUID = re.compile(rb"^X-TUID: [^\n]*\n", re.M)


def without_tuid(data: bytes) -> bytes:
    """``data`` (LF line ends) without the X-TUID header mbsync adds to what it uploads (to
    find the new message again) and keeps in what it downloads."""
    head, sep, body = data.partition(b"\n\n")
    return _TUID.sub(b"", head + b"\n", count=1)[:-1] + sep + body


def message_id(data: bytes) -> bytes:
    head = data.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    match = _MESSAGE_ID.search(head)
    assert match is not None, data[:300]
    return match.group(1)


def corpus(count: int, seed: int) -> list[bytes]:
    """``count`` realistic messages with LF line ends (as a Maildir holds them)."""
    rng = random.Random(seed)
    return [messages.realistic(i, rng).replace(b"\r\n", b"\n") for i in range(count)]


def initial_flags(i: int) -> str:
    """Maildir flag letters of local message ``i`` before the first sync."""
    return ("F" if i % 7 == 0 else "") + ("S" if i % 3 == 0 else "")


_LETTERS = {"\\ANSWERED": "R", "\\FLAGGED": "F", "\\SEEN": "S", "\\DRAFT": "D"}


@dataclass
class Local:
    """One Maildir tree (``INBOX`` only) that mbsync syncs."""

    root: Path

    @property
    def inbox(self) -> Path:
        return self.root / "INBOX"

    def create(self, bodies: list[bytes]) -> None:
        for sub in ("cur", "new", "tmp"):
            (self.inbox / sub).mkdir(parents=True)
        stamp = int(time.time()) - 3600
        for i, body in enumerate(bodies):
            name = f"{stamp + i}.M{i}P{os.getpid()}.mbsynctest:2,{initial_flags(i)}"
            (self.inbox / "cur" / name).write_bytes(body)

    def files(self) -> dict[bytes, Path]:
        """Message-ID → file of every message in cur/ and new/."""
        out: dict[bytes, Path] = {}
        for sub in ("cur", "new"):
            for path in (self.inbox / sub).iterdir():
                key = message_id(path.read_bytes())
                assert key not in out, f"{key!r} twice: {out[key]} and {path}"
                out[key] = path
        return out

    def state(self) -> dict[bytes, tuple[str, bytes]]:
        """Message-ID → (sorted flag letters, body) of every message (mbsync's X-TUID header,
        which a download keeps, removed)."""
        return {
            key: (flags_of(path), without_tuid(path.read_bytes().replace(b"\r\n", b"\n")))
            for key, path in self.files().items()
        }

    def set_flags(self, path: Path, letters: str) -> None:
        base = path.name.split(":2,", 1)[0]
        path.rename(self.inbox / "cur" / f"{base}:2,{''.join(sorted(letters))}")

    def settle(self) -> None:
        """Date the folders back: mbsync sleeps a second when a Maildir folder changed in
        the current second (a guard against concurrent deliveries, of which there are none)."""
        past = time.time() - 10
        for path in (self.inbox, self.inbox / "cur", self.inbox / "new", self.inbox / "tmp"):
            if path.exists():
                os.utime(path, (past, past))


def flags_of(path: Path) -> str:
    _, sep, letters = path.name.partition(":2,")
    return "".join(sorted(letters)) if sep else ""


# -- the server's side -------------------------------------------------------------------


def server_state(server: ServerProcess, user: User) -> dict[bytes, tuple[str, bytes]]:
    """Message-ID → (Maildir flag letters, body with LF line ends) of the server's INBOX."""
    conn = imaplib.IMAP4(server.host, server.imap_port, timeout=60)
    try:
        conn.login(user.name, user.password)
        typ, data = conn.select("INBOX", readonly=True)
        assert typ == "OK", data
        typ, data = conn.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
        assert typ == "OK", data
        conn.logout()
    finally:
        if conn.state != "LOGOUT":
            conn.shutdown()
    out: dict[bytes, tuple[str, bytes]] = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        head, body = item
        match = re.search(rb"FLAGS \(([^)]*)\)", head)
        assert match is not None, head
        letters = "".join(
            sorted(
                _LETTERS[f.upper()]
                for f in match.group(1).decode().split()
                if f.upper() in _LETTERS
            )
        )
        text = without_tuid(body.replace(b"\r\n", b"\n"))
        out[message_id(text)] = (letters, text)
    return out


def assert_same(
    got: dict[bytes, tuple[str, bytes]], want: dict[bytes, tuple[str, bytes]], where: str
) -> None:
    """Same messages with the same flags and bodies; names the first differences."""
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    flags = [(k, got[k][0], want[k][0]) for k in want if k in got and got[k][0] != want[k][0]]
    bodies = [k for k in want if k in got and got[k][1] != want[k][1]]
    assert not (missing or extra or flags or bodies), (
        f"{where}: {len(got)} messages, {len(want)} expected; missing {missing[:5]}, "
        f"unexpected {extra[:5]}, flags (got, expected) {flags[:5]}, bodies differ {bodies[:5]}"
    )


def server_change(
    server: ServerProcess, user: User, flag: list[bytes], expunge: list[bytes]
) -> None:
    """On the server: ``+FLAGS \\Flagged`` on the messages ``flag``, ``\\Deleted`` + EXPUNGE
    on the messages ``expunge`` (by Message-ID)."""
    conn = imaplib.IMAP4(server.host, server.imap_port, timeout=60)
    try:
        conn.login(user.name, user.password)
        typ, data = conn.select("INBOX")
        assert typ == "OK", data
        typ, data = conn.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        assert typ == "OK", data
        uids: dict[bytes, bytes] = {}
        for item in data:
            if isinstance(item, tuple):
                match = re.search(rb"UID (\d+)", item[0])
                assert match is not None, item[0]
                uids[message_id(item[1])] = match.group(1)
        for key in flag:
            typ, data = conn.uid("STORE", uids[key], "+FLAGS", "(\\Flagged)")
            assert typ == "OK", data
        for key in expunge:
            typ, data = conn.uid("STORE", uids[key], "+FLAGS", "(\\Deleted)")
            assert typ == "OK", data
        typ, data = conn.expunge()
        assert typ == "OK", data
        conn.logout()
    finally:
        if conn.state != "LOGOUT":
            conn.shutdown()


def round_trip(
    server: ServerProcess,
    user: User,
    bodies: list[bytes],
    tmp: Path,
    sync_of: Callable[[Local], Sync],
) -> list[float]:
    """The whole round trip of ``bodies``, each Maildir synced by ``sync_of(local)``; the
    seconds of each run."""
    count = len(bodies)
    originals = {message_id(b): (initial_flags(i), b) for i, b in enumerate(bodies)}
    assert len(originals) == count
    first, second = Local(tmp / "first"), Local(tmp / "second")
    first.create(bodies)
    second.root.mkdir()
    sync_first, sync_second = sync_of(first), sync_of(second)
    times = []

    # Upload: every message reaches the server unchanged, with its flags.
    times.append(sync_first())
    assert_same(server_state(server, user), originals, "server after the upload")

    # Download into an empty Maildir: byte for byte what was uploaded (X-TUID removed).
    times.append(sync_second())
    assert_same(second.state(), originals, "second Maildir after the download")

    # Changes on both sides, on distinct messages.
    keys = list(originals)
    step = max(1, count // 12)
    picked = keys[1::step][:12]
    local_add, local_delete = picked[0:2], picked[2:4]
    server_flag, server_expunge = picked[4:6], picked[6:8]
    local_remove = [k for k in keys if "S" in originals[k][0] and k not in picked][:2]
    files = first.files()
    for key in local_add:
        first.set_flags(files[key], flags_of(files[key]) + "R")
    for key in local_remove:
        first.set_flags(files[key], flags_of(files[key]).replace("S", ""))
    for key in local_delete:
        files[key].unlink()
    server_change(server, user, server_flag, server_expunge)

    expected = dict(originals)
    for key in local_add:
        expected[key] = ("".join(sorted(expected[key][0] + "R")), expected[key][1])
    for key in local_remove:
        expected[key] = (expected[key][0].replace("S", ""), expected[key][1])
    for key in server_flag:
        expected[key] = ("".join(sorted(set(expected[key][0] + "F"))), expected[key][1])
    for key in local_delete + server_expunge:
        del expected[key]

    # Both ways at once: local changes reach the server, the server's reach the Maildir.
    times.append(sync_first())
    assert_same(server_state(server, user), expected, "server after the changes")
    assert_same(first.state(), expected, "first Maildir after the changes")

    # The other Maildir follows: flags changed and messages gone on either side.
    times.append(sync_second())
    assert_same(second.state(), expected, "second Maildir after the changes")
    return times


def run_sync(argv: list[str], hung_after: float, forbidden: tuple[str, ...] = ("error",)) -> Run:
    """One run of a sync program; fails the test unless it exits 0 with none of the
    ``forbidden`` words in its output.  A run still going after ``hung_after`` seconds is
    killed as hung: that bound is far above any normal run on a loaded machine, since how
    fast a run is belongs in ``bench/``, not here."""
    name = Path(argv[0]).name
    started = time.monotonic()
    try:
        result = subprocess.run(
            argv, capture_output=True, timeout=hung_after, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        out = ((exc.stdout or b"") + (exc.stderr or b"")).decode("utf-8", "replace")
        pytest.fail(f"{name} still running after {hung_after:.0f} s (hung):\n{out[-3000:]}")
    seconds = time.monotonic() - started
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    assert result.returncode == 0, (
        f"{name} exit {result.returncode} after {seconds:.1f} s:\n{output[-3000:]}"
    )
    for word in forbidden:
        assert word not in output.lower(), output[-3000:]
    return Run(seconds, output)


@dataclass
class Run:
    seconds: float
    output: str


def require(program: str, package: str) -> str:
    """The path of ``program``; skips the test without it, unless MAILSERV_REQUIRE_<PROGRAM>
    is set (CI), where it fails instead."""
    found = shutil.which(program)
    if found is None:
        variable = f"MAILSERV_REQUIRE_{program.upper()}"
        if os.environ.get(variable):
            pytest.fail(f"{variable} is set but {program} ({package}) is not installed")
        pytest.skip(f"{program} ({package}) is not installed")
    return found
