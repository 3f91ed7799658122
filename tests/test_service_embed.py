"""examples/embed.py runs as written: a client can log in and use a mailbox."""

from __future__ import annotations

import imaplib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_embed_example(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "embed.py"), "0", "bob", "s3cret pass"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", first)
        assert match, first + proc.stdout.read()
        with imaplib.IMAP4("127.0.0.1", int(match[1]), timeout=30) as client:
            assert client.login("bob", "s3cret pass")[0] == "OK"
            message = b"Subject: hello\r\n\r\nembedded\r\n"
            assert client.append("INBOX", None, None, message)[0] == "OK"
            status, data = client.select("INBOX")
            assert (status, data) == ("OK", [b"1"])
            status, fetched = client.fetch("1", "(BODY.PEEK[])")
            assert status == "OK"
            assert fetched[0][1] == message  # type: ignore[index]
            client.logout()
        client = imaplib.IMAP4("127.0.0.1", int(match[1]), timeout=30)
        with client, pytest.raises(imaplib.IMAP4.error):
            client.login("bob", "wrong")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
