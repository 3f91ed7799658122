"""SEARCH FROM/TO/CC/BCC over real sockets on every backend: a message matches when the
string is in the header's unfolded, decoded text or in one of its addresses normalised
(display name decoded, ``local@domain`` without comments or folding, ``Name <addr>``,
group names and members); HEADER From/To/... keep to the header's own text.

The search fields are made when the message enters the store; the normaliser itself is
checked (with hypothesis) in ``test_address_forms.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from imapserver import User, UserPool, appenduid

from bench.harness import RawClient, ServerProcess, search_numbers


def _message(*fields: str, body: str = "Body.\r\n") -> bytes:
    return ("\r\n".join(fields) + "\r\n\r\n" + body).encode()


MESSAGES = [
    _message(  # 1: comments inside the address, a quoted name, addr (Name), a group
        "From: <user-from (comment)@ (comment) domain.org>",
        'To: "Real Name" <real@b.org>',
        "Cc: cc-user@cc.example (Cc Person)",
        'Bcc: Friends: friend1@friends.example, "Second Friend" <friend2@friends.example>;',
        "Subject: one",
    ),
    _message(  # 2: RFC 2047 name, folding inside the name and the address, an empty group
        "From: =?utf-8?q?J=C3=B6rg?= <joerg@example.de>",
        'To: "Long\r\n\tFolded  Name" <folded@\r\n example.net>,\r\n other@example.net',
        "Cc: Undisclosed recipients:;",
        "Bcc: hidden@bcc.example",
        "Subject: two",
    ),
    _message(  # 3: a comment as the name, a group before a mailbox
        "From: plain@sender.example (Sender Comment)",
        "To: Team: ;, solo@example.net",
        "Subject: three",
    ),
    _message(  # 4: values no address parser makes sense of: searched as they are
        'From: "unterminated <broken@@@ (((',
        "To: <<@>>, ,,;:",
        "Subject: four",
    ),
    _message("Subject: five"),  # 5: no address fields at all
]
ALL = [1, 2, 3, 4, 5]


@dataclass
class Corpus:
    server: ServerProcess
    user: User


@pytest.fixture(scope="module")
def corpus(server: ServerProcess, user_pool: UserPool) -> Corpus:
    user = user_pool.get()
    client = RawClient.connect(server.imap_port)
    try:
        client.login(user.name, user.password)
        for message in MESSAGES:
            appenduid(client.command_with_literal("APPEND INBOX ", message))
    finally:
        client.close()
    return Corpus(server, user)


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


def search_utf8(client: RawClient, key: str, needle: str) -> list[int]:
    response = client.command_with_literal(f"SEARCH CHARSET UTF-8 {key} ", needle.encode())
    assert response.ok, (key, needle, response.line)
    return sorted(search_numbers(response))


CASES = [
    # FROM: the addr-spec with the comments and their spaces removed, any case, any part
    ("FROM user-from@domain.org", [1]),
    ("FROM USER-FROM@DOMAIN.ORG", [1]),
    ('FROM "from@domain"', [1]),
    ("FROM domain.org", [1]),
    ('FROM "user-from (comment)@"', [1]),  # the header's own text still counts
    ("FROM joerg@example.de", [2]),
    ('FROM "plain@sender.example"', [3]),
    ('FROM "sender comment"', [3]),
    ('FROM "Sender Comment <plain@sender.example>"', [3]),
    ("FROM example", [2, 3]),
    ("FROM broken", [4]),  # unparsable: the raw text
    ('FROM "unterminated <broken@@@"', [4]),
    ("FROM nobody", []),
    ('FROM "user-from@domain.org.uk"', []),
    ('FROM "real name"', []),
    # TO: quoted names, folded names and addresses, groups
    ('TO "Real Name"', [1]),
    ('TO "real name <REAL@B.ORG>"', [1]),
    ('TO "folded@example.net"', [2]),
    ('TO "Folded Name"', [2]),
    ('TO "Long Folded Name <folded@example.net>"', [2]),
    ("TO other@example.net", [2]),
    ("TO team", [3]),
    ("TO solo", [3]),
    ('TO "example.net"', [2, 3]),
    ('TO "<<@>>"', [4]),
    ("TO joerg", []),
    # CC: addr (Name), an empty group
    ("CC cc-user@cc.example", [1]),
    ('CC "cc person"', [1]),
    ('CC "Cc Person <cc-user@cc.example>"', [1]),
    ("CC undisclosed", [2]),
    ("CC friends", []),
    # BCC: a group's name and members
    ("BCC friends", [1]),
    ("BCC friend2@friends.example", [1]),
    ('BCC "Second Friend <friend2@friends.example>"', [1]),
    ("BCC hidden", [2]),
    ("BCC real", []),
    # combinations, and HEADER keeping to the header's own text
    ("NOT FROM domain.org", [2, 3, 4, 5]),
    ("OR FROM joerg TO solo", [2, 3]),
    ("FROM domain.org TO real@b.org", [1]),
    ("HEADER From user-from@domain.org", []),
    ('HEADER From "(comment)"', [1]),
    ('HEADER To "Real Name"', [1]),
    ('HEADER To "Real Name <real@b.org>"', []),
    ('HEADER Bcc "Friends:"', [1]),
]


@pytest.mark.parametrize("criteria, expected", CASES, ids=[c for c, _ in CASES])
def test_address_search(ro: RawClient, criteria: str, expected: list[int]) -> None:
    assert search(ro, criteria) == expected


def test_rfc2047_display_names_in_utf8(ro: RawClient) -> None:
    assert search_utf8(ro, "FROM", "J\u00f6rg") == [2]
    assert search_utf8(ro, "FROM", "J\u00d6RG <JOERG@EXAMPLE.DE>") == [2]
    assert search_utf8(ro, "FROM", "J\u00f6rg M") == []
    assert search_utf8(ro, "TO", "J\u00f6rg") == []


def test_a_line_break_in_the_string_matches_no_address(ro: RawClient) -> None:
    # The normalised forms are kept apart: a string never matches across two of them.
    for needle in ("comment)\nuser-from", "org\r\nuser-from", "Friends\nfriend1"):
        for key in ("FROM", "BCC"):
            assert search_utf8(ro, key, needle) == [], (key, needle)
        assert search_utf8(ro, "HEADER From", needle) == [], needle


def test_uid_search_and_every_field_at_once(ro: RawClient) -> None:
    response = ro.command(
        "UID SEARCH OR OR FROM user-from@domain.org TO folded@example.net"
        ' OR CC "Cc Person <cc-user@cc.example>" BCC "Second Friend <friend2@friends.example>"'
    )
    assert response.ok, response.line
    assert len(search_numbers(response)) == 2
