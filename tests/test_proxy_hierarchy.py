"""The proxy over upstreams with other hierarchy delimiters: mailserv shows ``/`` to its
clients whatever the upstream uses, and translates every name both ways.

Each case runs against one Dovecot per configuration (module-scoped, reused by every test):
``/`` (Maildir with LAYOUT=fs), ``.`` (Maildir++, Dovecot's default), and ``.`` under the
personal prefix ``INBOX.`` (as Courier and Cyrus have it).  What the upstream holds is
checked by talking to Dovecot directly.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from dovecot import Dovecot, available

from bench import messages
from bench.harness import BackendSpec, RawClient, Response, ServerProcess, quote

pytestmark = [
    pytest.mark.skipif(not available(), reason="dovecot-imapd is not installed"),
    pytest.mark.timeout(90),
]

PASSWORD = "secret"
_users = itertools.count(1)


@dataclass
class Setup:
    upstream: Dovecot
    proxy: ServerProcess
    separator: str
    prefix: str

    def upstream_name(self, name: str) -> str:
        """What Dovecot calls our ``name`` (already modified UTF-7)."""
        return self.prefix + name.replace("/", self.separator)

    def user(self) -> str:
        name = f"u{next(_users)}"
        self.upstream.add_user(name, PASSWORD)
        return name

    def client(self, user: str) -> RawClient:
        client = RawClient.connect(self.proxy.imap_port)
        client.login(user, PASSWORD)
        return client

    def direct(self, user: str) -> RawClient:
        client = RawClient.connect(self.upstream.imap_port)
        client.login(user, PASSWORD)
        return client


CONFIGS = {
    "slash": {"layout": "fs"},
    "dot": {"layout": ""},
    "dot-prefix": {"layout": "", "prefix": "INBOX."},
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    config = CONFIGS[request.param]
    upstream = Dovecot(layout=config["layout"], prefix=config.get("prefix", ""))
    upstream.start()
    proxy = ServerProcess(
        tmp_path_factory.mktemp("proxy"),
        BackendSpec("proxy", options={**upstream.upstream_options(), "linger": "0"}),
        limits={"auth_failure_delay": 0.05},
    )
    try:
        proxy.start()
    except BaseException:
        upstream.stop()
        raise
    time.sleep(1.1)  # passwd-file is re-read at most once a second
    yield Setup(upstream, proxy, upstream.separator, upstream.prefix)
    proxy.stop()
    upstream.stop()


def ok(client: RawClient, command: str) -> Response:
    response = client.command(command)
    assert response.ok, (command, response.line)
    return response


def listed(response: Response, kind: str = "LIST") -> dict[str, tuple[str, bytes]]:
    """Name → (delimiter, attributes) of every LIST/LSUB line."""
    out: dict[str, tuple[str, bytes]] = {}
    for line in response.untagged:
        match = re.match(
            rb"\* " + kind.encode() + rb' \(([^)]*)\) (?:"(.)"|NIL) "?([^"\r\n]*)"?\r\n', line
        )
        if match is not None:
            delimiter = (match.group(2) or b"").decode()
            out[match.group(3).decode()] = (delimiter, match.group(1))
    return out


def names(response: Response, kind: str = "LIST") -> set[str]:
    return set(listed(response, kind))


def test_delimiter_seen_by_clients_is_slash(setup: Setup) -> None:
    user = setup.user()
    response = ok(setup.client(user), 'LIST "" ""')
    assert b'"/"' in response.all_text(), response.untagged
    direct = ok(setup.direct(user), 'LIST "" ""')
    assert f'"{setup.separator}"'.encode() in direct.all_text(), direct.untagged


def test_create_list_and_subscribe_below_a_parent(setup: Setup) -> None:
    user = setup.user()
    client = setup.client(user)
    ok(client, "CREATE parent/child")
    ok(client, "CREATE parent/other/deep")
    everything = listed(ok(client, 'LIST "" "*"'))
    assert {"INBOX", "parent", "parent/child", "parent/other", "parent/other/deep"} <= set(
        everything
    )
    assert all(delimiter == "/" for delimiter, _ in everything.values()), everything
    assert names(ok(client, 'LIST "" "parent/%"')) == {"parent/child", "parent/other"}
    assert names(ok(client, 'LIST "parent/" "%"')) == {"parent/child", "parent/other"}
    assert "parent/child" not in names(ok(client, 'LIST "" "%"'))
    assert names(ok(client, 'LIST "" "parent/*"')) == {
        "parent/child",
        "parent/other",
        "parent/other/deep",
    }
    ok(client, "SUBSCRIBE parent/child")
    assert names(ok(client, 'LSUB "" "*"'), "LSUB") == {"parent/child"}
    assert names(ok(client, 'LSUB "" "parent/%"'), "LSUB") == {"parent/child"}

    direct = setup.direct(user)
    upstream = names(ok(direct, 'LIST "" "*"'))
    assert {setup.upstream_name("parent/child"), setup.upstream_name("parent/other/deep")} <= (
        upstream
    )
    assert setup.upstream_name("parent/child") in names(ok(direct, 'LSUB "" "*"'), "LSUB")
    ok(client, "UNSUBSCRIBE parent/child")
    assert names(ok(client, 'LSUB "" "*"'), "LSUB") == set()


def test_select_append_copy_and_move_into_a_child(setup: Setup) -> None:
    user = setup.user()
    client = setup.client(user)
    ok(client, "CREATE parent/child")
    ok(client, "CREATE parent/moved")
    client.append_many("parent/child", [messages.plain(subject="appended")])
    client.append_many("INBOX", [messages.plain(subject=f"in{i}") for i in range(2)])
    ok(client, "SELECT INBOX")
    ok(client, "COPY 1 parent/child")
    ok(client, "MOVE 2 parent/moved")
    status = ok(client, "STATUS parent/child (MESSAGES)").all_text()
    assert b"(MESSAGES 2)" in status, status
    response = ok(client, "SELECT parent/child")
    assert b"* 2 EXISTS" in response.all_text()
    fetched = ok(client, "FETCH 1:2 BODY.PEEK[HEADER.FIELDS (SUBJECT)]").all_text()
    assert b"appended" in fetched and b"in0" in fetched
    assert ok(client, "EXAMINE parent/moved").all_text().count(b"* 1 EXISTS") == 1

    direct = setup.direct(user)
    for name, count in (("parent/child", 2), ("parent/moved", 1)):
        upstream = quote(setup.upstream_name(name))
        text = ok(direct, f"STATUS {upstream} (MESSAGES)").all_text()
        assert f"(MESSAGES {count})".encode() in text, text


def test_rename_takes_children_along_and_delete(setup: Setup) -> None:
    user = setup.user()
    client = setup.client(user)
    ok(client, "CREATE old/child/deep")
    client.append_many("old/child", [messages.plain(subject="kept")])
    ok(client, "SELECT old/child")
    ok(client, "RENAME old new")
    found = names(ok(client, 'LIST "" "*"'))
    assert {"new", "new/child", "new/child/deep"} <= found
    assert not {n for n in found if n.startswith("old")}, found
    assert b"* 1 EXISTS" in ok(client, "SELECT new/child").all_text()
    ok(client, "RENAME new/child/deep new/flat")
    ok(client, "DELETE new/flat")
    assert names(ok(client, 'LIST "" "new/*"')) == {"new/child"}

    upstream = names(ok(setup.direct(user), 'LIST "" "*"'))
    assert setup.upstream_name("new/child") in upstream
    assert setup.upstream_name("new/flat") not in upstream
    assert not {n for n in upstream if "old" in n}, upstream

    # a deleted parent stays as \Noselect while its child lives (Dovecot's Maildir++ list
    # index goes on listing it as if it were selectable), and can be created again
    ok(client, "DELETE new")
    attributes = listed(ok(client, 'LIST "" "new"'))["new"][1]
    assert b"\\Noselect" in attributes, attributes
    assert client.command("SELECT new").status == "NO"
    assert client.command("DELETE new").status == "NO"
    ok(client, "CREATE new")
    assert b"\\Noselect" not in listed(ok(client, 'LIST "" "new"'))["new"][1]
    ok(client, "SELECT new")


def test_modified_utf7_names_below_a_parent(setup: Setup) -> None:
    user = setup.user()
    client = setup.client(user)
    name = "R&AOQ-ume/K&APw-che"  # Räume/Küche
    ok(client, f'CREATE "{name}"')
    assert {"R&AOQ-ume", name} <= names(ok(client, 'LIST "" "*"'))
    assert names(ok(client, 'LIST "" "R&AOQ-ume/%"')) == {name}
    ok(client, f'SELECT "{name}"')
    ok(client, f'SUBSCRIBE "{name}"')
    assert names(ok(client, 'LSUB "" "*"'), "LSUB") == {name}
    upstream = names(ok(setup.direct(user), 'LIST "" "*"'))
    assert setup.upstream_name(name) in upstream, upstream


def test_upstream_names_come_through_with_slashes(setup: Setup) -> None:
    user = setup.user()
    direct = setup.direct(user)
    ok(direct, f"CREATE {quote(setup.upstream_name('made/upstream'))}")
    client = setup.client(user)
    assert "made/upstream" in names(ok(client, 'LIST "" "made/%"'))
    ok(client, "SELECT made/upstream")


def test_names_the_upstream_cannot_hold(setup: Setup) -> None:
    user = setup.user()
    client = setup.client(user)
    ok(client, "CREATE plain")
    commands = ('CREATE "v1.2"', 'CREATE "p/v1.2"', 'RENAME plain "w1.2"', 'SUBSCRIBE "v1.2"')
    for command in commands:
        response = client.command(command)
        if setup.separator == ".":
            assert (response.status, response.code) == ("NO", "CANNOT"), (command, response.line)
            assert b"'.'" in response.line
        else:
            assert response.ok, (command, response.line)
    for command in ('SELECT "x.y"', 'STATUS "x.y" (MESSAGES)', 'COPY 1 "x.y"'):
        if command.startswith("COPY"):
            client.append_many("INBOX", [messages.plain()])
            ok(client, "SELECT INBOX")
        # a name the upstream cannot hold is a mailbox that does not exist
        response = client.command(command)
        assert response.code in ("NONEXISTENT", "TRYCREATE"), (command, response.line)
    assert client.command("NOOP").ok
