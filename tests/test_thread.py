"""THREAD and UID THREAD (RFC 5256): the ORDEREDSUBJECT and REFERENCES algorithms on their
own (missing parents and dummies, loops in References, duplicate Message-IDs, the subject
merge, date order) and over raw sockets and imapclient on every backend."""

from __future__ import annotations

import gc
from collections.abc import Generator

import pytest
from imapclient import IMAPClient
from imapserver import Connector
from test_sort import mail, selected

from mailserv.imap.sorting import CHUNK, released
from mailserv.imap.threads import Message, ordered_subject, references
from mailserv.message.sortkeys import references_of
from mailserv.message.subject import base_subject, sort_key


def run(work: Generator[None, None, bytes]) -> str:
    while True:
        try:
            next(work)
        except StopIteration as done:
            return done.value.decode()  # type: ignore[no-any-return]


def msg(
    number: int, subject: str = "", mid: str = "", refs: str = "", date: float | None = None
) -> Message:
    base, reply = base_subject(subject)
    ids = references_of(refs.encode(), None)
    return Message(number, float(number if date is None else date), mid, ids, sort_key(base), reply)


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        # a chain and a sibling
        (
            [
                msg(1, "x", "a@h"),
                msg(2, "Re: x", "b@h", "<a@h>"),
                msg(3, "Re: x", "c@h", "<a@h> <b@h>"),
                msg(4, "Re: x", "d@h", "<a@h>"),
            ],
            "(1 (2 3)(4))",
        ),
        # two replies to a missing message: a dummy at the top keeps them together
        ([msg(1, "p", "b@h", "<x@h>"), msg(2, "q", "c@h", "<x@h>")], "((1)(2))"),
        # one reply to a missing message: the dummy goes
        ([msg(1, "p", "b@h", "<x@h>")], "(1)"),
        # a missing message in the middle: its child moves up
        ([msg(1, "p", "a@h"), msg(2, "q", "c@h", "<a@h> <x@h>")], "(1 2)"),
        # References that loop
        ([msg(1, "p", "a@h", "<b@h>"), msg(2, "q", "b@h", "<a@h>")], "(2 1)"),
        ([msg(1, "p", "a@h", "<a@h>")], "(1)"),
        ([msg(1, "p", "a@h", "<b@h> <a@h> <b@h>"), msg(2, "q", "b@h", "<a@h>")], "(2 1)"),
        # a duplicate Message-ID: the later message is another one
        ([msg(1, "p", "a@h"), msg(2, "q", "a@h"), msg(3, "r", "c@h", "<a@h>")], "(1 3)(2)"),
        # the subject merge: a reply joins the original; equals go under a dummy
        ([msg(1, "Hello"), msg(2, "Re: Hello")], "(1 2)"),
        ([msg(1, "Re: Hello"), msg(2, "Hello")], "(2 1)"),
        ([msg(1, "Hi"), msg(2, "hi"), msg(3, "other")], "((1)(2))(3)"),
        ([msg(1, "", "a@h"), msg(2, "")], "(1)(2)"),
        # siblings and threads by sent date, ties in mailbox order
        (
            [
                msg(1, "a", "a@h", date=5),
                msg(2, "b", "b@h", "<a@h>", 9),
                msg(3, "c", "c@h", "<a@h>", 7),
                msg(4, "d", "d@h", date=1),
                msg(5, "e", "e@h", date=1),
            ],
            "(4)(5)(1 (3)(2))",
        ),
    ],
)
def test_references(messages: list[Message], expected: str) -> None:
    assert run(references(messages)) == expected


def test_ordered_subject() -> None:
    messages = [
        msg(1, "a", date=1),
        msg(2, "b", date=2),
        msg(3, "Re: a", date=3),
        msg(4, "A", date=0),
        msg(5, "Re: b", date=4),
        msg(6, "c", date=9),
    ]
    assert run(ordered_subject(messages)) == "(4 (1)(3))(2 5)(6)"
    assert run(ordered_subject([])) == ""


def test_long_chains_do_not_recurse() -> None:
    count = 5000
    chain = [msg(1, "x", "m1@h")] + [
        msg(n, "Re: x", f"m{n}@h", f"<m{n - 1}@h>") for n in range(2, count + 1)
    ]
    assert run(references(chain)) == "(" + " ".join(map(str, range(1, count + 1))) + ")"


# -- over the wire ----------------------------------------------------------------------------


def thread(client, command: str) -> str:  # type: ignore[no-untyped-def]
    response = client.command(command)
    assert response.ok, response.line
    (line,) = response.data("THREAD")
    return line.decode()


def test_capabilities(raw) -> None:  # type: ignore[no-untyped-def]
    words = raw.command("CAPABILITY").data("CAPABILITY")[0].decode().upper().split()
    assert "THREAD=REFERENCES" in words and "THREAD=ORDEREDSUBJECT" in words


def test_thread_over_the_wire(connect: Connector) -> None:
    date = "Mon, 0{} Jan 2024 12:00:00 +0000"
    client = selected(
        connect,
        [
            mail("hello", date.format(1), message_id="<a@h>"),
            mail("Re: hello", date.format(3), message_id="<b@h>", references="<a@h>"),
            mail("other", date.format(2), message_id="<c@h>"),
            mail("Re: hello", date.format(4), message_id="<d@h>", in_reply_to="<a@h>"),
            mail("Re: gone", date.format(5), message_id="<e@h>", references="<x@h>"),
            mail("Fwd: gone", None, message_id="<f@h>", references="<x@h>"),
        ],
    )
    assert thread(client, "THREAD REFERENCES UTF-8 ALL") == "(1 (2)(4))(3)((5)(6))"
    assert thread(client, "THREAD ORDEREDSUBJECT UTF-8 ALL") == "(1 (2)(4))(3)(5 6)"
    assert thread(client, "THREAD REFERENCES US-ASCII NOT SUBJECT other") == "(1 (2)(4))((5)(6))"
    assert client.command("STORE 1 +FLAGS (\\Deleted)").ok and client.command("EXPUNGE").ok
    # 2 and 4 answer a message that is gone now: a dummy holds them
    assert thread(client, "UID THREAD REFERENCES UTF-8 ALL") == "(3)((2)(4))((5)(6))"
    response = client.command("THREAD REFERENCES UTF-8 SUBJECT nothing")
    assert response.ok and response.data("THREAD") == [b""]
    imap: IMAPClient = connect.imapclient()
    imap.select_folder("INBOX")
    assert imap.thread("REFERENCES") == ((3,), ((2,), (4,)), ((5,), (6,)))


@pytest.mark.one_backend  # the engine refuses these before any backend is asked
@pytest.mark.parametrize(
    "command",
    [
        "THREAD BOGUS UTF-8 ALL",
        "THREAD REFERENCES UTF-8",
        "THREAD REFERENCES",
        "THREAD (REFERENCES) UTF-8 ALL",
        "THREAD REFERENCES UTF-8 NOSUCHKEY",
    ],
)
def test_bad_input(connect: Connector, command: str) -> None:
    client = selected(connect, [mail("a")])
    assert client.command(command).status == "BAD"
    assert client.command("THREAD REFERENCES KOI8-R ALL").status == "NO"
    assert client.command("NOOP").ok


def test_references_gives_way_every_few_hundred_messages() -> None:
    """Each pass over the messages or the nodes yields every few hundred of them (a node
    costs some microseconds): passes of 4,096 held the reactor 15-70 ms at 100k."""
    count = 8192
    messages = [
        Message(
            n + 1,
            1.6e9 + (n * 7919) % count,
            f"m{n}@x",
            (f"m{(n * 31) % n}@x",) if n and n % 4 == 0 else (),
            f"s{(n * 13) % (count // 4)}",
            n % 4 == 0,
        )
        for n in range(count)
    ]
    work = references(messages)
    yields = 0
    try:
        while True:
            next(work)
            yields += 1
    except StopIteration:
        pass
    assert yields >= 5 * count // 512  # five passes at least, one yield per 512 or fewer


def test_what_references_builds_is_freed_before_it_returns() -> None:
    """Its tree (parent and child links: cycles) is taken apart a chunk at a time before
    the answer is returned: none of it is left to the collector, whose full passes would
    free 100k nodes at once, nor to the end of the command, which freed them in one turn."""
    messages = [
        Message(n + 1, 1.6e9 + n, f"m{n}@x", (f"m{n // 2}@x",) if n else (), f"s{n % 7}", n > 0)
        for n in range(3000)
    ]
    work = references(messages)
    gc.disable()
    try:
        while True:
            next(work)
    except StopIteration as done:
        answer = done.value
    finally:
        del work
        left = sum(type(o).__name__ == "_Node" for o in gc.get_objects())
        gc.enable()
    assert answer.startswith(b"(1 ")
    assert left == 0


def test_released_empties_lists_a_chunk_at_a_time() -> None:
    items = [(n,) for n in range(2 * CHUNK + 1)]
    other = [1]
    work = released(items, other)
    assert [None for _ in work] == [None] * 4
    assert items == [] and other == []
