"""A private Dovecot (Debian's dovecot-imapd) for tests: its own config, ports, users and CA.

``Dovecot(...).start()`` writes a config into a fresh temporary directory (run and state
dirs there too), listens on free loopback ports (IMAP, IMAPS, and LMTP when dovecot-lmtpd is
installed) and serves passwd-file users whose mail lives in Maildirs under that directory.
TLS uses a certificate from a test CA made here with the ``cryptography`` package, so a
client can verify the chain and the host name for real.

As root, the Dovecot services drop to the ``dovecot``/``dovenull`` system users and mail is
owned by ``dovecot``; as another user everything runs as that user.  ``available()`` says
whether a Dovecot binary is installed at all (tests skip otherwise).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOST = "127.0.0.1"
_BINARIES = ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")


def binary() -> str | None:
    """The dovecot executable, or None when it is not installed."""
    found = shutil.which("dovecot")
    if found:
        return found
    return next((path for path in _BINARIES if os.access(path, os.X_OK)), None)


def available() -> bool:
    """Whether tests can start a Dovecot.  When MAILSERV_REQUIRE_DOVECOT is set (CI), a
    missing one is an error rather than a reason to skip."""
    found = binary() is not None and os.path.exists("/usr/lib/dovecot/imap")
    if not found and os.environ.get("MAILSERV_REQUIRE_DOVECOT"):
        raise DovecotError("MAILSERV_REQUIRE_DOVECOT is set but dovecot-imapd is missing")
    return found


def lmtp_available() -> bool:
    return os.path.exists("/usr/lib/dovecot/lmtp")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# -- a test CA ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TestCA:
    """PEM files: the CA certificate, and a server leaf (with its key) signed by it."""

    __test__ = False  # not a pytest test class

    ca_cert: Path
    cert: Path
    key: Path
    names: tuple[str, ...]


def make_ca(directory: Path, names: Iterable[str] = ("localhost", HOST), label: str = "") -> TestCA:
    """A fresh CA and a leaf for ``names`` (DNS names or IP addresses) under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    names = tuple(names)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"mailserv test CA {label}")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectAlternativeName(alt), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path, cert_path, key_path = (directory / f"{label}{n}.pem" for n in ("ca", "cert", "key"))
    ca_path.write_bytes(ca.public_bytes(pem))
    cert_path.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key_path.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return TestCA(ca_path, cert_path, key_path, names)


# -- the server ---------------------------------------------------------------------------


class DovecotError(RuntimeError):
    """Dovecot did not start (the text carries its log)."""


_CONFIG = """\
# Generated for a test run; nothing here is read from /etc/dovecot.
base_dir = {root}/run
state_dir = {root}/state
instance_name = {instance}
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = {protocols}
listen = {host}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {uid}
first_valid_gid = {gid}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_cache_size = 0
auth_failure_delay = 0 secs
auth_master_user_separator = *
mail_location = maildir:~/Maildir{layout}
mail_max_userip_connections = 500
mail_fsync = never
mailbox_idle_check_interval = {idle_check}
namespace inbox {{
  inbox = yes
  separator = {separator}
  prefix = {prefix}
}}
passdb {{
  driver = passwd-file
  master = yes
  args = scheme=PLAIN {root}/master-users
  pass = yes
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
# passwd-file re-reads its file at most once a second: a user added a moment after the
# previous lookup would be unknown for that long.  The script looks such users up afresh.
passdb {{
  driver = checkpassword
  args = {root}/checkpassword
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {imaps_port}
    ssl = yes
  }}
  service_count = 0
  {login_chroot}
}}
service imap {{
  process_limit = 1000
}}
service auth {{
  {auth_user}
}}
service auth-worker {{
  {auth_user}
}}
# Failed logins would slow every later login from 127.0.0.1 (anvil's penalty): an
# unreachable penalty socket turns that off.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {host}
    port = {lmtp_port}
  }}
  unix_listener lmtp {{
    mode = 0600
  }}
}}
{extra}
"""


_CHECKPASSWORD = r"""#!/bin/bash
# Dovecot checkpassword: "user NUL password NUL ..." on fd 3; exit 1 when refused.
IFS= read -r -d '' user <&3 || exit 111
IFS= read -r -d '' pass <&3 || exit 111
hash=$(awk -F: -v u="$user" '$1 == u { print $2; exit }' "PASSWD")
[ -n "$hash" ] || exit 1
case "$hash" in \{*) ;; *) hash="{PLAIN}$hash" ;; esac
doveadm pw -t "$hash" -p "$pass" >/dev/null 2>&1 || exit 1
exec "$@"
"""


class Dovecot:
    """One private Dovecot instance.

    ``passwd``: an existing passwd-file in Dovecot's format to authenticate against (for
    example a mailserv data dir's ``passwd``, whose schemes Dovecot shares); by default an
    own file that :meth:`add_user` writes with the PLAIN scheme.  ``layout`` is the Maildir
    layout (``"fs"``: a folder per level; ``""``: Maildir++, ``.folder.sub`` directories).
    ``separator`` is the hierarchy delimiter clients see (default ``/`` with ``"fs"``, ``.``
    with Maildir++, Dovecot's own default there); ``prefix`` the personal namespace's
    prefix (e.g. ``"INBOX."``, as Courier and Cyrus have it).
    """

    def __init__(
        self,
        passwd: Path | None = None,
        layout: str = "fs",
        extra_config: str = "",
        separator: str | None = None,
        prefix: str = "",
        ca: TestCA | None = None,
        idle_check_interval: str = "30 secs",
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dovecot-"))
        self.root.chmod(0o755)  # the unprivileged mail user must reach home/
        self.ca = ca or make_ca(self.root / "tls")
        self.passwd = passwd or self.root / "passwd"
        self.layout = layout
        self.separator = separator or ("/" if layout == "fs" else ".")
        self.prefix = prefix
        self.extra_config = extra_config
        self.idle_check_interval = idle_check_interval
        self.imap_port = self.imaps_port = self.lmtp_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._mail_user = _mail_user()

    @property
    def host(self) -> str:
        return HOST

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    # -- users ----------------------------------------------------------------------------

    def add_user(self, name: str, password: str) -> None:
        """A user in the own passwd-file (PLAIN scheme; ``:`` is not allowed)."""
        if self.passwd != self.root / "passwd":
            raise ValueError("users come from the external passwd-file given")
        _add_line(self.passwd, name, password)

    def add_master_user(self, name: str, password: str) -> None:
        """A master user: logs in as anyone with ``user*name`` and its own password."""
        _add_line(self.root / "master-users", name, password)

    def home(self, user: str) -> Path:
        return self.root / "home" / user

    # -- life cycle -----------------------------------------------------------------------

    def config_text(self) -> str:
        user = self._mail_user
        root_run = os.geteuid() == 0
        protocols = "imap lmtp" if lmtp_available() else "imap"
        # DIRNAME keeps cur/new/tmp apart from folders, so a folder may be called "new"
        layout = f":LAYOUT={self.layout}:DIRNAME=mAildir" if self.layout == "fs" else ""
        return _CONFIG.format(
            root=self.root,
            instance=self.root.name,
            protocols=protocols,
            host=HOST,
            internal_user=user.pw_name,
            internal_group=_group_name(user.pw_gid),
            login_user=_login_user() if root_run else user.pw_name,
            uid=user.pw_uid,
            gid=user.pw_gid,
            cert=self.ca.cert,
            key=self.ca.key,
            layout=layout,
            separator=self.separator,
            prefix=self.prefix,
            idle_check=self.idle_check_interval,
            passwd=self.passwd,
            imap_port=self.imap_port,
            imaps_port=self.imaps_port,
            lmtp_port=self.lmtp_port,
            login_chroot="" if root_run else "chroot =",
            # root reads passwd-files in private directories (a mailserv data dir)
            auth_user="user = root" if root_run else "",
            extra=self.extra_config,
        )

    def start(self, timeout: float = 20.0) -> None:
        exe = binary()
        if exe is None:
            raise DovecotError("dovecot is not installed")
        for name in ("run", "state", "home"):
            (self.root / name).mkdir(exist_ok=True)
        user = self._mail_user
        if os.geteuid() == 0:
            os.chown(self.root / "home", user.pw_uid, user.pw_gid)
        for path in (self.passwd, self.root / "master-users"):
            if not path.exists():
                path.touch(0o600)
        script = self.root / "checkpassword"
        script.write_text(_CHECKPASSWORD.replace("PASSWD", str(self.passwd)))
        script.chmod(0o755)
        last = ""
        for _attempt in range(3):
            self.imap_port, self.imaps_port, self.lmtp_port = free_port(), free_port(), free_port()
            config = self.root / "dovecot.conf"
            config.write_text(self.config_text())
            self.proc = subprocess.Popen(
                [exe, "-F", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=open(self.root / "stderr.log", "ab"),  # noqa: SIM115 - child keeps it
                start_new_session=True,
            )
            if self._wait_ready(timeout):
                return
            last = self.log_text() + (self.root / "stderr.log").read_text("utf-8", "replace")
            self.stop(remove=False)
            if "in use" not in last:
                break
        raise DovecotError(f"dovecot did not start:\n{last}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((HOST, self.imap_port), timeout=1) as sock:
                    sock.settimeout(2)
                    if sock.recv(100).startswith(b"* OK"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def stop(self, remove: bool = True) -> None:
        """Stop the master (it takes its children along); ``remove`` deletes the files."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    def pause(self) -> None:
        """SIGSTOP the whole instance: connections hang (an upstream that is slow)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- clients --------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca.ca_cert))

    def upstream_options(self, mode: str = "tls", host: str = "localhost") -> dict[str, str]:
        """``--backend-option`` values for mailserv's proxy backend pointing here."""
        port = self.imaps_port if mode == "tls" else self.imap_port
        return {"upstream": f"{mode}:{host}:{port}", "ca": str(self.ca.ca_cert)}


def _add_line(path: Path, name: str, password: str) -> None:
    if ":" in name or ":" in password or "\n" in name + password:
        raise ValueError("no ':' or newline in passwd-file users")
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"{name}:{{PLAIN}}{password}::::::\n")


def _mail_user() -> pwd.struct_passwd:
    """Who owns the mail: ``dovecot`` (or ``nobody``) as root, else the current user."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    for name in ("dovecot", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise DovecotError("no unprivileged user (dovecot, nobody) to run Dovecot as")


def _login_user() -> str:
    for name in ("dovenull", "nobody"):
        try:
            return pwd.getpwnam(name).pw_name
        except KeyError:
            continue
    return _mail_user().pw_name


def _group_name(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def proxy_options(server: Dovecot, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The proxy backend's options for ``server`` (TLS, its CA), plus ``extra``."""
    return {**server.upstream_options(), **(extra or {})}


# -- the proxy backend's protocol-suite entry ---------------------------------------------


class ProxyUpstreams:
    """``prepare``/``cleanup`` of a ``BackendSpec`` for mailserv's proxy backend: each
    server gets its own Dovecot, which authenticates against that server's passwd-file
    (mailserv and Dovecot share the format and schemes), so users the tests add through
    mailserv's admin CLI exist upstream at once."""

    def __init__(
        self,
        extra: Mapping[str, str] | None = None,
        layout: str = "fs",
        separator: str | None = None,
        prefix: str = "",
    ) -> None:
        self.extra = dict(extra or {})
        self.layout, self.separator, self.prefix = layout, separator, prefix
        self.servers: dict[Path, Dovecot] = {}

    def prepare(self, data_dir: Path) -> dict[str, str]:
        if not available():
            import pytest

            pytest.skip("dovecot-imapd is not installed")
        passwd = data_dir / "passwd"
        if not passwd.exists():
            passwd.touch(0o600)
        server = Dovecot(
            passwd=passwd, layout=self.layout, separator=self.separator, prefix=self.prefix
        )
        server.start()
        self.servers[data_dir] = server
        return {**server.upstream_options(), **self.extra}

    def cleanup(self, data_dir: Path) -> None:
        server = self.servers.pop(data_dir, None)
        if server is not None:
            server.stop()


def proxy_backend_spec(
    extra: Mapping[str, str] | None = None,
    layout: str = "fs",
    separator: str | None = None,
    prefix: str = "",
) -> object:
    """The ``bench.harness.BackendSpec`` of the proxy backend over private Dovecots (by
    default ``/``-separated; ``layout=""`` is Maildir++ with ``.``, see :class:`Dovecot`)."""
    from bench.harness import BackendSpec

    upstreams = ProxyUpstreams({"linger": "2", **(extra or {})}, layout, separator, prefix)
    return BackendSpec("proxy", prepare=upstreams.prepare, cleanup=upstreams.cleanup)
