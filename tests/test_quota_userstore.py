"""Quota limits kept in the user store (issue 12): the passwd-file's Dovecot-style
``userdb_quota_rule`` extra fields and the SQL users table's quota columns, set with
``mailserv user set``, win over the configuration; APPEND gets ``NO [OVERQUOTA]``, LMTP
``552 5.2.2``, GETQUOTAROOT reports them, and a user without them keeps the configured ones.

One server per store (passwd-file over the memory backend, SQL users in SQLite); the
rule syntax, which needs no server, is checked on its own.
"""

from __future__ import annotations

import re
import secrets
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from lmtpserver import HANG, _wait_port, message
from test_auth_apppasswords import run_cli  # type: ignore[import-not-found]

from bench.harness import HOST, BackendSpec, RawClient, ServerProcess, free_port, quote
from mailserv.admin import cli
from mailserv.auth.passwd import PasswdFile
from mailserv.auth.schemes import hash_password
from mailserv.quota import StoredQuota, parse_rule, stored_quota

pytestmark = pytest.mark.timeout(120)

STORES = {"passwd": BackendSpec("memory"), "sql": BackendSpec("sql", {"auth": "sql"})}
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
DEFAULT_MESSAGES = 5
"""Every user's message limit in the configuration (``--quota-messages``)."""
CONFIGURED = (2048, 50)
"""The capped user's own (storage, messages) in the configuration's [quota.users]."""


# -- the rules, no server -----------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "quota"),
    [
        ("*:storage=1G", StoredQuota(storage=1024 * 1024)),
        ("*:storage=100", StoredQuota(storage=100)),  # no suffix: KiB, as in Dovecot
        ("*:storage=1536B", StoredQuota(storage=2)),  # rounded up to KiB
        ("*:bytes=1k", StoredQuota(storage=1)),
        ("*:messages=10000", StoredQuota(messages=10000)),
        ("*:storage=2M:messages=0", StoredQuota(storage=2048, messages=0)),
    ],
)
def test_rules_mailserv_follows(rule: str, quota: StoredQuota) -> None:
    assert parse_rule(rule) == quota


@pytest.mark.parametrize(
    ("rule", "why"),
    [
        ("Trash:storage=+100M", "only '*' rules"),
        ("*:storage=+1G", "relative limits"),
        ("*:messages=-5", "relative limits"),
        ("*:storage=10%", "percentage"),
        ("*:storage=1X", "not a size"),
        ("*:messages=1k", "not a message count"),
        ("*:ignore", "unsupported limit 'ignore'"),
        ("storage=1G", "no ':'"),
    ],
)
def test_rules_refused(rule: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_rule(rule)


def test_later_rule_wins_and_refused_rules_are_left_out() -> None:
    fields = {
        "userdb_quota_rule": "*:storage=1M:messages=7",
        "userdb_quota_rule2": "*:messages=9",
        "userdb_quota_rule3": "INBOX:storage=1k",
        "home": "/x",
    }
    assert stored_quota(fields, "ann") == StoredQuota(storage=1024, messages=9)


# -- a server per store ---------------------------------------------------------------


@dataclass
class Site:
    server: ServerProcess
    where: tuple[str, ...]
    """The CLI's options naming the store the server reads."""
    lmtp_port: int
    capped: str
    """Store quota: 1 message (and the configuration's storage for them)."""
    plain: str
    """No store quota: the configured default."""
    password: str

    def cli(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        return run_cli(*argv, *self.where, stdin=stdin)

    def login(self, user: str) -> RawClient:
        client = RawClient.connect(self.server.imap_port, timeout=HANG)
        assert client.command(f"LOGIN {quote(user)} {quote(self.password)}").ok
        return client

    def deliver(self, user: str) -> tuple[int, bytes]:
        with smtplib.LMTP(HOST, self.lmtp_port, timeout=HANG) as client:
            client.ehlo("test.example.org")
            assert client.mail("sender@example.org")[0] == 250
            assert client.rcpt(f"{user}@example.org")[0] == 250
            code, text = client.data(message("lmtp"))
            return code, text


@pytest.fixture(scope="module", params=sorted(STORES))
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    name = str(request.param)
    data = tmp_path_factory.mktemp(f"quotauser-{name}") / "data"
    data.mkdir()
    capped, plain = ("u" + secrets.token_hex(4) for _ in range(2))
    config = data / "server.toml"
    config.write_text(
        f'[quota.users."{capped}"]\nstorage = {CONFIGURED[0]}\nmessages = {CONFIGURED[1]}\n'
    )
    port = free_port()
    args = ["--workers", "1", "--config", str(config), "--quota-messages", str(DEFAULT_MESSAGES)]
    args += ["--lmtp", f"tcp:{port}:interface={HOST}"]
    server = ServerProcess(data, STORES[name], {"auth_failure_delay": 0.01}, args)
    server.start()
    where = ("--db", f"sqlite://{data}/mail.db") if name == "sql" else ("--data-dir", str(data))
    try:
        _wait_port(server, port)
        site = Site(server, where, port, capped, plain, secrets.token_hex(8))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(
                cli, "hash_password", lambda pw, **kw: hash_password(pw, hasher=CHEAP, **kw)
            )
            for user in (capped, plain):
                status, _, err = site.cli(
                    "user", "add", user, "--password-stdin", stdin=site.password + "\n"
                )
                assert status == 0, err
        yield site
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()


def _quota_line(client: RawClient) -> bytes:
    response = client.command("GETQUOTAROOT INBOX")
    assert response.ok, response.line
    (line,) = response.data("QUOTA")
    return line


def test_store_limits_win_over_the_configuration(site: Site) -> None:
    status, out, err = site.cli("user", "set", site.capped, "--quota-messages", "1")
    assert (status, out) == (0, f"quota of {site.capped}: quota-messages 1\n"), err
    assert "quota-messages: 1\n" in site.cli("user", "show", site.capped)[1]

    client = site.login(site.capped)
    try:  # storage from [quota.users], messages from the store
        assert _quota_line(client) == b'"" (STORAGE 0 %d MESSAGE 0 1)' % CONFIGURED[0]
        assert client.command_with_literal("APPEND INBOX ", message("one")).ok
        refused = client.command_with_literal("APPEND INBOX ", message("two"))
        assert refused.status == "NO" and refused.text.startswith(b"[OVERQUOTA]"), refused.line
    finally:
        client.close()
    code, text = site.deliver(site.capped)
    assert code == 552 and text.startswith(b"5.2.2 "), text


def test_user_without_store_limits_keeps_the_configured_default(site: Site) -> None:
    client = site.login(site.plain)
    try:
        assert _quota_line(client) == b'"" (MESSAGE 0 %d)' % DEFAULT_MESSAGES
    finally:
        client.close()
    assert site.deliver(site.plain)[0] == 250


def test_cli_sets_shows_and_removes_store_limits(site: Site) -> None:
    user = site.plain
    status, out, err = site.cli("user", "set", user, "--quota-storage", "1G")
    assert (status, out) == (0, f"quota of {user}: quota-storage 1G\n"), err
    status, out, err = site.cli("user", "set", user, "--quota-messages", "0")
    assert status == 0 and out.endswith("quota-storage 1G, quota-messages 0 (no limit)\n"), err
    shown = site.cli("user", "show", user)[1]
    assert "quota-storage: 1G\nquota-messages: 0 (no limit)\n" in shown, shown
    client = site.login(user)
    try:
        assert _quota_line(client).endswith(b" 1048576)")  # STORAGE, no MESSAGE limit after
    finally:
        client.close()
    for option in ("--quota-storage", "--quota-messages"):
        assert site.cli("user", "set", user, option, "default")[0] == 0
    assert "quota" not in site.cli("user", "show", user)[1]
    refused = [
        (("--quota-storage", "+1G"), 2, "relative limits"),
        (("--quota-messages", "many"), 2, "not a message count"),
        ((), 2, "nothing to set"),
    ]
    for argv, wanted_status, wanted in refused:
        status, _, err = site.cli("user", "set", user, *argv)
        assert status == wanted_status and wanted in err, (argv, err)
    status, _, err = site.cli("user", "set", "nobody", "--quota-messages", "1")
    assert (status, err) == (1, "mailserv: no user 'nobody'\n")


def test_rules_written_by_hand_and_a_refused_one(site: Site) -> None:
    """Dovecot's form edited into the passwd-file: followed, or logged and left out."""
    if "--data-dir" not in site.where:
        pytest.skip("the passwd-file store only")
    user = "h" + secrets.token_hex(4)
    extra = "userdb_quota_rule=*:storage=+1G userdb_quota_rule2=*:messages=2"
    PasswdFile(Path(site.where[1]) / "passwd").add_user(
        user, "{PLAIN}" + site.password, extra=extra
    )
    client = site.login(user)
    try:
        assert _quota_line(client) == b'"" (MESSAGE 0 2)'
    finally:
        client.close()
    log = site.server.log_text()
    assert f"Quota rule userdb_quota_rule='*:storage=+1G' of user {user!r} ignored" in log
    assert "relative limits (+/-) are not supported" in log
