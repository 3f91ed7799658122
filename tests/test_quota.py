"""QUOTA (RFC 9208): usage from the backends' counts, GETQUOTA/GETQUOTAROOT/SETQUOTA, STATUS
DELETED and DELETED-STORAGE, NO [OVERQUOTA] on APPEND, MULTIAPPEND and COPY, and the
configuration that sets the limits.

One server per backend with quotas serves the whole module (its users and their limits are
written before it starts); what the engine decides alone runs on one backend.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from imapserver import Connector, User

from bench.harness import RawClient, Response, ServerProcess
from mailserv.config import Config, ConfigError, load_config, parse_limit
from mailserv.quota import QuotaLedger, QuotaLimits, QuotaPolicy, Usage
from mailserv.tap import Options
from mailserv.workers.wire import decode_config, encode_config

DEFAULT = QuotaLimits(storage=100, messages=1000)
"""Every user's limits (the command line's ``--quota-storage`` and ``--quota-messages``)."""
TIGHT = QuotaLimits(storage=4, messages=3)
"""The limits of the users who hit them ([quota.users] of the configuration file)."""


def _user() -> User:
    return User("q" + secrets.token_hex(5), secrets.token_hex(8))


class QuotaServer:
    """The module's server, and its users by role: ``free`` has no limit, ``tight``,
    ``copier``, ``rfc``, ``racer`` and ``burster`` have TIGHT, every other one DEFAULT."""

    def __init__(self, proc: ServerProcess, users: dict[str, User]) -> None:
        self.proc = proc
        self.users = users

    def connect(self, role: str) -> Connector:
        return Connector(self.proc, self.users[role])


@pytest.fixture
def login(quota_server: QuotaServer) -> Iterator[Callable[[str], Connector]]:
    """``login(role)``: a Connector of that user on the module's server, closed after."""
    opened: list[Connector] = []

    def connect(role: str) -> Connector:
        opened.append(quota_server.connect(role))
        return opened[-1]

    yield connect
    for connector in opened:
        connector.close()


@pytest.fixture(scope="module")
def quota_server(
    server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[QuotaServer]:
    data_dir = tmp_path_factory.mktemp(f"quota-{server.backend.name}")
    roles = ("free", "tight", "copier", "rfc", "racer", "usage", "clients", "owner", "sharer")
    roles += ("burster",)  # pipelined APPENDs beyond TIGHT
    users = {role: _user() for role in roles}
    passwd = data_dir / "passwd"
    passwd.write_text("".join(f"{u.name}:{{PLAIN}}{u.password}::::::\n" for u in users.values()))
    passwd.chmod(0o600)
    config = data_dir / "quota.toml"
    config.write_text(
        "".join(
            f"[quota.users.{users[role].name}]\nstorage = 0\nmessages = 0\n"
            for role in ("free", "sharer")
        )
        + "".join(
            f"[quota.users.{users[role].name}]\nstorage = {TIGHT.storage}\n"
            f"messages = {TIGHT.messages}\n"
            for role in ("tight", "copier", "rfc", "racer", "owner", "burster")
        )
    )
    args = ["--workers", "1", "--config", str(config)]
    args += ["--quota-storage", str(DEFAULT.storage), "--quota-messages", str(DEFAULT.messages)]
    proc = ServerProcess(data_dir, server.backend, {"auth_failure_delay": 0.05}, args)
    try:
        proc.start()
    except Exception:
        proc.stop()
        raise
    yield QuotaServer(proc, users)
    proc.stop()


def sized(octets: int, subject: str = "q") -> bytes:
    """A message of exactly ``octets`` octets."""
    head = b"From: a@example.org\r\nSubject: %s\r\n\r\n" % subject.encode()
    body = octets - len(head) - 2
    assert body >= 0
    return head + b"x" * body + b"\r\n"


def append(client: RawClient, message: bytes, mailbox: str = "INBOX") -> Response:
    return client.command_with_literal(f"APPEND {mailbox} ", message)


def multiappend(client: RawClient, bodies: list[bytes]) -> Response:
    tag = client.next_tag()
    out = b"%s APPEND INBOX" % tag.encode()
    for body in bodies:
        out += b" {%d+}\r\n%s" % (len(body), body)
    client.send(out + b"\r\n")
    return client.read_until_tagged(tag)


def quota(client: RawClient) -> tuple[list[bytes], list[bytes]]:
    """GETQUOTAROOT INBOX: its QUOTAROOT and QUOTA data."""
    response = client.command("GETQUOTAROOT INBOX")
    assert response.ok, response.line
    return response.data("QUOTAROOT"), response.data("QUOTA")


def status(client: RawClient, mailbox: str, items: str) -> dict[str, int]:
    (line,) = client.command(f"STATUS {mailbox} ({items})").data("STATUS")
    words = line.split(b"(", 1)[1].rstrip(b")").split()
    return {k.decode(): int(v) for k, v in zip(words[::2], words[1::2], strict=True)}


def kib(octets: int) -> int:
    return -(-octets // 1024)


# -- usage from the backends' counts --------------------------------------------------------


def test_usage_follows_append_copy_store_expunge_move(login: Callable[[str], Connector]) -> None:
    connector = login("usage")
    client = connector.raw()
    assert quota(client) == ([b'INBOX ""'], [b'"" (STORAGE 0 100 MESSAGE 0 1000)'])
    a, b = sized(1500, "a"), sized(700, "b")
    assert append(client, a).ok and append(client, b).ok
    assert client.command("CREATE Keep").ok
    assert client.command("SELECT INBOX").ok
    assert client.command("COPY 1 Keep").ok
    used = 1500 + 700 + 1500
    assert quota(client)[1] == [b'"" (STORAGE %d 100 MESSAGE 3 1000)' % kib(used)]
    assert client.command("STORE 1 +FLAGS.SILENT (\\Deleted)").ok
    got = status(client, "INBOX", "MESSAGES DELETED DELETED-STORAGE SIZE")
    assert got == {"MESSAGES": 2, "DELETED": 1, "DELETED-STORAGE": kib(1500), "SIZE": 2200}
    assert client.command("EXPUNGE").ok
    assert status(client, "INBOX", "DELETED DELETED-STORAGE") == {
        "DELETED": 0,
        "DELETED-STORAGE": 0,
    }
    used -= 1500
    assert quota(client)[1] == [b'"" (STORAGE %d 100 MESSAGE 2 1000)' % kib(used)]
    assert client.command("MOVE 1 Keep").ok
    assert quota(client)[1] == [b'"" (STORAGE %d 100 MESSAGE 2 1000)' % kib(used)]
    # LIST-STATUS reads the items the same way
    listed = client.command('LIST "" "Keep" RETURN (STATUS (DELETED DELETED-STORAGE))')
    assert listed.data("STATUS") == [b"Keep (DELETED 0 DELETED-STORAGE 0)"]


def test_simultaneous_appends_do_not_overshoot(login: Callable[[str], Connector]) -> None:
    """Four sessions of one user APPEND 1500 octets each at once, 4 KiB allowed: two fit,
    and a store that hands the reactor back while it writes must not let more in."""
    connector = login("racer")
    clients = [connector.raw() for _ in range(4)]
    # A new user's INBOX exists before the race: four first APPENDs at once race Dovecot's
    # own creation of INBOX behind the proxy (NO [ALREADYEXISTS], or the upstream gone).
    assert status(clients[0], "INBOX", "MESSAGES") == {"MESSAGES": 0}
    body = sized(1500)
    tags = [client.next_tag() for client in clients]
    for client, tag in zip(clients, tags, strict=True):
        client.send(b"%s APPEND INBOX {%d+}\r\n%s\r\n" % (tag.encode(), len(body), body))
    results = [client.read_until_tagged(tag) for client, tag in zip(clients, tags, strict=True)]
    assert all(r.ok or r.code == "OVERQUOTA" for r in results), [r.line for r in results]
    stored = sum(r.ok for r in results)
    assert 1 <= stored <= 2, [r.line for r in results]
    assert status(clients[0], "INBOX", "MESSAGES") == {"MESSAGES": stored}


def test_a_pipelined_burst_stops_at_the_limit(login: Callable[[str], Connector]) -> None:
    """Five pipelined APPENDs, three messages allowed: the burst does not fit as a whole,
    so each APPEND is charged alone, the first three stored and the last two refused."""
    client = login("burster").raw()
    assert status(client, "INBOX", "MESSAGES") == {"MESSAGES": 0}
    body = sized(300)
    tags = [client.next_tag() for _ in range(5)]
    client.send(
        b"".join(b"%s APPEND INBOX {%d+}\r\n%s\r\n" % (t.encode(), len(body), body) for t in tags)
    )
    results = [client.read_until_tagged(tag) for tag in tags]
    assert [(r.status, r.code if not r.ok else None) for r in results] == [
        ("OK", None), ("OK", None), ("OK", None), ("NO", "OVERQUOTA"), ("NO", "OVERQUOTA")
    ], [r.line for r in results]  # fmt: skip
    assert status(client, "INBOX", "MESSAGES") == {"MESSAGES": 3}


@pytest.mark.one_backend
def test_imaplib_and_imapclient_read_the_quota(login: Callable[[str], Connector]) -> None:
    connector = login("clients")
    conn = connector.imaplib()
    typ, data = conn.getquotaroot("INBOX")
    assert typ == "OK"
    assert data == [[b'INBOX ""'], [b'"" (STORAGE 0 100 MESSAGE 0 1000)']]
    typ, data = conn.getquota('""')
    assert (typ, data) == ("OK", [b'"" (STORAGE 0 100 MESSAGE 0 1000)'])
    client = connector.imapclient()
    roots, quotas = client.get_quota_root("INBOX")
    assert roots.quota_roots == [""]
    assert {(q.resource, q.usage, q.limit) for q in quotas} == {
        ("STORAGE", 0, 100),
        ("MESSAGE", 0, 1000),
    }


# -- what the engine answers by itself --------------------------------------------------------


@pytest.mark.one_backend
def test_capabilities_and_a_user_without_limits(login: Callable[[str], Connector]) -> None:
    connector = login("free")
    client = connector.raw()
    words = client.command("CAPABILITY").data("CAPABILITY")[0].split()
    assert [w for w in words if w.startswith(b"QUOTA")] == [
        b"QUOTA",
        b"QUOTA=RES-STORAGE",
        b"QUOTA=RES-MESSAGE",
    ]
    # no limit: INBOX has no quota root, and "" is none
    assert quota(client) == ([b"INBOX"], [])
    missing = client.command('GETQUOTA ""')
    assert missing.status == "NO" and missing.code == "NONEXISTENT", missing.line
    assert append(client, sized(9000)).ok


@pytest.mark.one_backend
def test_rfc_9208_examples(login: Callable[[str], Connector]) -> None:
    """Sections 4.1.1 to 4.1.3 and 4.3's exchanges, with this server's root and numbers."""
    client = login("rfc").raw()
    got = client.command('GETQUOTA ""')
    assert got.ok and got.data("QUOTA") == [b'"" (STORAGE 0 4 MESSAGE 0 3)'], got.all_text()
    got = client.command("GETQUOTAROOT INBOX")
    assert got.untagged == [
        b'* QUOTAROOT INBOX ""\r\n',
        b'* QUOTA "" (STORAGE 0 4 MESSAGE 0 3)\r\n',
    ]
    refused = client.command('SETQUOTA "" (STORAGE 512)')
    assert refused.status == "NO" and refused.code == "CANNOT", refused.line
    assert b"configuration" in refused.line
    assert client.command('SETQUOTA "" ()').status == "NO"
    got = status(client, "INBOX", "MESSAGES DELETED DELETED-STORAGE")
    assert got == {"MESSAGES": 0, "DELETED": 0, "DELETED-STORAGE": 0}


@pytest.mark.one_backend
def test_overquota_on_append_and_multiappend(login: Callable[[str], Connector]) -> None:
    """TIGHT: 4 KiB, 3 messages; a refused APPEND or MULTIAPPEND (where offered) stores
    nothing."""
    client = login("tight").raw()
    assert append(client, sized(3000)).ok
    too_big = append(client, sized(2000))
    assert too_big.status == "NO" and too_big.code == "OVERQUOTA", too_big.line
    assert b"KiB" in too_big.line
    if b"MULTIAPPEND" in client.command("CAPABILITY").untagged[0].split():
        whole = multiappend(client, [sized(600), sized(600)])
        assert whole.status == "NO" and whole.code == "OVERQUOTA", whole.line
        assert status(client, "INBOX", "MESSAGES SIZE") == {"MESSAGES": 1, "SIZE": 3000}
        assert multiappend(client, [sized(500), sized(500)]).ok
    else:  # the proxy: one message per APPEND (no all-or-nothing batch upstream)
        assert append(client, sized(500)).ok and append(client, sized(500)).ok
    one_more = append(client, sized(50))
    assert one_more.status == "NO" and one_more.code == "OVERQUOTA", one_more.line
    assert b"messages" in one_more.line
    assert quota(client)[1] == [b'"" (STORAGE 4 4 MESSAGE 3 3)']


@pytest.mark.one_backend
def test_overquota_on_copy_not_on_move(login: Callable[[str], Connector]) -> None:
    client = login("copier").raw()
    assert append(client, sized(1500)).ok and append(client, sized(1000)).ok
    assert client.command("CREATE Other").ok
    assert client.command("SELECT INBOX").ok
    refused = client.command("COPY 1:2 Other")  # 5000 octets > 4 KiB
    assert refused.status == "NO" and refused.code == "OVERQUOTA", refused.line
    assert status(client, "Other", "MESSAGES") == {"MESSAGES": 0}
    assert client.command("COPY 2 Other").ok  # 3500 octets, 3 messages: at the limits
    assert quota(client)[1] == [b'"" (STORAGE 4 4 MESSAGE 3 3)']
    assert client.command("UID MOVE 1:* Other").ok  # usage stays: MOVE is never refused
    assert status(client, "Other", "MESSAGES") == {"MESSAGES": 3}


def test_shared_mailbox_charges_its_owner(login: Callable[[str], Connector]) -> None:
    """What another user stores in a shared mailbox counts against the owner's quota
    (``owner``: TIGHT), not the one who stores it (``sharer``: no limit), and the other
    way round; GETQUOTAROOT of a shared mailbox names the owner's root."""
    owner, sharer = login("owner"), login("sharer")
    alice, bob = owner.raw(), sharer.raw()
    if b" ACL " not in alice.command("CAPABILITY").untagged[0]:
        pytest.skip("the store keeps no access control lists")
    assert alice.command("CREATE Team").ok
    assert alice.command(f'SETACL Team "{sharer.user.name}" lri').ok
    assert bob.command("CREATE Drop").ok
    assert bob.command(f'SETACL Drop "{owner.user.name}" lri').ok
    assert append(alice, sized(3000)).ok
    team = f'"Other Users/{owner.user.name}/Team"'
    too_big = append(bob, sized(2000), team)
    assert too_big.status == "NO" and too_big.code == "OVERQUOTA", too_big.line
    assert append(bob, sized(500), team).ok
    assert quota(alice)[1] == [b'"" (STORAGE 4 4 MESSAGE 2 3)']
    root = f'"Other Users/{owner.user.name}"'.encode()
    got = bob.command(f"GETQUOTAROOT {team}")
    assert got.ok and got.untagged == [
        b"* QUOTAROOT %s %s\r\n" % (team.encode(), root),
        b"* QUOTA %s (STORAGE 4 4 MESSAGE 2 3)\r\n" % root,
    ], got.untagged
    assert bob.command(f"GETQUOTA {root.decode()}").data("QUOTA") == [
        b"%s (STORAGE 4 4 MESSAGE 2 3)" % root
    ]
    assert bob.command("GETQUOTAROOT INBOX").untagged == [b"* QUOTAROOT INBOX\r\n"]  # none
    # COPY and MOVE from the sharer's own mailbox: the owner pays, and is full
    assert append(bob, sized(1500)).ok and bob.command("SELECT INBOX").ok
    for command in (f"COPY 1 {team}", f"MOVE 1 {team}"):
        refused = bob.command(command)
        assert refused.status == "NO" and refused.code == "OVERQUOTA", (command, refused.line)
    # the owner, over its own limits, still stores into the sharer's mailbox
    drop = f'"Other Users/{sharer.user.name}/Drop"'
    assert append(alice, sized(1500), drop).ok
    assert status(bob, "Drop", "MESSAGES") == {"MESSAGES": 1}
    assert quota(alice)[1] == [b'"" (STORAGE 4 4 MESSAGE 2 3)']


@pytest.mark.one_backend
def test_bad_input(login: Callable[[str], Connector]) -> None:
    connector = login("usage")
    before = connector.raw(login=False)
    assert before.command('GETQUOTA ""').status == "BAD"
    client = connector.raw()
    for command in (
        "GETQUOTA",
        'GETQUOTA "" ""',
        "GETQUOTA (x)",
        "GETQUOTAROOT",
        "GETQUOTAROOT INBOX Other",
        "SETQUOTA",
        'SETQUOTA "" STORAGE',
        'SETQUOTA "" (STORAGE)',
        'SETQUOTA "" (STORAGE x)',
        'SETQUOTA "" ("STORAGE" 5)',
        'SETQUOTA "" (STORAGE 99999999999999999999)',
        "STATUS INBOX (DELETED-BYTES)",
    ):
        got = client.command(command)
        assert got.status == "BAD", (command, got.line)
        assert b"Traceback" not in got.all_text()
    other_root = client.command('GETQUOTA "user.other"')
    assert other_root.status == "NO" and other_root.code == "NONEXISTENT"
    nowhere = client.command("GETQUOTAROOT Nowhere")
    assert nowhere.status == "NO" and nowhere.code == "NONEXISTENT"
    assert client.command("NOOP").ok


# -- configuration ----------------------------------------------------------------------------


def test_quota_configuration_layers(tmp_path: Path) -> None:
    """A file's [quota] and [quota.users], then the command line; a user's entry fills
    what it leaves out from the default; the workers get the same policy."""
    path = tmp_path / "imapserv.toml"
    path.write_text(
        "[quota]\nstorage = 100\nmessages = 10\n"
        "[quota.users.alice]\nstorage = 5\n"
        "[quota.users.bob]\nstorage = 0\nmessages = 0\n"
    )
    options = Options()
    options.parseOptions(["--config", str(path), "--quota-storage", "200"])
    policy = options.config.settings.quota
    assert policy.default == QuotaLimits(storage=200, messages=10)
    assert policy.limits_for("alice") == QuotaLimits(storage=5, messages=10)
    assert policy.limits_for("bob") == QuotaLimits()
    assert policy.limits_for("carol") == policy.default
    assert decode_config(encode_config(options.config)).settings.quota == policy
    assert Config().settings.quota.limits_for("anyone") == QuotaLimits()
    assert load_config({"quota-messages": 7}).settings.quota.default == QuotaLimits(0, 7)
    for bad in (
        {"quota-storage": "-1"},
        {"quota-storage": "lots"},
        {"quota-messages": True},
        {"quota": {"bytes": 5}},
        {"quota": {"users": {"alice": {"storage": -5}}}},
        {"quota": {"users": {"alice": 5}}},
        {"quota": 5},
    ):
        with pytest.raises(ConfigError, match="quota"):
            load_config(bad)
    with pytest.raises(ConfigError, match="unknown limit 'quota'"):
        parse_limit("quota=5")
    # every --limit default stays printable in --help, the quota policy is not a --limit
    assert "quota=" not in Options().getUsage()
    assert json.loads(encode_config(options.config))["settings"]["quota"]["default"] == {
        "storage": 200,
        "messages": 10,
    }


def test_concurrent_reservations_see_each_other() -> None:
    """Of two additions in flight for one user, the later one counts the earlier."""
    ledger = QuotaLedger()
    first, seen = ledger.reserve("u", Usage(3000, 1))
    assert seen == Usage(0, 0)
    _, seen = ledger.reserve("u", Usage(2000, 1))
    assert seen == Usage(3000, 1)
    assert ledger.reserve("v", Usage(1, 1))[1] == Usage(0, 0)
    ledger.release("u", first)
    assert ledger.reserve("u", Usage(1, 1))[1] == Usage(2000, 1)
    assert QuotaPolicy().limits_for(None) == QuotaLimits()
