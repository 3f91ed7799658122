"""LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE selection and
CREATE-SPECIAL-USE (RFC 6154), STATUS=SIZE (RFC 8438): raw sockets and imapclient, every
backend."""

from __future__ import annotations

import pytest
from imapclient import IMAPClient
from imapserver import Connector

from bench import messages
from bench.harness import RawClient, Response, parse_values


def ok(client: RawClient, command: str) -> Response:
    response = client.command(command)
    assert response.ok, (command, response.line)
    return response


def entries(response: Response) -> dict[str, tuple[set[str], list[object]]]:
    """{name: (attributes, extended data items)} of the LIST lines, in order."""
    assert response.ok, response.line
    out: dict[str, tuple[set[str], list[object]]] = {}
    for data in response.data("LIST"):
        values, _ = parse_values(data)
        attrs, delimiter, name, *extended = values
        assert isinstance(attrs, list) and delimiter == b"/", data
        text = name.decode() if isinstance(name, bytes) else str(name)
        assert text not in out, f"{text} listed twice"
        out[text] = ({str(a) for a in attrs}, extended)
    return out


@pytest.fixture
def tree(raw: RawClient) -> RawClient:
    """Foo, Foo/Bar (subscribed), Foo/Baz, Qux (subscribed), Gone (subscribed, not there)."""
    for name in ("Foo", "Foo/Bar", "Foo/Baz", "Qux"):
        ok(raw, f"CREATE {name}")
    for name in ("Foo/Bar", "Qux", "Gone"):
        ok(raw, f"SUBSCRIBE {name}")
    return raw


def test_capabilities_offered(raw: RawClient) -> None:
    words = ok(raw, "CAPABILITY").data("CAPABILITY")[0].decode().upper().split()
    for word in ("LIST-EXTENDED", "LIST-STATUS", "CREATE-SPECIAL-USE", "STATUS=SIZE"):
        assert word in words


def test_basic_list_is_unchanged(tree: RawClient) -> None:
    listed = entries(ok(tree, 'LIST "" *'))
    assert list(listed) == ["INBOX", "Foo", "Foo/Bar", "Foo/Baz", "Qux"]
    assert listed["Foo"][0] == {"\\HasChildren"}
    assert all(not extended for _, extended in listed.values())
    assert "\\Subscribed" not in listed["Qux"][0]


def test_subscribed_selection_lists_subscriptions_even_gone_ones(tree: RawClient) -> None:
    """RFC 5258 3.1: SUBSCRIBED selects subscribed names, \\NonExistent for missing ones,
    and implies RETURN (SUBSCRIBED)."""
    listed = entries(ok(tree, 'LIST (SUBSCRIBED) "" *'))
    assert set(listed) == {"Foo/Bar", "Qux", "Gone"}
    assert "\\Subscribed" in listed["Foo/Bar"][0]
    assert listed["Gone"][0] == {"\\NonExistent", "\\Subscribed"}


def test_recursivematch_reports_subscribed_children(tree: RawClient) -> None:
    """RFC 5258 3.5's example: Foo is not subscribed but Foo/Bar is."""
    listed = entries(ok(tree, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" %'))
    assert set(listed) == {"Foo", "Qux", "Gone"}
    assert listed["Foo"][1] == [[b"CHILDINFO", [b"SUBSCRIBED"]]]
    assert "\\Subscribed" not in listed["Foo"][0]
    assert listed["Qux"][1] == []


def test_return_subscribed_and_children(tree: RawClient) -> None:
    listed = entries(ok(tree, 'LIST "" % RETURN (SUBSCRIBED CHILDREN)'))
    assert set(listed) == {"INBOX", "Foo", "Qux"}
    assert listed["Qux"][0] == {"\\Subscribed", "\\HasNoChildren"}
    assert listed["Foo"][0] == {"\\HasChildren"}


def test_several_patterns(tree: RawClient) -> None:
    listed = entries(ok(tree, 'LIST "" (INBOX "Foo/%" Nothing*)'))
    assert list(listed) == ["INBOX", "Foo/Bar", "Foo/Baz"]


@pytest.mark.one_backend  # the engine refuses these before any backend is asked
@pytest.mark.parametrize(
    "command",
    [
        'LIST (RECURSIVEMATCH) "" *',  # RECURSIVEMATCH alone
        'LIST (BOGUS) "" *',
        'LIST "" * RETURN (BOGUS)',
        'LIST "" * RETURN (STATUS)',
        'LIST "" * RETURN (STATUS (MESSAGES BOGUS))',
        'LIST "" ()',
        'LIST "" * RETURN',
    ],
)
def test_bad_extended_lists(raw: RawClient, command: str) -> None:
    response = raw.command(command)
    assert response.status == "BAD", (command, response.line)
    assert raw.command("NOOP").ok


def test_list_status_follows_each_selectable_mailbox(raw: RawClient) -> None:
    """RFC 5819: a STATUS line after each listed mailbox, none for \\Noselect ones."""
    ok(raw, "CREATE Box")
    ok(raw, "CREATE Parent/Child")
    ok(raw, "DELETE Parent")  # has an inferior: stays, as \Noselect
    message = messages.plain()
    assert raw.command_with_literal("APPEND Box (\\Seen) ", message).ok
    assert raw.command_with_literal("APPEND Box ", message).ok
    response = ok(raw, 'LIST "" * RETURN (STATUS (MESSAGES UNSEEN SIZE))')
    statuses = {}
    for data in response.data("STATUS"):
        values, _ = parse_values(data)
        name, items = values
        statuses[name.decode() if isinstance(name, bytes) else str(name)] = items
    assert statuses["Box"] == ["MESSAGES", 2, "UNSEEN", 1, "SIZE", 2 * len(message)]
    assert statuses["Parent/Child"][:2] == ["MESSAGES", 0]
    assert "INBOX" in statuses
    assert "Parent" not in statuses  # \Noselect: no STATUS
    lines = [line.split(b" ")[1] for line in response.untagged]
    first = lines.index(b"STATUS")
    assert lines[first - 1] == b"LIST"  # each STATUS right after its LIST


def test_special_use_selection_and_create(raw: RawClient) -> None:
    ok(raw, "CREATE Sent (USE (\\Sent))")
    ok(raw, "CREATE Plain")
    listed = entries(ok(raw, 'LIST (SPECIAL-USE) "" * RETURN (SPECIAL-USE)'))
    assert "Sent" in listed and "\\Sent" in listed["Sent"][0]
    assert "Plain" not in listed and "INBOX" not in listed
    bad = raw.command("CREATE Other (USE (\\Bogus))")
    assert bad.status == "NO" and b"[USEATTR]" in bad.line


def test_status_size(raw: RawClient) -> None:
    ok(raw, "CREATE Sized")
    message = messages.plain()
    assert raw.command_with_literal("APPEND Sized ", message).ok
    response = ok(raw, "STATUS Sized (SIZE MESSAGES)")
    values, _ = parse_values(response.data("STATUS")[0])
    assert values[1] == ["SIZE", len(message), "MESSAGES", 1]


def test_imapclient_list_status_and_subscribed(connect: Connector) -> None:
    client: IMAPClient = connect.imapclient()
    try:
        client.create_folder("Watched")
        client.subscribe_folder("Watched")
        listed = client.list_sub_folders()
        assert any(name == "Watched" for _, _, name in listed)
        raw = client._imap  # imapclient offers no LIST-STATUS call: send it as a client would
        typ, _ = raw._simple_command("LIST", '""', '"Watched"', "RETURN", "(STATUS (MESSAGES))")
        assert typ == "OK"
        assert raw.untagged_responses.get("STATUS") == [b"Watched (MESSAGES 0)"]
    finally:
        client.logout()
