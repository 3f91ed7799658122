"""Two Perl IMAP libraries against every backend: Mail::IMAPClient and Mail::IMAPTalk.

Mail::IMAPClient (Debian's ``libmail-imapclient-perl``) is what imapsync and many admin
scripts are built on; it reads responses with regular expressions and a Parse::RecDescent
grammar for ENVELOPE and BODYSTRUCTURE, and sends a password holding a double quote or a
backslash as a literal.  Mail::IMAPTalk (``libmail-imaptalk-perl``, Fastmail's client) parses
every response into structures, ENVELOPE and BODYSTRUCTURE included, and sends the password as
a quoted string with ``\\"`` and ``\\\\`` escapes.

The scripts under tests/perl/ take a job (a JSON file) and print what the library read as
JSON; each runs over plain IMAP, STARTTLS and IMAPS (trusting only the server's generated
certificate, for the name localhost).  What they read is checked against the messages as
built here and against what imaplib reads from the server afterwards.  Without the Perl
modules the tests are skipped, unless MAILSERV_REQUIRE_PERLIMAP is set (CI).

What the libraries lack, worked around in the scripts: Mail::IMAPClient's ``move`` is COPY
then ``\\Deleted`` (it sends no MOVE; Mail::IMAPTalk's does).  Mail::IMAPTalk has no STARTTLS
(the script upgrades the socket and hands it over), reads TLS sockets non-blocking only at the
risk of taking a TLS 1.3 ticket for a closed connection (so it blocks over TLS), sends a
non-ASCII search string bare unless given as a literal, and names INBOX "Inbox" unless told
to preserve it.
"""

from __future__ import annotations

import base64
import imaplib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from imapclient import imap_utf7
from imapserver import Connector, User, UserPool

from bench.harness import ServerProcess

TRANSPORTS = ("plain", "starttls", "imaps")

SCRIPTS = Path(__file__).parent / "perl"

LIBRARIES = {"imapclient": "Mail::IMAPClient", "imaptalk": "Mail::IMAPTalk"}
"""Script name under tests/perl/ → the Perl module it drives."""

RUN_TIMEOUT = 120.0
"""Seconds after which one script run is killed as hung (runs take about a second)."""

pytestmark = pytest.mark.timeout(600)


def require_perl_module(module: str) -> str:
    """The path of perl, once ``module`` loads; skips the test without it, unless
    MAILSERV_REQUIRE_PERLIMAP is set (CI), where it fails instead."""
    perl = shutil.which("perl")
    loads = perl is not None and (
        subprocess.run([perl, f"-M{module}", "-e1"], capture_output=True).returncode == 0
    )
    if perl is None or not loads:
        package = {"Mail::IMAPClient": "libmail-imapclient-perl"}.get(
            module, "libmail-imaptalk-perl"
        )
        if os.environ.get("MAILSERV_REQUIRE_PERLIMAP"):
            pytest.fail(f"MAILSERV_REQUIRE_PERLIMAP is set but {module} ({package}) is missing")
        pytest.skip(f"{module} ({package}) is not installed")
    assert perl is not None
    return perl


# -- the messages ------------------------------------------------------------------------

ATTACHMENT = bytes(range(256)) * 3
ATTACHMENT_B64 = base64.encodebytes(ATTACHMENT).replace(b"\n", b"\r\n").rstrip(b"\r\n")
PLAIN_BODY = b"Gr=C3=BC=C3=9Fe aus K=C3=B6ln, perlsearchable text.\r\nZweite Zeile."
HTML_BODY = "<p>Grüße aus Köln</p>\r\n<p>perlsearchable</p>".encode()
SUBJECT = "=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?= report"
FROM_NAME = "=?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?="  # Jürgen Müller

MULTIPART = (
    b"From: " + FROM_NAME.encode() + b" <juergen@example.org>\r\n"
    b"To: Zo\xc3\xab Unicode <zoe@example.net>\r\n"
    b'Cc: "Smith, Anne" <anne@example.com>, bob@example.com\r\n'
    b"Subject: " + SUBJECT.encode() + b"\r\n"
    b"Date: Sun, 06 Dec 2026 01:02:03 +0100\r\n"
    b"Message-ID: <perl.multi@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"This is a multi-part message.\r\n"
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="inner"\r\n'
    b"\r\n"
    b"--inner\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n" + PLAIN_BODY + b"\r\n"
    b"--inner\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n" + HTML_BODY + b"\r\n"
    b"--inner--\r\n"
    b"--outer\r\n"
    b'Content-Type: application/pdf; name="=?UTF-8?Q?R=C3=A9sum=C3=A9.pdf?="\r\n'
    b"Content-Disposition: attachment; filename*=UTF-8''R%C3%A9sum%C3%A9.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n" + ATTACHMENT_B64 + b"\r\n"
    b"--outer--\r\n"
)

SIMPLE = (
    b"From: Plain Sender <plain@example.org>\r\n"
    b"To: someone@example.org\r\n"
    b"Subject: plain note\r\n"
    b"Date: Sat, 05 Dec 2026 23:59:59 -0500\r\n"
    b"Message-ID: <perl.simple@example.org>\r\n"
    b"\r\n"
    b"Just text.\r\n"
)

APPENDS = (
    (MULTIPART, "\\Seen $Forwarded", "06-Dec-2026 01:02:03 +0100"),
    (SIMPLE, "\\Flagged", "05-Dec-2025 23:59:59 -0500"),
)
"""(message, APPEND flags, APPEND date): dates in the past, as Dovecot (the proxy backend's
upstream) takes the time of arrival for a date in the future."""

LEAVES = {
    # part → (type, subtype, encoding, body)
    "1.1": ("text", "plain", "quoted-printable", PLAIN_BODY),
    "1.2": ("text", "html", "8bit", HTML_BODY),
    "2": ("application", "pdf", "base64", ATTACHMENT_B64),
}

SEARCHES: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...] = (
    # criteria tokens → indexes (into APPENDS) of the messages found
    (("SEEN",), (0,)),
    (("FLAGGED",), (1,)),
    (("LARGER", "1000"), (0,)),
    (("SUBJECT", "plain note"), (1,)),
    (("BODY", "perlsearchable"), (0,)),
    (("HEADER", "Message-ID", "<perl.multi@example.org>"), (0,)),
    (("OR", "FROM", "juergen", "TO", "someone@example.org"), (0, 1)),
    (("SINCE", "1-Dec-2025", "NOT", "DELETED", "KEYWORD", "$Forwarded"), (0,)),
    (("BEFORE", "1-Dec-2026"), (1,)),
    (("CHARSET", "UTF-8", "SUBJECT", "Grüße"), (0,)),  # in an encoded word
    (("CHARSET", "UTF-8", "TEXT", "Köln"), (0,)),  # quoted-printable and 8bit bodies
    (("UNSEEN", "NOT", "FLAGGED"), ()),
)


FOLDERS = ["perl box", "perl renamed", "perl target", 'perl "odd" \\ name']
"""Created, renamed to, COPY/MOVE target, created and deleted (a name with a double quote
and a backslash: sent as a literal or quoted string, listed back escaped)."""

UNICODE_FOLDER = "perl Grüße"
"""Created by Mail::IMAPTalk with its unicode folder names on: sent in modified UTF-7."""


# -- running the scripts -----------------------------------------------------------------


@pytest.fixture
def other_user(server: ServerProcess, user_pool: UserPool) -> User:
    """A second account (the destination of the imapsync-like copy)."""
    return user_pool.get()


def job_base(server: ServerProcess, transport: str, user: User) -> dict[str, Any]:
    return {
        "host": server.host,
        "imap_port": server.imap_port,
        "imaps_port": server.imaps_port,
        "ca": str(server.cert_path),
        "transport": transport,
        "login": {"user": user.name, "password": user.password},
    }


def run_script(library: str, job: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """Runs tests/perl/<library>.pl with ``job``; what it printed, as JSON."""
    perl = require_perl_module(LIBRARIES[library])
    path = tmp_path / f"{library}-{job['mode']}.json"
    path.write_text(json.dumps(job))
    try:
        result = subprocess.run(
            [perl, str(SCRIPTS / f"{library}.pl"), str(path)],
            capture_output=True,
            timeout=RUN_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as hung:
        errors = (hung.stderr or b"").decode("utf-8", "replace")
        pytest.fail(f"{library} hung:\n{errors[-4000:]}")
    errors = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 0, f"{library} exit {result.returncode}:\n{errors[-4000:]}"
    found: dict[str, Any] = json.loads(result.stdout.decode().splitlines()[-1])
    return found


def message_files(tmp_path: Path) -> list[dict[str, str]]:
    messages = []
    for n, (data, flags, date) in enumerate(APPENDS):
        path = tmp_path / f"message{n}.eml"
        path.write_bytes(data)
        messages.append({"path": str(path), "flags": flags, "date": date})
    return messages


def fetch_meta(client: imaplib.IMAP4, uid: int) -> tuple[set[str], str, int]:
    """(FLAGS, INTERNALDATE, RFC822.SIZE) of ``uid`` in the selected mailbox, by imaplib."""
    typ, data = client.uid("FETCH", str(uid), "(FLAGS INTERNALDATE RFC822.SIZE)")
    assert typ == "OK", data
    line = next(d for d in data if isinstance(d, bytes)).decode()
    flags = set(re.search(r"FLAGS \(([^)]*)\)", line).group(1).split())  # type: ignore[union-attr]
    date = re.search(r'INTERNALDATE "([^"]+)"', line).group(1)  # type: ignore[union-attr]
    size = int(re.search(r"RFC822\.SIZE (\d+)", line).group(1))  # type: ignore[union-attr]
    return flags - {"\\Recent"}, date, size


def fetch_section(client: imaplib.IMAP4, uid: int, section: str) -> bytes:
    typ, data = client.uid("FETCH", str(uid), f"(BODY.PEEK[{section}])")
    assert typ == "OK", data
    item = next(d for d in data if isinstance(d, tuple))
    body: bytes = item[1]
    return body


def mailbox_names(client: imaplib.IMAP4, command: str) -> set[str]:
    """The names a LIST or LSUB answers, unquoted (imaplib leaves them as sent)."""
    typ, data = getattr(client, command)()
    assert typ == "OK", data
    names = set()
    for line in data:
        if isinstance(line, tuple):  # the name came as a literal
            names.add(line[1].decode())
            continue
        text = line.decode()
        quoted = re.search(r'"((?:[^"\\]|\\.)*)"$', text)
        if quoted:
            names.add(re.sub(r"\\(.)", r"\1", quoted.group(1)))
        else:
            names.add(text.rsplit(" ", 1)[1])
    return names


def instant(date: str) -> datetime:
    """An INTERNALDATE as the instant it names: a store may keep the instant and not the zone
    (the proxy backend's Dovecot answers in its own zone), which RFC 3501 allows."""
    return datetime.strptime(date.strip(), "%d-%b-%Y %H:%M:%S %z")


def flag_set(flags: Sequence[str]) -> set[str]:
    return set(flags) - {"\\Recent"}


# -- the session -------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_imapclient_session(
    server: ServerProcess, user: User, transport: str, tmp_path: Path
) -> None:
    """Mail::IMAPClient: the pool user's password (space, double quote, backslash) goes as a
    literal; every command imapsync-like tools use, and what its parsers make of the
    answers."""
    job = job_base(server, transport, user)
    job.update(
        mode="session",
        folders=FOLDERS,
        messages=message_files(tmp_path),
        searches=[list(tokens) for tokens, _ in SEARCHES],
    )
    out = run_script("imapclient", job, tmp_path)
    check_session(server, user, transport, out, "imapclient")
    uids = out["uids"]
    assert out["separator"] == "/"
    assert out["personal_namespace"] == ["", "/"]
    assert (out["selectable"], out["is_parent"], out["exists"], out["exists_not"]) == (1, 0, 1, 0)
    assert out["uidnext_empty"] <= uids[0] < uids[1] < out["uidnext"]
    assert out["size"] == len(MULTIPART)
    headers = {int(uid): value for uid, value in out["headers"].items()}
    assert headers[uids[0]] == {
        "subject": [SUBJECT],
        "message-id": ["<perl.multi@example.org>"],
        "to": ["Zoë Unicode <zoe@example.net>"],
    }
    assert headers[uids[1]]["subject"] == ["plain note"]
    connector = Connector(server, user)
    try:
        client = connector.imaplib()
        status = client.status('"perl renamed"', "(UIDVALIDITY)")
        assert status[0] == "OK", status
        assert f"UIDVALIDITY {out['uidvalidity']})" in status[1][0].decode()
    finally:
        connector.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_imaptalk_session(
    server: ServerProcess, user: User, transport: str, tmp_path: Path
) -> None:
    """Mail::IMAPTalk: the pool user's password goes as a quoted string with escapes; the
    same commands, MOVE a real one, and its full parse of ENVELOPE and BODYSTRUCTURE."""
    job = job_base(server, transport, user)
    job.update(
        mode="session",
        folders=FOLDERS,
        messages=message_files(tmp_path),
        searches=[list(tokens) for tokens, _ in SEARCHES],
    )
    job["unicode_folder"] = UNICODE_FOLDER
    out = run_script("imaptalk", job, tmp_path)
    assert UNICODE_FOLDER in out["unicode_list"], out["unicode_list"]
    assert out["examine_mode"] == "read-only"
    parts = {part["id"]: part for part in out["bodystructure"]["parts"]}
    assert all(part["leftover"] == 0 for part in parts.values()), parts
    assert parts["2"]["disposition"] == "attachment"
    assert parts["2"]["disposition_params"] == {"filename*": "UTF-8''R%C3%A9sum%C3%A9.pdf"}
    assert out["envelope"]["sender"] == out["envelope"]["from"]
    assert out["envelope"]["replyto"] == out["envelope"]["from"]
    check_session(server, user, transport, out, "imaptalk")
    connector = Connector(server, user)
    try:
        assert imap_utf7.encode(UNICODE_FOLDER).decode() in mailbox_names(
            connector.imaplib(), "list"
        )
    finally:
        connector.close()


@pytest.mark.parametrize("library", sorted(LIBRARIES))
@pytest.mark.parametrize("transport", ("starttls", "imaps"))
def test_certificate_name_checked(
    server: ServerProcess, user: User, library: str, transport: str, tmp_path: Path
) -> None:
    """The scripts' TLS does verify: asked for a name the certificate does not carry, the
    library refuses the connection (so the passing runs above did check localhost)."""
    perl = require_perl_module(LIBRARIES[library])
    job = job_base(server, transport, user)
    job.update(mode="idle", tls_name="not-localhost.example")
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    result = subprocess.run(
        [perl, str(SCRIPTS / f"{library}.pl"), str(path)],
        capture_output=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert b"idling" not in result.stdout
    errors = result.stderr.decode("utf-8", "replace")
    assert "hostname verification failed" in errors, errors


def check_session(
    server: ServerProcess, user: User, transport: str, out: dict[str, Any], library: str
) -> None:
    assert ("SSL" in out["socket"]) == (transport != "plain"), out["socket"]
    capabilities = {name.upper() for name in out["capability"]}
    assert {"IMAP4REV1", "IDLE", "MOVE", "UIDPLUS"} <= capabilities, capabilities
    assert {"INBOX", "perl renamed", "perl target"} <= set(out["list"])
    assert "perl box" not in out["list"]
    assert FOLDERS[3] in out["list"], out["list"]
    assert "perl renamed" in out["lsub"]
    uids = out["uids"]
    assert len(uids) == 2 and uids[0] < uids[1]
    assert out["examine_count"] == 2

    fetched = {int(uid): value for uid, value in out["fetch"].items()}
    assert set(fetched) == set(uids)
    for uid, (data, flags, date) in zip(uids, APPENDS, strict=True):
        assert flag_set(fetched[uid]["flags"]) == set(flags.split())
        assert instant(fetched[uid]["internaldate"]) == instant(date)
        assert fetched[uid]["size"] == len(data)

    envelope = out["envelope"]
    assert envelope["subject"] == SUBJECT
    assert envelope["messageid"] == "<perl.multi@example.org>"
    assert envelope["date"] == "Sun, 06 Dec 2026 01:02:03 +0100"
    check_addresses(envelope, library)

    structure = out["bodystructure"]
    assert structure["type"] == "multipart"
    parts = {part["id"]: part for part in structure["parts"]}
    assert set(parts) == {"1", "1.1", "1.2", "2"}, structure
    assert (parts["1"]["type"], parts["1"]["subtype"]) == ("multipart", "alternative")
    for part, (type_, subtype, encoding, body) in LEAVES.items():
        got = parts[part]
        assert (got["type"], got["subtype"], got["encoding"]) == (type_, subtype, encoding), got
        assert got["size"] == len(body), (part, got)
    assert parts["1.1"]["params"] == {"charset": "utf-8"}
    assert parts["2"]["params"] == {"name": "=?UTF-8?Q?R=C3=A9sum=C3=A9.pdf?="}
    sections = {part: base64.b64decode(data) for part, data in out["sections"].items()}
    assert sections == {part: leaf[3] for part, leaf in LEAVES.items()}

    for (tokens, wanted), hits in zip(SEARCHES, out["search"], strict=True):
        assert hits == [uids[n] for n in wanted], tokens

    stored = {int(uid): flag_set(flags) for uid, flags in out["stored"].items()}
    assert stored == {uids[0]: {"\\Flagged", "$Forwarded"}, uids[1]: {"\\Flagged", "$Label1"}}
    assert out["after_expunge"] == [uids[0]]

    # What imaplib reads from the server afterwards.
    connector = Connector(server, user)
    try:
        client = connector.imaplib()
        listed = mailbox_names(client, "list")
        assert {"INBOX", FOLDERS[1], FOLDERS[2]} <= listed, listed
        assert "perl renamed" in mailbox_names(client, "lsub")
        assert "perl box" not in mailbox_names(client, "list")
        assert {FOLDERS[0], FOLDERS[3]}.isdisjoint(mailbox_names(client, "list"))
        status = client.status('"perl target"', "(MESSAGES UIDNEXT UNSEEN)")
        assert status[0] == "OK", status
        numbers = dict(re.findall(r"(MESSAGES|UIDNEXT|UNSEEN) (\d+)", status[1][0].decode()))
        assert out["status"] == numbers and numbers["MESSAGES"] == "2"
        selected = client.select('"perl renamed"', readonly=True)
        assert selected == ("OK", [b"1"]), selected
        kept_flags, date, size = fetch_meta(client, uids[0])
        assert (kept_flags, size) == ({"\\Flagged", "$Forwarded"}, len(MULTIPART))
        assert date == fetched[uids[0]]["internaldate"]
        for part in LEAVES:
            assert fetch_section(client, uids[0], part) == sections[part]
        selected = client.select('"perl target"', readonly=True)
        assert selected[0] == "OK", selected
        found = client.uid("SEARCH", "ALL")
        copies = [int(n) for n in found[1][0].split()]
        assert len(copies) == 2
        for copy, original in zip(copies, APPENDS, strict=True):
            _, copy_date, copy_size = fetch_meta(client, copy)
            assert (instant(copy_date), copy_size) == (instant(original[2]), len(original[0]))
            assert fetch_section(client, copy, "") == original[0]
    finally:
        connector.close()


def check_addresses(envelope: dict[str, Any], library: str) -> None:
    if library == "imapclient":
        assert envelope["from"] == [f"{FROM_NAME} <juergen@example.org>"]
        assert envelope["to"] == ["Zoë Unicode <zoe@example.net>"]
        assert envelope["cc"] == ["Smith, Anne <anne@example.com>", "<bob@example.com>"]
    else:
        assert envelope["from"] == f'"{FROM_NAME}" <juergen@example.org>'
        assert envelope["to"] == '"Zoë Unicode" <zoe@example.net>'
        assert envelope["cc"] == '"Smith, Anne" <anne@example.com>, bob@example.com'


# -- IDLE --------------------------------------------------------------------------------


@pytest.mark.parametrize("library", sorted(LIBRARIES))
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_idle(
    server: ServerProcess, user: User, library: str, transport: str, tmp_path: Path
) -> None:
    """The library sits in IDLE; a message appended by another session is announced with
    EXISTS, the library ends IDLE with DONE and finds the message."""
    perl = require_perl_module(LIBRARIES[library])
    connector = Connector(server, user)
    job = job_base(server, transport, user)
    job["mode"] = "idle"
    path = tmp_path / "idle.json"
    path.write_text(json.dumps(job))
    process = subprocess.Popen(
        [perl, str(SCRIPTS / f"{library}.pl"), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line == b"idling\n", line
        time.sleep(0.1)  # the server has sent "+ idling": it is in IDLE already
        (uid,) = connector.append([SIMPLE])
        out, errors = process.communicate(timeout=RUN_TIMEOUT)
        assert process.returncode == 0, errors.decode("utf-8", "replace")[-4000:]
        found = json.loads(out.decode().splitlines()[-1])
        assert found["uids"] == [uid]
        if library == "imapclient":
            assert "* 1 EXISTS" in found["untagged"], found
        else:
            assert ["exists", "1"] in found["events"], found
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        connector.close()


# -- an imapsync-like copy ---------------------------------------------------------------


@pytest.mark.parametrize("compress", (False, True), ids=("", "compress"))
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_imapclient_copy_folder(
    server: ServerProcess,
    user: User,
    other_user: User,
    transport: str,
    compress: bool,
    tmp_path: Path,
) -> None:
    """As imapsync does with Mail::IMAPClient: each message of a folder read from one account
    (FLAGS, INTERNALDATE, RFC822.SIZE, then the whole message) and appended to another with
    the same flags and date; imaplib then finds bytes, flags and dates equal.  With
    ``compress`` both sessions run COMPRESS=DEFLATE, as imapsync's --compress does."""
    source = Connector(server, user)
    dest = Connector(server, other_user)
    try:
        client = source.imaplib()
        assert client.create('"perl source"')[0] == "OK"
        for data, flags, date in APPENDS:
            typ, resp = client.append('"perl source"', f"({flags})", f'"{date}"', data)
            assert typ == "OK", resp
        typ, resp = client.append('"perl source"', None, None, SIMPLE.replace(b"plain", b"third"))
        assert typ == "OK", resp
        job = job_base(server, transport, user)
        job.update(
            mode="copy",
            compress=compress,
            folders=["perl source", "perl copy"],
            dest_login={"user": other_user.name, "password": other_user.password},
        )
        out = run_script("imapclient", job, tmp_path)
        assert len(out["source_uids"]) == len(out["dest_uids"]) == 3
        assert out["compressed"] == compress
        copied = dest.imaplib()
        client.select('"perl source"', readonly=True)
        copied.select('"perl copy"', readonly=True)
        for src_uid, dst_uid in zip(out["source_uids"], out["dest_uids"], strict=True):
            assert fetch_meta(copied, dst_uid) == fetch_meta(client, src_uid)
            assert fetch_section(copied, dst_uid, "") == fetch_section(client, src_uid, "")
    finally:
        source.close()
        dest.close()
