"""ESEARCH (RFC 4731): SEARCH RETURN (MIN MAX COUNT ALL), raw sockets and imapclient, every
backend; RFC 7162's MODSEQ result item with it."""

from __future__ import annotations

import pytest
from imapclient import IMAPClient
from imapserver import Connector

from bench import messages
from bench.harness import RawClient, Response


def esearch(client: RawClient, command: str) -> tuple[Response, str]:
    """The tagged response and the ESEARCH line's data after ``(TAG "...")``."""
    response = client.command(command)
    assert response.ok, (command, response.line)
    (line,) = response.data("ESEARCH")
    prefix = f'(TAG "{response.tag.decode()}")'
    text = line.decode()
    assert text.startswith(prefix), text
    assert not response.data("SEARCH")
    return response, text[len(prefix) :].strip()


@pytest.fixture
def eleven(connect: Connector) -> RawClient:
    """Eleven messages, 2, 10 and 11 flagged (RFC 4731's example set)."""
    connect.append([messages.plain(subject=f"m{n}") for n in range(1, 12)])
    client = connect.selected()
    assert client.command("STORE 2,10:11 +FLAGS (\\Flagged)").ok
    return client


def test_rfc_4731_examples(eleven: RawClient) -> None:
    assert esearch(eleven, "SEARCH RETURN (MIN COUNT) FLAGGED")[1] == "MIN 2 COUNT 3"
    assert esearch(eleven, "SEARCH RETURN () FLAGGED")[1] == "ALL 2,10:11"
    assert esearch(eleven, "SEARCH RETURN (MAX MIN ALL COUNT) FLAGGED")[1] == (
        "MIN 2 MAX 11 COUNT 3 ALL 2,10:11"
    )
    assert esearch(eleven, "SEARCH RETURN (MIN MAX) KEYWORD nothing")[1] == ""
    assert esearch(eleven, "SEARCH RETURN (COUNT ALL) KEYWORD nothing")[1] == "COUNT 0"


def test_uid_esearch_says_uid(eleven: RawClient) -> None:
    assert eleven.command("STORE 1 +FLAGS (\\Deleted)").ok
    assert eleven.command("EXPUNGE").ok  # sequence numbers and UIDs now differ by one
    assert esearch(eleven, "SEARCH RETURN (MIN) FLAGGED")[1] == "MIN 1"
    assert esearch(eleven, "UID SEARCH RETURN (MIN ALL) FLAGGED")[1] == "UID MIN 2 ALL 2,10:11"


def test_plain_search_unchanged(eleven: RawClient) -> None:
    response = eleven.command("SEARCH FLAGGED")
    assert response.data("SEARCH") == [b"2 10 11"]
    assert not response.data("ESEARCH")


def test_modseq_result_item(eleven: RawClient) -> None:
    _, text = esearch(eleven, "SEARCH RETURN (ALL) MODSEQ 1")
    assert text.startswith("ALL 1:11 MODSEQ "), text
    assert int(text.rsplit(" ", 1)[1]) > 1


@pytest.mark.one_backend  # the engine refuses these before any backend is asked
@pytest.mark.parametrize(
    "command",
    ["SEARCH RETURN (BOGUS) ALL", "SEARCH RETURN ALL", "SEARCH RETURN", "SEARCH RETURN (MIN)"],
)
def test_bad_esearch(eleven: RawClient, command: str) -> None:
    response = eleven.command(command)
    assert response.status == "BAD", (command, response.line)
    assert eleven.command("NOOP").ok


def test_imapclient_sees_esearch(connect: Connector) -> None:
    connect.append([messages.plain(subject=f"m{n}") for n in range(1, 4)])
    client: IMAPClient = connect.imapclient()
    try:
        assert b"ESEARCH" in client.capabilities()
        client.select_folder("INBOX")
        typ, _ = client._imap.uid("SEARCH", "RETURN", "(COUNT)", "ALL")
        assert typ == "OK"
        assert client._imap.untagged_responses.get("ESEARCH")
    finally:
        client.logout()
