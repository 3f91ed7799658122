"""The proxy's EMAILID and THREADID are its upstream's when the upstream has OBJECTID
(RFC 8474), and a master-user login on the proxy gets the upstream's QUOTA (RFC 9208).

The first upstream is mailserv itself over a store whose ids are numbers, as many servers'
are, not mailserv's hashes (which the proxy would compute alike from the same bytes): a
backend plugin (memory underneath) in a drop-in folder of the test's.  The second is
Dovecot with its quota plugins and a master user."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dovecot import Dovecot, available
from dropins import drop_in
from test_proxy_objects import QUOTA_PLUGIN
from test_proxy_upstream import MESSAGE, PASSWORD, direct, login, start_server

from bench.harness import BackendSpec, RawClient, ServerProcess, fetches
from mailserv.backends.proxy.cache import InfoStore
from mailserv.message.parse import parse_message

pytestmark = pytest.mark.timeout(90)

NUMBERED_IDS_PLUGIN = '''\
"""A memory store whose EMAILIDs count up and whose THREADIDs are the count's parity."""
import dataclasses
import itertools

import mailserv.backends.memory.mailbox as mailbox
from mailserv.backends.memory import MemoryBackendFactory
from mailserv.message.parse import parse_message


class NumberedIds(MemoryBackendFactory):
    name = "numbered-ids"
    description = "Memory, with EMAILIDs E1, E2, ... and THREADIDs T0/T1 (tests)."

    def build(self, options, data_dir, reactor):
        numbers = itertools.count(1)

        def numbered(raw):
            n = next(numbers)
            info = parse_message(raw)
            return dataclasses.replace(info, emailid=f"E{n}", threadid=f"T{n % 2}")

        mailbox.parse_message = numbered  # this test process's store only
        return super().build(options, data_dir, reactor)


factory = NumberedIds()
'''


def ids(client: RawClient, numbers: str) -> dict[int, tuple[object, object]]:
    response = client.command(f"FETCH {numbers} (EMAILID THREADID)")
    assert response.ok, response.line
    return {n: (f["EMAILID"], f["THREADID"]) for n, f in fetches(response).items()}


@pytest.mark.one_backend
def test_object_ids_are_the_upstreams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drop_in(tmp_path / "plugins", "numbered_ids_store", NUMBERED_IDS_PLUGIN, monkeypatch)
    upstream = ServerProcess(tmp_path / "upstream", BackendSpec("numbered-ids"))
    upstream.start()
    proxy = None
    try:
        upstream.add_user("ida", PASSWORD)
        origin = RawClient.connect(upstream.imap_port)
        origin.login("ida", PASSWORD)
        origin.append_many("INBOX", [MESSAGE % (n, n) for n in (1, 2)])
        assert origin.command("SELECT INBOX").ok
        assert ids(origin, "1:2") == {1: (["E1"], ["T1"]), 2: (["E2"], ["T0"])}
        proxy = start_server(
            tmp_path / "proxy", {"upstream": f"plain:127.0.0.1:{upstream.imap_port}"}
        )
        client = login(proxy, "ida")
        assert client.command_with_literal("APPEND INBOX ", MESSAGE % (3, 3)).ok
        assert client.command("SELECT INBOX").ok
        assert origin.command("NOOP").ok  # its * 3 EXISTS
        assert ids(client, "1:3") == ids(origin, "1:3")
        assert ids(client, "3") == {3: (["E3"], ["T1"])}
        found = client.command("SEARCH THREADID T1")
        assert found.ok and found.data("SEARCH") == [b"1 3"], found.untagged
        found = client.command("SEARCH EMAILID E2")
        assert found.ok and found.data("SEARCH") == [b"2"], found.untagged
    finally:
        if proxy is not None:
            proxy.stop()
        upstream.stop()


@pytest.mark.one_backend
def test_cached_infos_take_the_upstreams_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsed messages the proxy cached on disk with its own ids (before the upstream had
    OBJECTID, or by a version that did not ask for them) get the upstream's ids when the
    mailbox is next opened: asked for without the bodies, and the cache rewritten."""
    drop_in(tmp_path / "plugins", "numbered_ids_store", NUMBERED_IDS_PLUGIN, monkeypatch)
    upstream = ServerProcess(tmp_path / "upstream", BackendSpec("numbered-ids"))
    upstream.start()
    proxy = None
    try:
        upstream.add_user("ida", PASSWORD)
        origin = RawClient.connect(upstream.imap_port)
        origin.login("ida", PASSWORD)
        bodies = [MESSAGE % (n, n) for n in (1, 2)]
        origin.append_many("INBOX", bodies)
        selected = origin.command("SELECT INBOX")
        validity = int(next(c for c in selected.codes() if c.startswith("UIDVALIDITY")).split()[1])
        # The cache as an older proxy left it: our own parse, our own (hashed) ids.
        cache = tmp_path / "proxy-cache"
        cached = [(1, parse_message(bodies[0])), (2, parse_message(bodies[1]))]
        InfoStore(str(cache)).save("ida", "INBOX", validity, cached)
        proxy = start_server(
            tmp_path / "proxy",
            {"upstream": f"plain:127.0.0.1:{upstream.imap_port}", "cache_dir": str(cache)},
        )
        client = login(proxy, "ida")
        assert client.command("SELECT INBOX").ok
        assert ids(origin, "1:2") == {1: (["E1"], ["T1"]), 2: (["E2"], ["T0"])}
        assert ids(client, "1:2") == ids(origin, "1:2")
        found = client.command("SEARCH THREADID T0")
        assert found.ok and found.data("SEARCH") == [b"2"], found.untagged
    finally:
        if proxy is not None:
            proxy.stop()
        upstream.stop()


@pytest.mark.one_backend
@pytest.mark.skipif(not available(), reason="dovecot-imapd is not installed")
def test_master_user_login_gets_the_upstream_quota(tmp_path: Path) -> None:
    upstream = Dovecot(extra_config=QUOTA_PLUGIN)
    upstream.add_user("erin", PASSWORD)
    upstream.add_master_user("gateway", "master-secret")
    upstream.start()
    proxy = None
    try:
        time.sleep(1.1)  # passwd-file is re-read at most once a second
        direct(upstream, "erin").append_many("INBOX", [MESSAGE % (n, n) for n in range(2)])
        options = {
            **upstream.upstream_options(),
            "master_user": "gateway",
            "master_password": "master-secret",
        }
        proxy = start_server(tmp_path, options)
        proxy.add_user("erin", "local password")
        client = login(proxy, "erin", "local password")
        capability = client.command("CAPABILITY")
        assert b"QUOTA" in capability.data("CAPABILITY")[0].split(), capability.untagged
        rooted = client.command("GETQUOTAROOT INBOX")
        assert rooted.ok, rooted.line
        assert rooted.data("QUOTAROOT") == [b'INBOX "User quota"'], rooted.untagged
        assert rooted.data("QUOTA") == [b'"User quota" (STORAGE 1 1024 MESSAGE 2 50)']
    finally:
        if proxy is not None:
            proxy.stop()
        upstream.stop()
