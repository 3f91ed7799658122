"""FETCH: every data item, body sections and partials, ENVELOPE, BODY and BODYSTRUCTURE,
the \\Seen side effect, macros and UID FETCH (RFC 3501 6.4.5, 7.4.2)."""

from __future__ import annotations

import email.header
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from imapclient import IMAPClient
from imapserver import Connector, User, UserPool

from bench import messages
from bench.harness import RawClient, ServerProcess, Value, fetches

FOLDED = messages.plain(
    extra=[("X-Long", "part one\r\n  part two"), ("Reply-To", "Lists <lists@example.org>")]
)
GROUPS = messages.plain(
    to="undisclosed-recipients:;",
    cc='Team: "A. Person" <a@x.example>, b@y.example;, solo@z.example',
    message_id="<groups.1@example.org>",
    extra=[("In-Reply-To", "<parent.1@example.org>")],
)
NO_BODY = b"From: a@example.org\r\nSubject: headers only\r\n"

CORPUS = {
    "plain": messages.plain(),
    "alternative": messages.alternative(),
    "attachment": messages.with_attachment(),
    "rfc2047": messages.rfc2047(),
    "nested": messages.nested(),
    "eightbit": messages.eight_bit_headers(),
    "folded": FOLDED,
    "groups": GROUPS,
}
SEQ = {name: i + 1 for i, name in enumerate(CORPUS)}


@dataclass
class Corpus:
    server: ServerProcess
    user: User
    uids: dict[str, int]


@pytest.fixture(scope="module")
def corpus(server: ServerProcess, user_pool: UserPool) -> Corpus:
    """One mailbox with every kind of message, shared read-only by this module's tests."""
    user = user_pool.get()
    uids = Connector(server, user).append(list(CORPUS.values()))
    return Corpus(server, user, dict(zip(CORPUS, uids, strict=True)))


@pytest.fixture
def ro(corpus: Corpus) -> Iterator[RawClient]:
    """A client with the corpus EXAMINEd (reads never change flags)."""
    client = RawClient.connect(corpus.server.imap_port)
    client.login(corpus.user.name, corpus.user.password)
    assert client.command("EXAMINE INBOX").ok
    yield client
    client.close()


def fetch_one(client: RawClient, name: str, items: str, uid: bool = False) -> dict[str, Value]:
    seq = SEQ[name]
    response = client.command(f"FETCH {seq} {items}")
    assert response.ok, response.line
    got = fetches(response)
    assert list(got) == [seq], response.untagged
    return got[seq]


def item(items: dict[str, Value], prefix: str) -> Value:
    """The value of the one item whose name starts with ``prefix`` (upper case)."""
    keys = [k for k in items if k.startswith(prefix)]
    assert len(keys) == 1, (prefix, list(items))
    return items[keys[0]]


def header_of(message: bytes) -> bytes:
    return message[: message.index(b"\r\n\r\n") + 4]


def text_of(message: bytes) -> bytes:
    return message[message.index(b"\r\n\r\n") + 4 :]


def low(value: Value) -> str:
    assert isinstance(value, (bytes, str)), value
    return (value.decode() if isinstance(value, bytes) else value).lower()


def params(value: Value) -> dict[str, str]:
    if value is None:
        return {}
    assert isinstance(value, list) and len(value) % 2 == 0, value
    return {
        low(k): (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in zip(value[::2], value[1::2], strict=True)
    }


def decoded(value: Value) -> str:
    """An ENVELOPE text field, RFC 2047 words decoded, 8-bit taken as UTF-8."""
    assert isinstance(value, (bytes, str)), value
    raw = value.decode("utf-8") if isinstance(value, bytes) else value
    return str(email.header.make_header(email.header.decode_header(raw)))


# -- simple items --------------------------------------------------------------------------


def test_flags_internaldate_size(ro: RawClient) -> None:
    items = fetch_one(ro, "plain", "(FLAGS INTERNALDATE RFC822.SIZE)")
    assert isinstance(items["FLAGS"], list)
    assert isinstance(items["INTERNALDATE"], bytes)
    assert re.fullmatch(
        rb"[ 0-3]\d-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{4} "
        rb"\d\d:\d\d:\d\d [+-]\d{4}",
        items["INTERNALDATE"],
    ), items["INTERNALDATE"]
    assert items["RFC822.SIZE"] == len(CORPUS["plain"])


def test_rfc822_size_of_every_message(ro: RawClient) -> None:
    got = fetches(ro.command("FETCH 1:* RFC822.SIZE"))
    assert {seq: got[seq]["RFC822.SIZE"] for seq in got} == {
        SEQ[name]: len(msg) for name, msg in CORPUS.items()
    }


def test_uid_item_and_uid_fetch(ro: RawClient, corpus: Corpus) -> None:
    got = fetches(ro.command("FETCH 1:* UID"))
    assert [got[s]["UID"] for s in sorted(got)] == list(corpus.uids.values())
    # UID FETCH always includes UID (RFC 3501 6.4.8).
    uid = corpus.uids["nested"]
    got = fetches(ro.command(f"UID FETCH {uid} FLAGS"))
    assert list(got) == [SEQ["nested"]]
    assert got[SEQ["nested"]]["UID"] == uid and "FLAGS" in got[SEQ["nested"]]


def test_uid_fetch_ranges(ro: RawClient, corpus: Corpus) -> None:
    uids = list(corpus.uids.values())
    got = fetches(ro.command(f"UID FETCH {uids[2]}:* UID"))
    assert sorted(v["UID"] for v in got.values()) == uids[2:]  # type: ignore[type-var]
    # "n:*" includes the last message even when n is above it (RFC 3501 9, seq-range).
    got = fetches(ro.command(f"UID FETCH {uids[-1] + 1000}:* UID"))
    assert [v["UID"] for v in got.values()] == [uids[-1]]
    response = ro.command(f"UID FETCH {uids[-1] + 1000} UID")
    assert response.ok and not fetches(response)


def test_macros(ro: RawClient) -> None:
    fast = fetch_one(ro, "plain", "FAST")
    assert set(fast) == {"FLAGS", "INTERNALDATE", "RFC822.SIZE"}
    all_ = fetch_one(ro, "plain", "ALL")
    assert set(all_) == {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"}
    full = fetch_one(ro, "plain", "FULL")
    assert set(full) == {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"}


def test_sequence_set_forms(ro: RawClient) -> None:
    n = len(CORPUS)
    assert sorted(fetches(ro.command("FETCH 1:* UID"))) == list(range(1, n + 1))
    assert sorted(fetches(ro.command("FETCH * UID"))) == [n]
    assert sorted(fetches(ro.command("FETCH 3:2 UID"))) == [2, 3]
    assert sorted(fetches(ro.command("FETCH 1,3:4,* UID"))) == [1, 3, 4, n]
    assert sorted(fetches(ro.command("FETCH *:7 UID"))) == [7, 8]


# -- ENVELOPE ------------------------------------------------------------------------------


def test_envelope_plain(ro: RawClient) -> None:
    env = fetch_one(ro, "plain", "ENVELOPE")["ENVELOPE"]
    assert isinstance(env, list) and len(env) == 10
    date, subject, from_, sender, reply_to, to, cc, bcc, in_reply_to, message_id = env
    assert date == messages.DEFAULT_DATE.encode()
    assert subject == b"Lunch on Thursday"
    assert from_ == [[b"Alice Example", None, b"alice", b"example.org"]]
    # Sender and Reply-To default to From (RFC 3501 7.4.2).
    assert sender == from_ and reply_to == from_
    assert to == [[b"Bob Example", None, b"bob", b"example.net"]]
    assert cc is None and bcc is None and in_reply_to is None
    assert message_id == b"<plain.1@example.org>"


def test_envelope_reply_to_and_folded_header(ro: RawClient) -> None:
    env = fetch_one(ro, "folded", "ENVELOPE")["ENVELOPE"]
    assert isinstance(env, list)
    assert env[4] == [[b"Lists", None, b"lists", b"example.org"]]
    assert env[3] == env[2]


def test_envelope_groups_and_in_reply_to(ro: RawClient) -> None:
    env = fetch_one(ro, "groups", "ENVELOPE")["ENVELOPE"]
    assert isinstance(env, list)
    assert env[5] == [[None, None, b"undisclosed-recipients", None], [None, None, None, None]]
    assert env[6] == [
        [None, None, b"Team", None],
        [b"A. Person", None, b"a", b"x.example"],
        [None, None, b"b", b"y.example"],
        [None, None, None, None],
        [None, None, b"solo", b"z.example"],
    ]
    assert env[8] == b"<parent.1@example.org>"


def test_envelope_rfc2047(ro: RawClient) -> None:
    env = fetch_one(ro, "rfc2047", "ENVELOPE")["ENVELOPE"]
    assert isinstance(env, list)
    assert decoded(env[1]) == "R\u00e9union d'\u00e9quipe \u2014 \u65e5\u672c"
    address = env[2][0] if isinstance(env[2], list) else None
    assert isinstance(address, list) and len(env[2]) == 1  # type: ignore[arg-type]
    assert decoded(address[0]) == "Zo\u00eb M\u00fcller"
    assert address[2:] == [b"zoe", b"example.de"]


def test_envelope_eight_bit(ro: RawClient) -> None:
    env = fetch_one(ro, "eightbit", "ENVELOPE")["ENVELOPE"]
    assert isinstance(env, list)
    assert decoded(env[1]) == "Gr\u00fc\u00dfe aus K\u00f6ln"
    assert decoded(env[2][0][0]) == "J\u00fcrgen"  # type: ignore[index]


def test_envelope_imapclient(corpus: Corpus) -> None:
    cli = IMAPClient(corpus.server.host, corpus.server.imap_port, ssl=False, timeout=10)
    try:
        cli.login(corpus.user.name, corpus.user.password)
        cli.select_folder("INBOX", readonly=True)
        uid = corpus.uids["plain"]
        env = cli.fetch([uid], ["ENVELOPE"])[uid][b"ENVELOPE"]
        assert env.subject == b"Lunch on Thursday"
        assert env.from_[0].mailbox == b"alice" and env.from_[0].host == b"example.org"
        assert env.date is not None and env.date.year == 2022
    finally:
        cli.logout()


# -- BODY / BODYSTRUCTURE ------------------------------------------------------------------


def check_text_part(part: Value, subtype: str, body: bytes, encoding: str = "7bit") -> list[Value]:
    assert isinstance(part, list) and len(part) >= 8, part
    assert low(part[0]) == "text" and low(part[1]) == subtype
    assert low(part[5]) == encoding
    assert part[6] == len(body)
    assert part[7] == body.count(b"\n")
    return part


def test_body_and_bodystructure_plain(ro: RawClient) -> None:
    items = fetch_one(ro, "plain", "(BODY BODYSTRUCTURE)")
    body = text_of(CORPUS["plain"])
    basic = check_text_part(items["BODY"], "plain", body)
    assert len(basic) == 8, "BODY carries no extension data"
    assert (
        params(basic[2]) == {"charset": "us-ascii"}
        or low(params(basic[2])["charset"]) == "us-ascii"
    )
    assert basic[3] is None and basic[4] is None
    full = check_text_part(items["BODYSTRUCTURE"], "plain", body)
    assert full[:8] == basic
    assert len(full) >= 9  # extension data: md5 [disposition [language [location]]]


def test_bodystructure_multipart_with_attachment(ro: RawClient) -> None:
    structure = fetch_one(ro, "attachment", "BODYSTRUCTURE")["BODYSTRUCTURE"]
    assert isinstance(structure, list)
    text, attachment = structure[0], structure[1]
    assert low(structure[2]) == "mixed"
    assert params(structure[3]).get("boundary") == "mixed-boundary-7"
    check_text_part(text, "plain", messages.crlf("Please find the invoice attached.\n"))
    assert isinstance(attachment, list)
    assert low(attachment[0]) == "application" and low(attachment[1]) == "pdf"
    assert params(attachment[2]) == {"name": "invoice.pdf"}
    assert low(attachment[5]) == "base64"
    assert attachment[6] == len(messages.b64(messages.PDF_BYTES))
    # Extension data: md5, disposition, language.
    assert len(attachment) >= 9
    disposition = attachment[8]
    assert isinstance(disposition, list)
    assert low(disposition[0]) == "attachment"
    assert params(disposition[1]) == {"filename": "invoice.pdf"}
    if len(attachment) >= 10:
        language = attachment[9]
        assert language in (b"en", [b"en"], b"EN", [b"EN"])


def test_body_multipart_has_no_extension_data(ro: RawClient) -> None:
    body = fetch_one(ro, "attachment", "BODY")["BODY"]
    assert isinstance(body, list) and len(body) == 3
    assert low(body[2]) == "mixed"
    attachment = body[1]
    assert isinstance(attachment, list) and len(attachment) == 7


def test_bodystructure_alternative_quoted_printable(ro: RawClient) -> None:
    structure = fetch_one(ro, "alternative", "BODYSTRUCTURE")["BODYSTRUCTURE"]
    assert isinstance(structure, list)
    assert low(structure[2]) == "alternative"
    plain = check_text_part(
        structure[0], "plain", messages.qp(messages.ALT_TEXT), "quoted-printable"
    )
    html = check_text_part(structure[1], "html", messages.qp(messages.ALT_HTML), "quoted-printable")
    assert low(params(plain[2])["charset"]) == "utf-8"
    assert low(params(html[2])["charset"]) == "utf-8"


def test_bodystructure_nested_message(ro: RawClient) -> None:
    structure = fetch_one(ro, "nested", "BODYSTRUCTURE")["BODYSTRUCTURE"]
    assert isinstance(structure, list)
    assert low(structure[2]) == "mixed"
    inner = messages.alternative()
    part = structure[1]
    assert isinstance(part, list) and len(part) >= 10
    assert low(part[0]) == "message" and low(part[1]) == "rfc822"
    assert low(part[5]) == "7bit"
    assert part[6] == len(inner)
    envelope, body, lines = part[7], part[8], part[9]
    assert isinstance(envelope, list) and envelope[1] == b"Quarterly figures"
    assert isinstance(body, list) and low(body[2]) == "alternative"
    assert lines == inner.count(b"\n")
    if len(part) > 11:
        assert isinstance(part[11], list) and low(part[11][0]) == "inline"


def test_body_of_nested_message_part(ro: RawClient) -> None:
    body = fetch_one(ro, "nested", "BODY")["BODY"]
    assert isinstance(body, list)
    part = body[1]
    assert isinstance(part, list) and len(part) == 10
    inner = part[8]
    assert isinstance(inner, list) and len(inner) == 3  # BODY form inside, too


def test_bodystructure_imapclient(corpus: Corpus) -> None:
    cli = IMAPClient(corpus.server.host, corpus.server.imap_port, ssl=False, timeout=10)
    try:
        cli.login(corpus.user.name, corpus.user.password)
        cli.select_folder("INBOX", readonly=True)
        uid = corpus.uids["attachment"]
        bs = cli.fetch([uid], ["BODYSTRUCTURE"])[uid][b"BODYSTRUCTURE"]
        assert bs.is_multipart
        parts, subtype = bs[0], bs[1]
        assert subtype.lower() == b"mixed" and len(parts) == 2
    finally:
        cli.logout()


# -- body sections -------------------------------------------------------------------------


def test_body_peek_whole_header_text(ro: RawClient) -> None:
    msg = CORPUS["plain"]
    items = fetch_one(ro, "plain", "(BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT])")
    assert items["BODY[]"] == msg
    assert items["BODY[HEADER]"] == header_of(msg)
    assert items["BODY[TEXT]"] == text_of(msg)


def test_body_part_one_of_single_part_message(ro: RawClient) -> None:
    items = fetch_one(ro, "plain", "BODY.PEEK[1]")
    assert items["BODY[1]"] == text_of(CORPUS["plain"])


def test_header_fields(ro: RawClient) -> None:
    msg = CORPUS["folded"]
    items = fetch_one(ro, "folded", "BODY.PEEK[HEADER.FIELDS (X-LONG date)]")
    value = item(items, "BODY[HEADER.FIELDS")
    assert value == (
        b"Date: " + messages.DEFAULT_DATE.encode() + b"\r\nX-Long: part one\r\n  part two\r\n\r\n"
    )
    items = fetch_one(ro, "folded", "BODY.PEEK[HEADER.FIELDS (NO-SUCH-FIELD)]")
    assert item(items, "BODY[HEADER.FIELDS") == b"\r\n"
    header = header_of(msg)
    assert b"X-Long" in header


def test_header_fields_not(ro: RawClient) -> None:
    msg = CORPUS["folded"]
    items = fetch_one(ro, "folded", "BODY.PEEK[HEADER.FIELDS.NOT (X-Long Date Message-ID)]")
    value = item(items, "BODY[HEADER.FIELDS.NOT")
    assert isinstance(value, bytes)
    expected = b"".join(
        line + b"\r\n"
        for line in header_of(msg)[:-4].split(b"\r\n")
        if not re.match(rb"(?i)(x-long|date|message-id):|\s", line)
    )
    assert value == expected + b"\r\n"


def test_multipart_sections(ro: RawClient) -> None:
    msg = CORPUS["attachment"]
    items = fetch_one(
        ro,
        "attachment",
        "(BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2] BODY.PEEK[2.MIME] BODY.PEEK[TEXT])",
    )
    assert items["BODY[1]"] == messages.crlf("Please find the invoice attached.\n")
    assert items["BODY[1.MIME]"] == b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    assert items["BODY[2]"] == messages.b64(messages.PDF_BYTES)
    mime = items["BODY[2.MIME]"]
    assert isinstance(mime, bytes)
    assert mime.startswith(b'Content-Type: application/pdf; name="invoice.pdf"\r\n')
    assert mime.endswith(b"Content-Language: en\r\n\r\n")
    assert items["BODY[TEXT]"] == text_of(msg)


def test_nested_message_sections(ro: RawClient) -> None:
    inner = messages.alternative()
    items = fetch_one(
        ro,
        "nested",
        "(BODY.PEEK[2] BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2.1] BODY.PEEK[2.2.MIME])",
    )
    assert items["BODY[2]"] == inner
    assert items["BODY[2.HEADER]"] == header_of(inner)
    assert items["BODY[2.TEXT]"] == text_of(inner)
    assert items["BODY[2.1]"] == messages.qp(messages.ALT_TEXT)
    assert items["BODY[2.2.MIME]"] == (
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    fields = fetch_one(ro, "nested", "BODY.PEEK[2.HEADER.FIELDS (SUBJECT)]")
    assert item(fields, "BODY[2.HEADER.FIELDS") == b"Subject: Quarterly figures\r\n\r\n"


def test_partial_fetch(ro: RawClient) -> None:
    msg = CORPUS["plain"]
    items = fetch_one(ro, "plain", "(BODY.PEEK[]<0.10> BODY.PEEK[TEXT]<5.20>)")
    assert items["BODY[]<0>"] == msg[:10]
    assert items["BODY[TEXT]<5>"] == text_of(msg)[5:25]
    items = fetch_one(ro, "plain", "BODY.PEEK[]<100000.10>")
    assert items["BODY[]<100000>"] in (b"", None)
    items = fetch_one(ro, "plain", f"BODY.PEEK[]<{len(msg) - 3}.100>")
    assert items[f"BODY[]<{len(msg) - 3}>"] == msg[-3:]


def test_rfc822_items(ro: RawClient) -> None:
    msg = CORPUS["alternative"]
    items = fetch_one(ro, "alternative", "(RFC822.HEADER RFC822.TEXT RFC822)")
    assert items["RFC822.HEADER"] == header_of(msg)
    assert items["RFC822.TEXT"] == text_of(msg)
    assert items["RFC822"] == msg


def test_eight_bit_message_comes_back_verbatim(ro: RawClient) -> None:
    items = fetch_one(ro, "eightbit", "BODY.PEEK[]")
    assert items["BODY[]"] == CORPUS["eightbit"]


def test_message_without_body(connect: Connector) -> None:
    uid = connect.append([NO_BODY])[0]
    client = connect.selected()
    got = fetches(client.command(f"UID FETCH {uid} (RFC822.SIZE BODY.PEEK[] BODY.PEEK[TEXT])"))
    (items,) = got.values()
    assert items["RFC822.SIZE"] == len(NO_BODY)
    assert items["BODY[]"] == NO_BODY
    assert items["BODY[TEXT]"] in (b"", None)


def test_fetch_imaplib(corpus: Corpus) -> None:
    import imaplib

    conn = imaplib.IMAP4(corpus.server.host, corpus.server.imap_port, timeout=10)
    try:
        conn.login(corpus.user.name, corpus.user.password)
        conn.select("INBOX", readonly=True)
        typ, data = conn.fetch(str(SEQ["attachment"]), "(BODY.PEEK[1] RFC822.SIZE)")
        assert typ == "OK"
        first = data[0]
        assert isinstance(first, tuple)
        assert first[1] == messages.crlf("Please find the invoice attached.\n")
        typ, data = conn.uid("FETCH", "1:*", "(UID)")
        assert typ == "OK" and len(data) == len(CORPUS)
    finally:
        conn.logout()


# -- \Seen side effect ---------------------------------------------------------------------


def flags_of(items: dict[str, Value]) -> set[str]:
    value = items.get("FLAGS", [])
    assert isinstance(value, list)
    return {str(f).upper() for f in value}


@pytest.mark.parametrize(
    "item, sets_seen",
    [
        ("BODY[]", True),
        ("BODY[TEXT]", True),
        ("BODY[HEADER]", True),
        ("BODY[1]", True),
        ("RFC822", True),
        ("RFC822.TEXT", True),
        ("BODY.PEEK[]", False),
        ("BODY.PEEK[TEXT]", False),
        ("RFC822.HEADER", False),
        ("RFC822.SIZE", False),
        ("ENVELOPE", False),
        ("BODYSTRUCTURE", False),
    ],
)
def test_seen_flag_side_effect(connect: Connector, item: str, sets_seen: bool) -> None:
    connect.append([messages.plain()])
    client = connect.selected()
    response = client.command(f"FETCH 1 ({item})")
    assert response.ok, response.line
    if sets_seen:
        # The change SHOULD be reported in the same FETCH (RFC 3501 6.4.5).
        assert "\\SEEN" in flags_of(fetches(response)[1]), response.untagged
    after = fetches(client.command("FETCH 1 FLAGS"))[1]
    assert ("\\SEEN" in flags_of(after)) is sets_seen
    if sets_seen:
        # Fetching again does not repeat a FLAGS change that did not happen.
        again = fetches(client.command(f"FETCH 1 ({item})"))[1]
        assert "FLAGS" not in again or "\\SEEN" in flags_of(again)


def test_seen_is_visible_to_other_session(connect: Connector) -> None:
    connect.append([messages.plain()])
    reader = connect.selected()
    watcher = connect.selected()
    assert reader.command("FETCH 1 BODY[]").ok
    noop = watcher.command("NOOP")
    assert "\\SEEN" in flags_of(fetches(noop)[1])


# -- errors ----------------------------------------------------------------------------


@pytest.mark.one_backend  # the engine refuses these before any backend is asked
@pytest.mark.parametrize(
    "command",
    [
        "FETCH 99 FLAGS",
        "FETCH 0 FLAGS",
        "FETCH 1 (FLAGS",
        "FETCH 1 NOSUCHITEM",
        "FETCH 1 BODY[HEADER.FIELDS ()]",
        "FETCH 1 BODY[MIME]",
        "FETCH 1 BODY[0]",
        "FETCH 1 BODY[]<0.0>",
        "FETCH 1 BODY[]<x.1>",
        "FETCH 1 BODY[",
        "FETCH 1",
        "FETCH",
    ],
)
def test_fetch_errors(ro: RawClient, command: str) -> None:
    response = ro.command(command)
    assert response.status in ("BAD", "NO"), response.line
    assert not any(b"Traceback" in line for line in response.untagged)
    assert ro.command("NOOP").ok


@pytest.mark.parametrize(
    ("command", "text"),
    [
        ("FETCH 1 XBINARY[]", b"Unknown FETCH item XBINARY[]"),
        ("FETCH 1 (FLAGS XBINARY.PEEK[1]<0.5>)", b"Unknown FETCH item XBINARY.PEEK[1]"),
        ("FETCH 1 XBINARY.SIZE[1]", b"Unknown FETCH item XBINARY.SIZE[1]"),
        ("FETCH 1 FLAGS (XCHANGED 1)", b"Unknown FETCH modifier XCHANGED"),
    ],
)
def test_items_of_unadvertised_extensions_are_bad(ro: RawClient, command: str, text: bytes) -> None:
    """Items and modifiers no extension offers are BAD (BINARY's are tested in test_binary,
    CONDSTORE's in test_condstore)."""
    response = ro.command(command)
    assert response.status == "BAD" and response.text == text, response.line
    assert not response.untagged
    assert ro.command("NOOP").ok
