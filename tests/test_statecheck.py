"""The concurrent state checker (bench/statecheck/): on every backend, and on its own.

The run on each backend (a few clients for a few seconds over real sockets) must find no
violation and must have sent every kind of command.  The model is also fed response
streams that are wrong on purpose, so the checker cannot pass by checking nothing.
"""

from __future__ import annotations

import pytest
from imapserver import Connector, User

from bench.harness import ParseError, RawClient, ServerProcess, parse_values
from bench.statecheck import Model, Settings, World, compare, parse_simple, run_check

KINDS = (
    "SELECT",
    "EXAMINE",
    "FETCH",
    "UID FETCH",
    "STORE",
    "UID STORE",
    "APPEND",
    "COPY",
    "UID COPY",
    "MOVE",
    "UID MOVE",
    "EXPUNGE",
    "UID EXPUNGE",
    "STATUS",
    "IDLE",
    "NOOP",
    "CLOSE",
    "LOGOUT",
)


@pytest.mark.timeout(90)
def test_concurrent_clients_see_a_consistent_mailbox(server: ServerProcess, user: User) -> None:
    settings = Settings(
        port=server.imap_port,
        users=[(user.name, user.password)],
        clients=8,
        seconds=6.0,
        seed=8,
        round_seconds=2.0,
    )
    report = run_check(settings)
    assert report.violation_count == 0, report.text(show=15)
    missing = [kind for kind in KINDS if report.kinds[kind] == 0]
    assert not missing, f"never sent: {missing}\n{report.text()}"
    assert report.compared > 0, report.text()
    assert server.alive


# -- two sessions, step by step: what the long run found, made deterministic ---------------


class Checked:
    """A raw client whose every response goes through a Model."""

    def __init__(self, world: World, name: str, client: RawClient) -> None:
        self.client = client
        self.model = Model(world, name)

    def run(self, command: str, target: str | None = None) -> None:
        tag = self.client.next_tag()
        self.model.begin(tag, command, target)
        response = self.client.command(command, tag=tag)
        for line in response.untagged:
            self.model.untagged(line)
        self.model.tagged(response.line)


def sessions(connect: Connector, count: int) -> tuple[World, list[Checked]]:
    world = World()
    return world, [Checked(world, f"s{i}", connect.raw()) for i in range(count)]


def fresh_agrees(world: World, connect: Connector, *checked: Checked) -> None:
    """Each session NOOPs; then a fresh EXAMINE must agree with what each was told."""
    for one in checked:
        one.run("NOOP")
    ref = Checked(world, "fresh", connect.raw())
    ref.run("EXAMINE INBOX", target="INBOX")
    ref.run("FETCH 1:* (UID FLAGS)")
    for one in checked:
        compare(world, ref.model, one.model)


MESSAGE = b"Subject: statecheck\r\n\r\nhello\r\n"


def test_expunge_of_a_message_not_announced_yet(connect: Connector) -> None:
    """EXPUNGE removes a message another session appended: EXISTS and EXPUNGE, or neither."""
    world, (a, b) = sessions(connect, 2)
    b.client.append_many("INBOX", [MESSAGE] * 3)
    a.run("SELECT INBOX", target="INBOX")
    b.client.append_many("INBOX", [MESSAGE], flags="\\Deleted")
    a.run("EXPUNGE")
    fresh_agrees(world, connect, a)
    assert world.violations == [], "\n".join(map(str, world.violations))


def test_store_answer_not_followed_by_an_older_update(connect: Connector) -> None:
    """Another session's earlier flag change must not be reported after our STORE's result."""
    world, (a, b) = sessions(connect, 2)
    b.client.append_many("INBOX", [MESSAGE] * 2)
    a.run("SELECT INBOX", target="INBOX")
    b.run("SELECT INBOX", target="INBOX")
    b.run("STORE 1 FLAGS (\\Seen)")
    a.run("STORE 1 +FLAGS (\\Flagged)")
    fresh_agrees(world, connect, a, b)
    assert world.violations == [], "\n".join(map(str, world.violations))


def test_logout_with_updates_pending(connect: Connector) -> None:
    world, (a, b) = sessions(connect, 2)
    b.client.append_many("INBOX", [MESSAGE] * 2)
    a.run("SELECT INBOX", target="INBOX")
    b.run("SELECT INBOX", target="INBOX")
    b.run("STORE 1 +FLAGS (\\Deleted $Pending)")
    b.run("EXPUNGE")
    b.client.append_many("INBOX", [MESSAGE])
    a.run("LOGOUT")
    assert world.violations == [], "\n".join(map(str, world.violations))


class Idling:
    """``one`` in IDLE: ``interrupt`` sends DONE and the next command in one write, so the
    server reads them while it may still be working on an update it owes the IDLE."""

    def __init__(self, one: Checked) -> None:
        self.one = one
        self.tag = one.client.next_tag()
        one.model.begin(self.tag, "IDLE")
        one.client.send(f"{self.tag} IDLE\r\n")
        while not (line := one.client.read_response()).startswith(b"+"):
            one.model.untagged(line)

    def interrupt(self, command: str, target: str | None = None) -> None:
        one = self.one
        tag = one.client.next_tag()
        one.client.send(f"DONE\r\n{tag} {command}\r\n")
        idle = one.client.read_until_tagged(self.tag)
        for line in idle.untagged:
            one.model.untagged(line)
        one.model.tagged(idle.line)
        one.model.begin(tag, command, target)
        response = one.client.read_until_tagged(tag)
        for line in response.untagged:
            one.model.untagged(line)
        one.model.tagged(response.line)


IDLE_ROUNDS = 12
"""The race is between a thread's answer and the client's next bytes: a few tries."""


def test_idle_update_not_sent_into_the_next_select(connect: Connector) -> None:
    """An update for the mailbox IDLE watched, computed as the client ends IDLE and selects
    another mailbox, must not be written into the other mailbox's SELECT or after it."""
    world, (a, b) = sessions(connect, 2)
    b.client.command("CREATE Other")
    b.client.append_many("Other", [MESSAGE] * 2)
    for _ in range(IDLE_ROUNDS):
        a.run("SELECT INBOX", target="INBOX")
        idling = Idling(a)
        b.client.append_many("INBOX", [MESSAGE])
        idling.interrupt('SELECT "Other"', target="Other")
    fresh_agrees(world, connect)
    assert world.violations == [], "\n".join(map(str, world.violations))


def test_idle_update_not_sent_into_the_next_fetch(connect: Connector) -> None:
    """IDLE ends while the server computes an update (a new message, an expunge, a new
    keyword: another session's MOVE within the mailbox): the FETCH that follows gets no
    EXPUNGE, no message before its EXISTS and no keyword before its FLAGS."""
    world, (a,) = sessions(connect, 1)
    mover = connect.raw()  # not modelled: its own MOVEs are not checked here
    mover.append_many("INBOX", [MESSAGE] * 3)
    assert mover.command("SELECT INBOX").ok
    a.run("SELECT INBOX", target="INBOX")
    for n in range(IDLE_ROUNDS):
        assert mover.command(f"STORE 1 +FLAGS ($Idle{n})").ok
        idling = Idling(a)
        assert mover.command("MOVE 1 INBOX").ok  # one new message, one expunged
        idling.interrupt("FETCH 1:* (UID FLAGS)")
    fresh_agrees(world, connect, a)
    assert world.violations == [], "\n".join(map(str, world.violations))


# -- the model against wrong response streams ----------------------------------------------


def selected(
    world: World, count: int = 3, uids: tuple[int, ...] = (1, 2, 3), uidnext: int = 4
) -> Model:
    """A model that has SELECTed INBOX holding ``count`` messages with ``uids``."""
    model = Model(world, "m")
    model.begin("s", 'SELECT "INBOX"', target="INBOX")
    model.untagged(b"* FLAGS (\\Seen \\Deleted $Known)\r\n")
    model.untagged(b"* %d EXISTS\r\n" % count)
    model.untagged(b"* OK [UIDVALIDITY 7] ok\r\n")
    model.untagged(b"* OK [UIDNEXT %d] ok\r\n" % uidnext)
    assert model.tagged(b"s OK [READ-WRITE] done\r\n") == "OK"
    if count:
        model.begin("f", "FETCH 1:* (UID FLAGS)")
        for n, uid in enumerate(uids, 1):
            model.untagged(b"* %d FETCH (UID %d FLAGS ())\r\n" % (n, uid))
        model.tagged(b"f OK done\r\n")
    return model


def whats(world: World) -> list[str]:
    return [v.what for v in world.violations]


def test_a_correct_stream_passes() -> None:
    world = World()
    model = selected(world)
    model.begin("a", "NOOP")
    model.untagged(b"* FLAGS (\\Seen \\Deleted $Known $New)\r\n")
    model.untagged(b"* 2 FETCH (UID 2 FLAGS ($New))\r\n")
    model.untagged(b"* 2 EXPUNGE\r\n")
    model.untagged(b"* 3 EXISTS\r\n")
    model.tagged(b"a OK done\r\n")
    model.begin("b", "FETCH 3 (UID FLAGS)")
    model.untagged(b"* 3 FETCH (UID 4 FLAGS (\\Seen))\r\n")
    model.tagged(b"b OK done\r\n")
    model.begin("c", "LOGOUT")
    model.untagged(b"* BYE bye\r\n")
    model.tagged(b"c OK done\r\n")
    model.closed()
    assert world.violations == []
    assert [e.uid for e in model.entries] == [1, 3, 4]


def test_sequence_number_beyond_the_count() -> None:
    world = World()
    model = selected(world)
    model.begin("a", "NOOP")
    model.untagged(b"* 4 FETCH (FLAGS (\\Seen))\r\n")
    model.untagged(b"* 5 EXPUNGE\r\n")
    model.tagged(b"a OK done\r\n")
    assert whats(world) == [
        "FETCH 4 beyond the 3 messages known",
        "EXPUNGE 5 beyond the 3 messages known",
    ]


def test_expunge_renumbers() -> None:
    world = World()
    model = selected(world)
    model.begin("a", "NOOP")
    model.untagged(b"* 1 EXPUNGE\r\n")
    model.untagged(b"* 1 FETCH (UID 2 FLAGS ())\r\n")  # was message 2
    model.untagged(b"* 2 FETCH (UID 2 FLAGS ())\r\n")  # message 2 is now UID 3
    model.tagged(b"a OK done\r\n")
    assert whats(world) == ["message 2 has UID 2, was told UID 3"]


def test_reused_uid() -> None:
    world = World()
    model = selected(world)
    model.begin("a", "NOOP")
    model.untagged(b"* 3 EXPUNGE\r\n")
    model.untagged(b"* 3 EXISTS\r\n")
    model.untagged(b"* 3 FETCH (UID 3 FLAGS ())\r\n")
    model.tagged(b"a OK done\r\n")
    assert "UID 3 again after its EXPUNGE" in whats(world)
    assert "new message has UID 3, not above UID 3 known" in whats(world)


def test_expunged_uid_in_a_later_select() -> None:
    world = World()
    first = selected(world)
    first.begin("a", "EXPUNGE")
    first.untagged(b"* 2 EXPUNGE\r\n")
    first.tagged(b"a OK done\r\n")
    selected(world, 3, (1, 2, 3))  # a fresh SELECT still shows UID 2
    assert "UID 2 was expunged before this mailbox was selected" in whats(world)


def test_uids_not_ascending() -> None:
    world = World()
    model = selected(world, 3, (), uidnext=10)
    model.begin("a", "FETCH 1:3 (UID)")
    model.untagged(b"* 1 FETCH (UID 5)\r\n")
    model.untagged(b"* 2 FETCH (UID 4)\r\n")
    model.tagged(b"a OK done\r\n")
    assert whats(world) == ["UIDs not ascending: message 1 has UID 5"]


def test_keyword_not_announced_by_flags() -> None:
    world = World()
    model = selected(world)
    model.begin("a", "NOOP")
    model.untagged(b"* 1 FETCH (UID 1 FLAGS ($Known \\Seen))\r\n")
    model.untagged(b"* 2 FETCH (UID 2 FLAGS ($Surprise))\r\n")
    model.tagged(b"a OK done\r\n")
    assert whats(world) == ["keyword $Surprise in FETCH but not in the FLAGS list"]


def test_exists_shrinking() -> None:
    world = World()
    model = selected(world)
    model.begin("a", "NOOP")
    model.untagged(b"* 2 EXISTS\r\n")
    model.tagged(b"a OK done\r\n")
    assert whats(world) == ["EXISTS 2 below the 3 messages known"]


def test_data_after_bye() -> None:
    world = World()
    model = selected(world)
    model.begin("a", "NOOP")
    model.untagged(b"* BYE going away\r\n")
    model.untagged(b"* 4 EXISTS\r\n")
    model.tagged(b"a OK done\r\n")
    assert whats(world) == [
        "BYE the client did not ask for",
        "response after BYE",
        "tagged response after BYE",
    ]


def test_logout_flushing_pending_updates() -> None:
    world = World()
    model = selected(world)
    model.begin("a", "LOGOUT")
    model.untagged(b"* 4 EXISTS\r\n")
    model.untagged(b"* BYE bye\r\n")
    model.untagged(b"* 1 EXPUNGE\r\n")
    model.tagged(b"a OK done\r\n")
    assert whats(world) == [
        "LOGOUT answered with something else than BYE",
        "response after BYE",
    ]


def test_tag_mismatch() -> None:
    world = World()
    model = selected(world)
    model.begin("a", "NOOP")
    model.tagged(b"b OK done\r\n")
    assert whats(world) == ["tagged response for 'b', the command in flight is 'a'"]


def test_uidnext_and_uidvalidity() -> None:
    world = World()
    selected(world, 3, (1, 2, 3))  # UIDNEXT 4 told
    model = Model(world, "n")
    model.begin("s", "EXAMINE INBOX", target="INBOX")
    feed(model, b"* FLAGS ()\r\n* 0 EXISTS\r\n")
    model.untagged(b"* OK [UIDVALIDITY 8] ok\r\n")
    model.untagged(b"* OK [UIDNEXT 3] ok\r\n")
    model.tagged(b"s OK done\r\n")
    assert whats(world) == [
        "UIDVALIDITY 8, was 7",
        "UIDNEXT 3 below UIDNEXT 4 told",
        "UIDNEXT 3 not above UID 3 seen",
    ]


def test_appenduid_below_uids_seen() -> None:
    world = World()
    model = selected(world)
    model.begin("a", 'APPEND "INBOX"', target="INBOX")
    model.tagged(b"a OK [APPENDUID 7 2] done\r\n")
    assert "new UID 2 not above UID 3 seen before" in whats(world)


def test_body_changing_and_bad_partial() -> None:
    world = World()
    model = selected(world)
    model.begin("a", "FETCH 1 (UID BODY.PEEK[])")
    model.untagged(b"* 1 FETCH (UID 1 BODY[] {8}\r\nSubject:)\r\n")
    model.tagged(b"a OK done\r\n")
    model.begin("b", "FETCH 1 (UID BODY.PEEK[]<2.3>)")
    model.untagged(b"* 1 FETCH (UID 1 BODY[]<2> {3}\r\nxyz)\r\n")
    model.tagged(b"b OK done\r\n")
    model.begin("c", "FETCH 1 (UID BODY.PEEK[])")
    model.untagged(b"* 1 FETCH (UID 1 BODY[] {8}\r\nSubjecT:)\r\n")
    model.tagged(b"c OK done\r\n")
    assert whats(world) == [
        "UID 1: partial BODY[]<2> is not that slice of its body",
        "UID 1: body differs from an earlier FETCH",
    ]


def test_fresh_select_disagreeing() -> None:
    world = World()
    client = selected(world)
    reference = selected(world)
    assert compare(world, reference, client)
    reference.begin("a", "NOOP")
    reference.untagged(b"* 2 FETCH (FLAGS (\\Seen))\r\n")
    reference.tagged(b"a OK done\r\n")
    assert not compare(world, reference, client)
    reference.begin("b", "NOOP")
    reference.untagged(b"* 3 EXPUNGE\r\n")
    reference.tagged(b"b OK done\r\n")
    assert not compare(world, reference, client)
    assert whats(world) == [
        "message 2 (UID 2): flags differ from a fresh FETCH",
        "client knows 3 messages, a fresh EXAMINE shows 2",
    ]


def test_expunge_during_fetch() -> None:
    world = World()
    model = selected(world)
    model.begin("a", "FETCH 1 (FLAGS)")
    model.untagged(b"* 3 EXPUNGE\r\n")
    model.tagged(b"a OK done\r\n")
    assert whats(world) == ["EXPUNGE during FETCH (RFC 3501 7.4.1)"]


def test_mailbox_data_after_close() -> None:
    world = World()
    model = selected(world)
    model.begin("a", "CLOSE")
    model.tagged(b"a OK done\r\n")
    model.begin("b", "NOOP")
    model.untagged(b"* 1 EXPUNGE\r\n")
    model.tagged(b"b OK done\r\n")
    assert whats(world) == ["mailbox data while no mailbox is selected (state auth)"]


def feed(model: Model, data: bytes) -> None:
    """Several untagged responses, one line each."""
    for line in data.split(b"\r\n")[:-1]:
        model.untagged(line + b"\r\n")


def test_message_arriving_during_select() -> None:
    """An EXISTS after UIDNEXT inside the SELECT response is a new message, above UIDNEXT."""
    world = World()
    model = Model(world, "m")
    model.begin("s", 'SELECT "INBOX"', target="INBOX")
    feed(model, b"* FLAGS ()\r\n* 2 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n")
    model.untagged(b"* OK [UIDNEXT 3] ok\r\n")
    model.untagged(b"* 3 EXISTS\r\n")
    model.tagged(b"s OK done\r\n")
    model.begin("f", "FETCH 1:* (UID)")
    feed(model, b"* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\n* 3 FETCH (UID 3)\r\n")
    model.tagged(b"f OK done\r\n")
    assert world.violations == []
    model.begin("g", "NOOP")
    feed(model, b"* 4 EXISTS\r\n* 4 FETCH (UID 3)\r\n")
    model.tagged(b"g OK done\r\n")
    assert whats(world) == [
        "new message has UID 3, not above UID 3 known",
        "UIDs not ascending: message 3 has UID 3",
    ]


def test_uid_of_the_select_view_at_or_above_uidnext() -> None:
    world = World()
    model = Model(world, "m")
    model.begin("s", 'SELECT "INBOX"', target="INBOX")
    feed(model, b"* FLAGS ()\r\n* OK [UIDNEXT 3] ok\r\n* OK [UIDVALIDITY 7] ok\r\n")
    model.untagged(b"* 2 EXISTS\r\n")  # UIDNEXT first: these two are still the view
    model.tagged(b"s OK done\r\n")
    model.begin("f", "FETCH 1:* (UID)")
    feed(model, b"* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 3)\r\n")
    model.tagged(b"f OK done\r\n")
    assert whats(world) == ["UID 3 not below the SELECT's UIDNEXT 3"]


def test_previous_mailbox_updates_during_select() -> None:
    """Pending updates of the mailbox selected before, sent in the answer to SELECT."""
    world = World()
    model = selected(world)
    model.begin("s", 'SELECT "Other"', target="Other")
    model.untagged(b"* 4 EXISTS\r\n")  # still about INBOX
    feed(model, b"* FLAGS ()\r\n* 2 EXISTS\r\n* OK [UIDVALIDITY 9] ok\r\n")
    model.untagged(b"* OK [UIDNEXT 3] ok\r\n")
    model.tagged(b"s OK done\r\n")
    assert whats(world) == ["EXISTS 2 below the 4 messages known"]


def test_fast_parser_agrees_with_the_harness_parser() -> None:
    samples = [
        b"(UID 7 FLAGS (\\Seen $Label1 \\Recent))\r\n",
        b"(FLAGS () UID 12)\r\n",
        b"(FLAGS (NIL \\*) RFC822.SIZE 4096)\r\n",
        b'(UID 3 BODY[HEADER] {6}\r\nab\r\n\r\n ENVELOPE (NIL "s" (("a" NIL "b" "c"))))\r\n',
    ]
    for data in samples:
        assert parse_simple(data) == parse_values(data)[0], data
    with pytest.raises(ParseError):
        parse_simple(b"(UID 1 FLAGS (\\Seen)\r\n")
