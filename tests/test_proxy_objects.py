"""The proxy backend passes QUOTA (RFC 9208) and OBJECTID (RFC 8474) through as its upstream
has them, black-box: against a real Dovecot with the quota plugins (``imap_quota``) and no
OBJECTID (Dovecot 2.3 has none, so the proxy offers none after login), and against a mailserv
upstream (memory backend), which has OBJECTID: its MAILBOXIDs come through."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dovecot import Dovecot, available
from imapserver import User
from test_proxy_upstream import MESSAGE, PASSWORD, direct, login, proxy, start_server

from bench.harness import RawClient, ServerProcess

pytestmark = [
    pytest.mark.skipif(not available(), reason="dovecot-imapd is not installed"),
    pytest.mark.timeout(90),
]

__all__ = ["proxy"]  # test_proxy_upstream's fixture, over this module's upstream

QUOTA_PLUGIN = """
mail_plugins = $mail_plugins quota
protocol imap {
  mail_plugins = $mail_plugins quota imap_quota
}
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=1M:messages=50
}
"""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    server = Dovecot(extra_config=QUOTA_PLUGIN)
    for name in ("alice", "bob"):
        server.add_user(name, PASSWORD)
    server.start()
    time.sleep(1.1)  # passwd-file is re-read at most once a second
    yield server
    server.stop()


def capabilities(client: RawClient) -> list[bytes]:
    response = client.command("CAPABILITY")
    assert response.ok, response.line
    return response.data("CAPABILITY")[0].split()


def test_quota_is_the_upstream_quota(proxy: ServerProcess, upstream: Dovecot) -> None:
    """GETQUOTAROOT and GETQUOTA answer with the upstream's root and its usage (not the
    configuration's ``""`` root, which has no limit here); an unknown root is NO."""
    direct(upstream, "alice").append_many("INBOX", [MESSAGE % (n, n) for n in range(3)])
    client = login(proxy, "alice")
    assert b"QUOTA" in capabilities(client)
    rooted = client.command("GETQUOTAROOT INBOX")
    assert rooted.ok, rooted.line
    assert rooted.data("QUOTAROOT") == [b'INBOX "User quota"'], rooted.untagged
    assert rooted.data("QUOTA") == [b'"User quota" (STORAGE 1 1024 MESSAGE 3 50)'], rooted.untagged
    told = client.command('GETQUOTA "User quota"')
    assert told.ok and told.data("QUOTA") == rooted.data("QUOTA"), told.untagged
    missing = client.command('GETQUOTA ""')
    assert missing.status == "NO", missing.line
    nowhere = client.command("GETQUOTAROOT Nowhere")
    assert nowhere.status == "NO" and nowhere.code == "NONEXISTENT", nowhere.line
    assert client.command('SETQUOTA "User quota" (STORAGE 10)').code == "CANNOT"


def test_no_objectid_without_upstream_objectid(proxy: ServerProcess, upstream: Dovecot) -> None:
    """Dovecot 2.3 has no OBJECTID: after login the proxy offers none, and neither STATUS
    nor SELECT names a MAILBOXID (the store has none to give)."""
    assert "OBJECTID" not in direct(upstream, "bob").command("CAPABILITY").all_text().decode()
    client = login(proxy, "bob")
    assert b"OBJECTID" not in capabilities(client)
    selected = client.command("SELECT INBOX")
    assert selected.ok and not [c for c in selected.codes() if c.startswith("MAILBOXID")]
    status = client.command("STATUS INBOX (MESSAGES MAILBOXID)")
    assert status.ok and status.data("STATUS") == [b"INBOX (MESSAGES 0)"], status.untagged


@pytest.mark.one_backend(not_on=("proxy",))
def test_mailboxid_from_an_upstream_with_objectid(
    server: ServerProcess, user: User, tmp_path: Path
) -> None:
    """The shared server as the upstream: with OBJECTID (memory, Maildir and SQL have it)
    the proxy offers it after login, and CREATE, SELECT and STATUS name the upstream's
    MAILBOXID, kept across RENAME."""
    direct = RawClient.connect(server.imap_port)
    direct.login(user.name, user.password)
    if b"OBJECTID" not in capabilities(direct):
        pytest.skip("the shared server's backend has no OBJECTID")
    options = {"upstream": f"plain:127.0.0.1:{server.imap_port}"}
    proxy = start_server(tmp_path, options)
    try:
        client = RawClient.connect(proxy.imap_port)
        client.login(user.name, user.password)
        assert b"OBJECTID" in capabilities(client)
        created = client.command("CREATE Projects")
        assert created.ok and (created.code or "").startswith("MAILBOXID ("), created.line
        mailboxid = created.line.split(b"(")[1].split(b")")[0]
        status = direct.command("STATUS Projects (MAILBOXID)")
        assert status.data("STATUS") == [b"Projects (MAILBOXID (%s))" % mailboxid]
        assert client.command("RENAME Projects Archive").ok
        proxied = client.command("STATUS Archive (MAILBOXID MESSAGES)")
        assert proxied.data("STATUS") == [b"Archive (MAILBOXID (%s) MESSAGES 0)" % mailboxid]
        selected = client.command("SELECT Archive")
        assert f"MAILBOXID ({mailboxid.decode()})" in selected.codes(), selected.untagged
    finally:
        proxy.stop()
