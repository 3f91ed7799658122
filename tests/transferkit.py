"""Helpers of the ``mailserv import``/``export`` tests: the CLI run as a subprocess (a real
process, which the interruption tests kill), generated mbox files, and a real server over
the imported data to look at with imaplib."""

from __future__ import annotations

import imaplib
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from imapserver import add_cheap_user

from bench.harness import REPO, BackendSpec, ServerProcess
from bench.messages import realistic
from mailserv.admin import mbox

PASSWORD = "secret-pw"
FLAGSETS = (
    frozenset(),
    frozenset({"\\Seen"}),
    frozenset({"\\Seen", "\\Answered", "$Forwarded"}),
    frozenset({"\\Flagged", "\\Draft", "Work"}),
    frozenset({"\\Deleted", "\\Seen", "$Junk"}),
)
START = datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
ODD_MESSAGES = (
    b"From: a@example.org\r\nSubject: quoting\r\n\r\nFrom here\r\n>From there\r\n>>From x\r\n",
    b"Subject: no line break at the end\r\n\r\nbody",
    b"Subject: empty lines at the end\r\n\r\nFrom the start\r\n\r\n\r\n",
)
"""CRLF, as IMAP holds a message (the maildir backend turns bare LF into CRLF)."""
SPECS = {
    "maildir": BackendSpec("maildir", {"autocreate": "false", "fsync": "false"}),
    "sql-sqlite": BackendSpec("sql"),
}


def selected(names: Sequence[str]) -> list[str]:
    """The names among ``names`` that MAILSERV_TEST_BACKENDS (when set) selects."""
    wanted = os.environ.get("MAILSERV_TEST_BACKENDS")
    if not wanted:
        return list(names)
    chosen = {name.strip() for name in wanted.split(",")}
    return [name for name in names if name in chosen]


def backend_args(spec: BackendSpec) -> list[str]:
    args = ["--backend", spec.name]
    for key, value in spec.options.items():
        args += ["--backend-option", f"{key}={value}"]
    return args


def env() -> dict[str, str]:
    values = dict(os.environ)
    values["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), values.get("PYTHONPATH", "")) if p
    )
    return values


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mailserv", *args]


def cli(*args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command(*args), input=stdin, capture_output=True, text=True, env=env(), timeout=300
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def add_user(data_dir: Path, name: str) -> None:
    """``name`` in the data dir's passwd-file, as ``mailserv user add`` puts it (a cheap hash)."""
    add_cheap_user(data_dir, name, PASSWORD)


def message_list(count: int, seed: int = 7) -> list[tuple[bytes, frozenset[str], datetime]]:
    rng = random.Random(seed)
    found = []
    for i in range(count):
        data = ODD_MESSAGES[i // 97 % 3] if i % 97 == 50 else realistic(i, rng)
        found.append((data, FLAGSETS[i % len(FLAGSETS)], START + timedelta(minutes=7 * i)))
    return found


def write_mbox(path: Path, messages: Sequence[tuple[bytes, frozenset[str], datetime]]) -> None:
    with open(path, "wb") as out:
        for data, flags, when in messages:
            out.write(mbox.entry(data, flags, when))


@contextmanager
def serving(data_dir: Path, spec: BackendSpec) -> Iterator[ServerProcess]:
    server = ServerProcess(data_dir, spec, extra_args=("--workers", "1"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def login(server: ServerProcess, user: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4(server.host, server.imap_port, timeout=30)
    client.login(user, PASSWORD)
    return client


_ITEM = re.compile(rb'UID (\d+) FLAGS \(([^)]*)\) INTERNALDATE "([^"]+)"')


def folder_state(client: imaplib.IMAP4, folder: str) -> list[tuple[frozenset[str], datetime]]:
    """(flags, internal date) of every message of ``folder``, in UID order."""
    typ, data = client.select(f'"{folder}"', readonly=True)
    assert typ == "OK", data
    typ, data = client.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE)")
    assert typ == "OK", data
    found = []
    for line in data:
        match = _ITEM.search(line if isinstance(line, bytes) else line[0])
        if match is None:
            continue
        flags = frozenset(match.group(2).decode().split()) - {"\\Recent"}
        when = datetime.strptime(match.group(3).decode().strip(), "%d-%b-%Y %H:%M:%S %z")
        found.append((int(match.group(1)), flags, when))
    return [(flags, when) for _, flags, when in sorted(found)]


def wait_for(path: Path, lines: int, timeout: float = 120.0) -> None:
    """Until ``path`` holds at least ``lines`` lines (a hang bound, not a timing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= lines:
            return
        time.sleep(0.005)
    raise AssertionError(f"{path} never reached {lines} lines")


def state_files(data_dir: Path, kind: str) -> list[Path]:
    return sorted((data_dir / "transfers").glob(f"{kind}-*.log"))


def run_and_kill(args: list[str], data_dir: Path, kind: str, lines: int) -> str:
    """Run the CLI ``args`` and SIGKILL it once its state file holds ``lines`` lines (it is
    stopped first, so it gets no further); the state file's text then."""
    proc = subprocess.Popen(
        command(*args), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while not state_files(data_dir, kind) and time.monotonic() < deadline:
            time.sleep(0.002)
        wait_for(state_files(data_dir, kind)[0], lines)
        proc.send_signal(signal.SIGSTOP)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(60)
    return state_files(data_dir, kind)[0].read_text()
