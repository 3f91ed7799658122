"""A private Postfix instance for the delivery tests: its own configuration and queue
directories under a temporary directory, SMTP on a free loopback port, every domain's mail
handed to an LMTP endpoint, no DNS.

It needs Debian's ``postfix`` and root (Postfix's master runs as root and its daemons as
the ``postfix`` account); without them the test is skipped, unless
``MAILSERV_REQUIRE_POSTFIX`` is set (CI), where it fails.  Nothing of the system's own
Postfix configuration is used or changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from maildirsync import require

from bench.harness import HOST, free_port

# The services this instance runs: name, type, private, unprivileged, chroot, wakeup,
# process limit, command.  No chroot, so nothing has to be copied into the queue directory.
_SERVICES = """\
{host}:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


class Postfix:
    """``Postfix(lmtp_nexthop)`` — e.g. ``inet:[127.0.0.1]:2424`` or ``unix:/path`` —
    then ``start()``; ``smtp_port`` accepts mail for ``domain``; ``stop()`` at the end."""

    def __init__(self, lmtp_nexthop: str, domain: str = "example.org") -> None:
        self.binary = require("postfix", "postfix")
        if os.geteuid() != 0:
            if os.environ.get("MAILSERV_REQUIRE_POSTFIX"):
                pytest.fail("MAILSERV_REQUIRE_POSTFIX is set but the tests do not run as root")
            pytest.skip("a private Postfix needs root")
        self.root = Path(tempfile.mkdtemp(prefix="postfix-"))
        self.config_dir = self.root / "etc"
        self.queue_dir = self.root / "queue"
        self.data_dir = self.root / "data"
        self.log_path = self.root / "maillog"
        self.smtp_port = free_port()
        self.nexthop = lmtp_nexthop
        self.domain = domain
        self._started = False
        self.extra: dict[str, str] = {}
        """More main.cf settings (before ``start()``)."""

    def _main_cf(self) -> str:
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "myhostname": "mx.test.invalid",
            "mydomain": "test.invalid",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "relay_domains": "",
            "virtual_mailbox_domains": self.domain,
            "virtual_mailbox_maps": "static:ok",
            "virtual_transport": f"lmtp:{self.nexthop}",
            "disable_dns_lookups": "yes",
            "smtp_host_lookup": "native",
            "lmtp_host_lookup": "native",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": str(self.root),
            "syslog_name": "postfix-mailserv-test",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "smtputf8_enable": "no",
        }
        settings.update(self.extra)
        return "".join(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        self.root.chmod(0o755)  # the postfix account walks through it
        self.config_dir.mkdir(parents=True)
        (self.config_dir / "main.cf").write_text(self._main_cf())
        (self.config_dir / "master.cf").write_text(_SERVICES.format(host=HOST, port=self.smtp_port))
        for directory in (self.queue_dir, self.data_dir):
            directory.mkdir()
        shutil.chown(self.data_dir, "postfix")
        self._postfix("start")
        self._started = True

    def flush(self) -> None:
        """Deliver what waits in the queue now (``defer_transports`` ones included)."""
        self._postfix("flush", "postqueue", "-f")

    def _postfix(self, action: str, program: str = "postfix", flag: str | None = None) -> None:
        binary = self.binary if program == "postfix" else shutil.which(program) or program
        result = subprocess.run(
            [binary, "-c", str(self.config_dir), flag or action],
            capture_output=True,
            timeout=60,
        )
        if result.returncode != 0:
            out = (result.stdout + result.stderr).decode("utf-8", "replace")
            raise AssertionError(
                f"postfix {action} failed ({result.returncode}): {out}\n{self.log_text()}"
            )

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self._started:
            self._started = False
            try:
                self._postfix("stop")
            except AssertionError:
                pid_file = self.queue_dir / "pid" / "master.pid"
                if pid_file.exists():  # the master we started: stop it by its own pid
                    os.kill(int(pid_file.read_text().split()[0]), 9)
        shutil.rmtree(self.root, ignore_errors=True)
