"""SEARCH and UID SEARCH: every key, RFC 2047 headers, bodies inside base64 and
quoted-printable parts, dates, sizes, flags, keywords, OR/NOT/parentheses, CHARSET with a
literal, sequence and UID sets (RFC 3501 6.4.4)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from imapclient import IMAPClient
from imapserver import Connector, User, UserPool, appenduid

from bench import messages
from bench.harness import RawClient, ServerProcess, search_numbers

B64_SECRET = "The xylophone-secret is kept in the base64 part.\n"
BASE64_TEXT = messages.multipart(
    [
        ("Date", "Sat, 01 Jan 2000 12:00:00 +0000"),
        ("From", "Frank <frank@example.com>"),
        ("To", "grace@example.com"),
        ("Subject", "Encoded body"),
        ("Message-ID", "<b64.1@example.org>"),
    ],
    "mixed",
    "b64-boundary",
    [
        messages.part(
            "text/plain; charset=utf-8",
            messages.b64(B64_SECRET.encode()),
            ("Content-Transfer-Encoding", "base64"),
        )
    ],
)
BIG = messages.plain(
    subject="Weekly report",
    sender="Heidi <heidi@example.com>",
    to="carol@example.com",
    cc="Dan <dan@example.com>",
    date="Fri, 31 Dec 1999 12:00:00 +0000",
    message_id="<big.1@example.org>",
    extra=[("Bcc", "eve@example.com"), ("X-Mailer", "Mutt/2.2")],
    body=("All work and no play makes Jack a dull boy.\n" * 150),
)

# (message, flags, internal date)
CORPUS = [
    (messages.plain(), "\\Seen", "01-Jan-2020 12:00:00 +0000"),
    (
        messages.rfc2047(date="Wed, 16 Jun 2021 09:00:00 +0200"),
        "\\Flagged \\Answered",
        "15-Jun-2021 12:00:00 +0000",
    ),
    (messages.with_attachment(), "\\Deleted $Invoice", "20-Dec-2022 12:00:00 +0000"),
    (messages.alternative(), "\\Draft", "20-Dec-2022 12:00:00 +0000"),
    (BASE64_TEXT, "", "10-Mar-2021 12:00:00 +0000"),
    (BIG, "\\Seen \\Flagged", "05-May-2023 12:00:00 +0000"),
]
SIZES = [len(m) for m, _f, _d in CORPUS]
ALL = [1, 2, 3, 4, 5, 6]


@dataclass
class Corpus:
    server: ServerProcess
    user: User
    uids: list[int]


@pytest.fixture(scope="module")
def corpus(server: ServerProcess, user_pool: UserPool) -> Corpus:
    user = user_pool.get()
    client = RawClient.connect(server.imap_port)
    try:
        client.login(user.name, user.password)
        uids = []
        for message, flags, date in CORPUS:
            response = client.command_with_literal(f'APPEND INBOX ({flags}) "{date}" ', message)
            uids.append(appenduid(response)[1])
    finally:
        client.close()
    return Corpus(server, user, uids)


@pytest.fixture
def ro(corpus: Corpus) -> Iterator[RawClient]:
    client = RawClient.connect(corpus.server.imap_port)
    client.login(corpus.user.name, corpus.user.password)
    assert client.command("EXAMINE INBOX").ok
    yield client
    client.close()


def search(client: RawClient, criteria: str) -> list[int]:
    response = client.command(f"SEARCH {criteria}")
    assert response.ok, (criteria, response.line)
    return sorted(search_numbers(response))


CASES = [
    ("ALL", ALL),
    ("SEEN", [1, 6]),
    ("UNSEEN", [2, 3, 4, 5]),
    ("FLAGGED", [2, 6]),
    ("UNFLAGGED", [1, 3, 4, 5]),
    ("ANSWERED", [2]),
    ("UNANSWERED", [1, 3, 4, 5, 6]),
    ("DELETED", [3]),
    ("UNDELETED", [1, 2, 4, 5, 6]),
    ("DRAFT", [4]),
    ("UNDRAFT", [1, 2, 3, 5, 6]),
    ("KEYWORD $Invoice", [3]),
    ("KEYWORD $invoice", [3]),
    ("UNKEYWORD $Invoice", [1, 2, 4, 5, 6]),
    ("KEYWORD NeverUsed", []),
    ("FROM alice", [1]),
    ("FROM ALICE@EXAMPLE.ORG", [1]),
    ('FROM "example.com"', [4, 5, 6]),
    ("TO bob", [1, 2]),
    ("TO carol", [6]),
    ("CC dan", [6]),
    ("BCC eve", [6]),
    ("CC nobody", []),
    ("SUBJECT lunch", [1]),
    ('SUBJECT "QUARTERLY FIG"', [4]),
    ("SUBJECT invoice", [3]),
    ("HEADER X-Mailer mutt", [6]),
    ('HEADER X-Mailer ""', [6]),
    ("HEADER Message-ID example.org", ALL),
    ("HEADER X-Not-There x", []),
    ("NOT HEADER X-Mailer mutt", [1, 2, 3, 4, 5]),
    ('NOT HEADER X-Mailer ""', [1, 2, 3, 4, 5]),
    ("NOT HEADER X-Not-There x", ALL),
    ("NOT (HEADER X-Mailer mutt)", [1, 2, 3, 4, 5]),
    ("BODY noon", [1]),
    ('BODY "dull boy"', [6]),
    ("BODY xylophone-secret", [5]),
    ("BODY lunch", []),
    ("TEXT lunch", [1]),
    ("TEXT xylophone", [5]),
    ('TEXT "heidi@example.com"', [6]),
    ('BODY "quarterly figures"', [4]),
    ("BEFORE 15-Jun-2021", [1, 5]),
    ("ON 20-Dec-2022", [3, 4]),
    ("SINCE 20-Dec-2022", [3, 4, 6]),
    ("SINCE 1-Jan-2030", []),
    ("SENTBEFORE 1-Jan-2000", [6]),
    ("SENTON 1-Jan-2000", [5]),
    ("SENTON 16-Jun-2021", [2]),
    ("SENTSINCE 7-Feb-2022", [1, 3, 4]),
    (f"LARGER {SIZES[5] - 1}", [6]),
    (f"SMALLER {min(SIZES) + 1}", [SIZES.index(min(SIZES)) + 1]),
    (f"LARGER {SIZES[5]}", []),
    ("OR SEEN FLAGGED", [1, 2, 6]),
    ("NOT SEEN", [2, 3, 4, 5]),
    ("NOT (OR SEEN FLAGGED)", [3, 4, 5]),
    ("FLAGGED ANSWERED", [2]),
    ("(SEEN) (FROM alice)", [1]),
    ("OR (SEEN FROM heidi) DRAFT", [4, 6]),
    ("OR OR DRAFT DELETED ANSWERED", [2, 3, 4]),
    ("NOT NOT SEEN", [1, 6]),
    ("2:3", [2, 3]),
    ("*", [6]),
    ("1,3,5:* UNSEEN", [3, 5]),
    ("5:3", [3, 4, 5]),
]


@pytest.mark.parametrize("criteria, expected", CASES, ids=[c for c, _ in CASES])
def test_search_key(ro: RawClient, criteria: str, expected: list[int]) -> None:
    assert search(ro, criteria) == expected


def test_search_keys_are_case_insensitive(ro: RawClient) -> None:
    assert search(ro, "or seen flagged") == [1, 2, 6]
    assert search(ro, "from ALICE") == [1]


def test_uid_search_and_uid_key(ro: RawClient, corpus: Corpus) -> None:
    uids = corpus.uids
    response = ro.command("UID SEARCH FLAGGED")
    assert response.ok
    assert sorted(search_numbers(response)) == [uids[1], uids[5]]
    assert search(ro, f"UID {uids[1]}:{uids[2]}") == [2, 3]
    assert search(ro, f"UID {uids[-1] + 1}:*") == [6]
    response = ro.command(f"UID SEARCH UID {uids[0]},{uids[3]} NOT SEEN")
    assert sorted(search_numbers(response)) == [uids[3]]


def test_empty_result_is_bare_search_response(ro: RawClient) -> None:
    response = ro.command("SEARCH SUBJECT no-such-subject-anywhere")
    assert response.ok
    assert [
        line.rstrip() for line in response.untagged if line.upper().startswith(b"* SEARCH")
    ] == [b"* SEARCH"]


def test_search_rfc2047_subject_with_utf8_literal(ro: RawClient) -> None:
    for needle, expected in (
        ("\u00e9quipe", [2]),
        ("R\u00c9UNION", [2]),
        ("\u65e5\u672c", [2]),
        ("m\u00fcller", []),
    ):
        data = needle.encode("utf-8")
        response = ro.command_with_literal("SEARCH CHARSET UTF-8 SUBJECT ", data)
        assert response.ok, response.line
        assert sorted(search_numbers(response)) == expected, needle


def test_search_rfc2047_from_name(ro: RawClient) -> None:
    response = ro.command_with_literal("SEARCH CHARSET UTF-8 FROM ", "M\u00fcller".encode())
    assert sorted(search_numbers(response)) == [2]


def test_search_decoded_bodies(ro: RawClient) -> None:
    # 8bit UTF-8 body, and the euro sign inside quoted-printable (=E2=82=AC).
    for needle, expected in (("Bonjour \u00e0 tous", [2]), ("10 \u20ac", [4])):
        response = ro.command_with_literal("SEARCH CHARSET UTF-8 BODY ", needle.encode())
        assert response.ok, response.line
        assert sorted(search_numbers(response)) == expected, needle


def test_search_literal_plus_argument(ro: RawClient) -> None:
    data = "\u00e9quipe".encode()
    ro.send(b"s1 SEARCH CHARSET UTF-8 SUBJECT {%d+}\r\n%s\r\n" % (len(data), data))
    response = ro.read_until_tagged("s1")
    assert response.ok and search_numbers(response) == [2]


def test_search_us_ascii_charset(ro: RawClient) -> None:
    assert search(ro, "CHARSET US-ASCII SUBJECT lunch") == [1]


def test_search_unknown_charset_is_no(ro: RawClient) -> None:
    # RFC 3501 6.4.4: an unsupported charset is a tagged NO (not BAD), optionally [BADCHARSET].
    response = ro.command("SEARCH CHARSET X-NO-SUCH-CHARSET SUBJECT x")
    assert response.status == "NO", response.line
    code = response.code or ""
    assert code == "" or code.upper().startswith("BADCHARSET")


@pytest.mark.one_backend  # the engine refuses these before any backend is asked
@pytest.mark.parametrize(
    "criteria",
    [
        "",
        "NOSUCHKEY",
        "SINCE notadate",
        "LARGER -5",
        "LARGER abc",
        "OR SEEN",
        "NOT",
        "(SEEN",
        "SEEN)",
        "HEADER Subject",
        "KEYWORD",
        "UID",
        "UID x",
        "CHARSET",
    ],
)
def test_search_syntax_errors_are_bad(ro: RawClient, criteria: str) -> None:
    response = ro.command(f"SEARCH {criteria}".rstrip())
    assert response.status == "BAD", (criteria, response.line)
    assert ro.command("NOOP").ok


def test_search_sequence_out_of_range(ro: RawClient) -> None:
    response = ro.command("SEARCH 99")
    assert response.status in ("BAD", "NO", "OK")
    if response.ok:
        assert search_numbers(response) == []


def test_search_imapclient(corpus: Corpus) -> None:
    cli = IMAPClient(corpus.server.host, corpus.server.imap_port, ssl=False, timeout=10)
    try:
        cli.login(corpus.user.name, corpus.user.password)
        cli.select_folder("INBOX", readonly=True)
        uids = corpus.uids
        assert cli.search(["FLAGGED"]) == [uids[1], uids[5]]
        assert cli.search(["SUBJECT", "\u00e9quipe"], charset="UTF-8") == [uids[1]]
        assert cli.search(["OR", "SEEN", "DRAFT"]) == [uids[0], uids[3], uids[5]]
        assert cli.search(["SINCE", "20-Dec-2022"]) == [uids[2], uids[3], uids[5]]
    finally:
        cli.logout()


def test_search_imaplib(corpus: Corpus) -> None:
    import imaplib

    conn = imaplib.IMAP4(corpus.server.host, corpus.server.imap_port, timeout=10)
    try:
        conn.login(corpus.user.name, corpus.user.password)
        conn.select("INBOX", readonly=True)
        typ, data = conn.search(None, "UNSEEN")
        assert typ == "OK" and data == [b"2 3 4 5"]
        conn.literal = "\u65e5\u672c".encode()  # type: ignore[assignment]
        typ, data = conn.search("UTF-8", "SUBJECT")
        assert typ == "OK" and data == [b"2"]
    finally:
        conn.logout()


def test_search_sees_flag_changes(connect: Connector) -> None:
    connect.append([messages.plain(), messages.plain()])
    client = connect.selected()
    assert client.command("STORE 2 +FLAGS (\\Flagged)").ok
    assert search_numbers(client.command("SEARCH FLAGGED")) == [2]


def test_repeated_searches_follow_appends_and_expunges(connect: Connector) -> None:
    """A backend may keep the answer of a search of fields and dates until the mailbox's
    messages change (memory, SQL): asked again after another client appends, flags and
    expunges, it is the new answer, by UID and by number (the messages gone not in it,
    even before the client is told)."""
    connect.append(
        [
            messages.plain(subject="Kept one", sender="Ivan <ivan@example.org>"),
            messages.plain(subject="other"),
            messages.plain(subject="kept two", sender="Ivan <ivan@example.org>"),
        ]
    )
    reader, writer = connect.selected(), connect.selected()
    queries = ["SUBJECT kept", "FROM ivan", "SINCE 1-Jan-2000", "SUBJECT kept UNFLAGGED"]

    def answers(noop: bool = True) -> list[list[int]]:
        if noop:
            assert reader.command("NOOP").ok
        found = []
        for query in queries:
            for how in ("UID SEARCH", "SEARCH"):
                first = search_numbers(reader.command(f"{how} {query}"))
                assert search_numbers(reader.command(f"{how} {query}")) == first, query
                found.append(first)
        return found

    assert answers() == [[1, 3], [1, 3], [1, 3], [1, 3], [1, 2, 3], [1, 2, 3], [1, 3], [1, 3]]
    connect.append([messages.plain(subject="KEPT three", sender="ivan@example.org")])
    assert answers() == [
        [1, 3, 4],
        [1, 3, 4],
        [1, 3, 4],
        [1, 3, 4],
        [1, 2, 3, 4],
        [1, 2, 3, 4],
        [1, 3, 4],
        [1, 3, 4],
    ]
    assert writer.command("UID STORE 1 +FLAGS (\\Flagged)").ok
    assert writer.command("UID STORE 3 +FLAGS (\\Deleted)").ok  # the first and last stay
    assert writer.command("EXPUNGE").ok
    # Not told yet: UID 3 is in the reader's view, gone from the mailbox (the first UID
    # SEARCH is answered so, then the EXPUNGE comes).
    assert answers(noop=False) == [[1, 4], [1, 3], [1, 4], [1, 3], [1, 2, 4], [1, 2, 3], [4], [3]]
    assert answers() == [[1, 4], [1, 3], [1, 4], [1, 3], [1, 2, 4], [1, 2, 3], [4], [3]]
    connect.append([messages.plain(subject="other again")])
    assert answers()[4:6] == [[1, 2, 4, 5], [1, 2, 3, 4]]


def test_big_answers_of_the_whole_mailbox(connect: Connector) -> None:
    """Keys most of a mailbox matches (a date every message is younger than, ALL, LARGER
    than none, NOT of a few), by number and by UID, plain and as ESEARCH: the SQL store
    answers them as the mailbox less the few messages left out while the session sees every
    message, and as before when it does not (another client added or expunged some and the
    session was not told yet)."""
    connect.append([messages.plain(subject=f"note {n}") for n in range(40)])
    reader, writer = connect.selected(), connect.selected()
    for uid in (3, 17, 40):  # gaps, and the highest UID gone
        assert writer.command(f"UID STORE {uid} +FLAGS (\\Deleted)").ok
    assert writer.command("EXPUNGE").ok
    assert reader.command("NOOP").ok
    uids = [uid for uid in range(1, 41) if uid not in (3, 17, 40)]

    def answers(view: list[int]) -> dict[str, list[int]]:
        shown = [uid for uid in view if uid in live]
        numbers = [view.index(uid) + 1 for uid in shown]
        return {
            "SEARCH SINCE 1-Jan-2000": numbers,
            "UID SEARCH SINCE 1-Jan-2000": shown,
            "SEARCH ALL": numbers,
            "UID SEARCH LARGER 1": shown,
            "SEARCH LARGER 1": numbers,
            "UID SEARCH BEFORE 1-Jan-2000": [],
            "SEARCH NOT 1:2": [n for n in numbers if n > 2],
            "UID SEARCH NOT UID 1:2": [uid for uid in shown if uid > 2],
            "SEARCH NOT FLAGGED": [n for n, uid in zip(numbers, shown, strict=True) if uid != 5],
        }

    assert writer.command("UID STORE 5 +FLAGS (\\Flagged)").ok
    live = set(uids)
    for _ in range(2):  # the second time, answers the store may have kept
        for command, expected in answers(uids).items():
            assert search_numbers(reader.command(command)) == expected, command
    found = reader.command("SEARCH RETURN (MIN MAX COUNT ALL) SINCE 1-Jan-2000")
    tag = found.tag.decode()
    assert found.data("ESEARCH") == [f'(TAG "{tag}") MIN 1 MAX 37 COUNT 37 ALL 1:37'.encode()]
    # Another client expunges two: the reader, not told yet (no EXPUNGE during SEARCH),
    # finds neither (ALL: the memory and maildir stores give every message of its view);
    # then another client adds one:
    # the reader finds it once told of it (which may come with the answer, or after).
    assert writer.command("UID STORE 8,39 +FLAGS (\\Deleted)").ok
    assert writer.command("UID EXPUNGE 8,39").ok
    live = set(uids) - {8, 39}
    for command in ("SEARCH SINCE 1-Jan-2000", "SEARCH NOT 1:2", "SEARCH LARGER 1"):
        assert search_numbers(reader.command(command)) == answers(uids)[command], command
    viewed = list(range(1, len(uids) + 1))
    assert search_numbers(reader.command("SEARCH ALL")) in (answers(uids)["SEARCH ALL"], viewed)
    assert reader.command("NOOP").ok
    uids = [uid for uid in uids if uid in live]
    connect.append([messages.plain(subject="late")])
    live.add(41)
    for command in ("SEARCH SINCE 1-Jan-2000", "UID SEARCH LARGER 1", "SEARCH NOT 1:2"):
        found = search_numbers(reader.command(command))
        assert found in (answers(uids)[command], answers([*uids, 41])[command]), command
    assert reader.command("NOOP").ok
    uids.append(41)
    for command, expected in answers(uids).items():
        assert search_numbers(reader.command(command)) == expected, command
