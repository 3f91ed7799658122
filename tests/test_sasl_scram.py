"""AUTHENTICATE SCRAM-SHA-256 and SCRAM-SHA-256-PLUS over real sockets, driven by scramp's
client (not ours): stored keys in the passwd-file and the SQL users table, both channel
bindings over IMAPS and STARTTLS, and every way an exchange must fail.

scramp 1.5 refuses to name the ``tls-exporter`` binding; for it the test client is scramp's
with only the GS2 header's binding name swapped (scramp still computes the binding input and
every proof), the exporter value coming from OpenSSL on the client side (pyOpenSSL).
"""

from __future__ import annotations

import asyncio
import base64
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ONE_WORKER, SESSION_LIMITS, _server_class
from cryptography.hazmat.primitives.serialization import Encoding
from imapserver import User, add_cheap_user, new_user
from OpenSSL import SSL
from scramp import ScramClient
from scramp.core import CBindData, CbName, Gs2Header
from test_admin_cli import FakeStdin
from twisted.cred.error import UnauthorizedLogin
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from bench.harness import REPO, RawClient, Response, ServerProcess
from mailserv.admin import cli
from mailserv.auth.passwd import PasswdEntry, PasswdFile
from mailserv.auth.sasl import (
    Challenge,
    Credentials,
    ISASLMechanism,
    SASLContext,
    SASLError,
    SASLFailed,
)
from mailserv.auth.sasl.scram import EXPORTER_LABEL, mechanism, mechanism_plus
from mailserv.auth.schemes import hash_password, verify_password
from mailserv.auth.users import IStoredSecretProof, UserStoreChecker

PLAIN_MECH = "SCRAM-SHA-256"
PLUS_MECH = "SCRAM-SHA-256-PLUS"
HANG_BOUND = 20  # seconds: a read that waits longer is a bug, not a slow machine

# `doveadm pw -s SCRAM-SHA-256 -p pässword` (Dovecot 2.3): a value Dovecot wrote.
DOVECOT_HASH = (
    "{SCRAM-SHA-256}4096,3oxA7Uh5JEmJ9i1J2htr8w==,XBzH2Kn7gsDgfiUtah9rlkqaG2Giswsa/S3q/PqGXaA=,"
    "Bf8oHCV7YiACsHx2xTt9JRDatZlcDOOrfr/nn5jtmy0="
)


# -- users with SCRAM keys ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server(
    server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server of the shared one's backend with SCRAM always offered (by default only while
    every user can do it: see ``ServerSettings.offer_scram``; here argon2id users sign in
    beside SCRAM ones)."""
    # No per-user throttle: the module's failures all name one user, whose record a success
    # does not clear (tests/test_auth_throttle_user.py covers that record).
    limits = {**SESSION_LIMITS, "offer_scram": "true", "user_max_auth_failures": 0}
    data_dir = tmp_path_factory.mktemp(f"scram-{server.backend.name}")
    proc = _server_class()(data_dir, server.backend, limits=limits, extra_args=ONE_WORKER)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def user(server: ServerProcess) -> User:
    """A fresh argon2id user of this module's server (the suite's pool serves the shared one)."""
    found = new_user()
    add_cheap_user(server.data_dir, found.name, found.password)
    return found


def add_scram_user(server: ServerProcess, user: User) -> None:
    """``mailserv user add --scheme SCRAM-SHA-256`` into the server's store (file or SQL)."""
    result = subprocess.run(
        [sys.executable, "-m", "mailserv", "user", "add", user.name, "--scheme", PLAIN_MECH]
        + ["--data-dir", str(server.data_dir), "--password-stdin"],
        input=(user.password + "\n").encode(),
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def scram_user(server: ServerProcess) -> User:
    user = new_user()
    add_scram_user(server, user)
    return user


def offers_scram(server: ServerProcess) -> bool:
    return server.backend.name != "proxy"


@pytest.fixture
def scram_offered(server: ServerProcess) -> None:
    """The engine's SCRAM tests need a backend that offers it."""
    if not offers_scram(server):
        pytest.skip(
            "the proxy backend offers no SCRAM (no stored keys: the upstream needs the password)"
        )


# -- clients ----------------------------------------------------------------------------


class OpenSSLSocket:
    """A blocking pyOpenSSL client connection as RawClient's socket (it can export keying
    material, which Python's ssl cannot); SO_RCVTIMEO bounds every read."""

    def __init__(self, conn: SSL.Connection, sock: socket.socket) -> None:
        self.conn = conn
        self.sock = sock

    def settimeout(self, timeout: float | None) -> None:
        pass  # the socket stays blocking; SO_RCVTIMEO/SO_SNDTIMEO bound it

    def sendall(self, data: bytes) -> None:
        self.conn.sendall(data)

    def recv(self, size: int) -> bytes:
        try:
            return self.conn.recv(size)
        except SSL.ZeroReturnError:
            return b""

    def close(self) -> None:
        self.sock.close()

    def binding(self, name: str) -> bytes:
        if name == "tls-exporter":
            return self.conn.export_keying_material(EXPORTER_LABEL, 32)
        der = self.conn.get_peer_certificate(as_cryptography=True).public_bytes(Encoding.DER)
        return bytes(CBindData.from_der(der))  # scramp's RFC 5929 hash choice


def _wrap(server: ServerProcess, sock: socket.socket) -> OpenSSLSocket:
    sock.settimeout(None)
    bound = int(HANG_BOUND).to_bytes(8, sys.byteorder) + bytes(8)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, bound)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, bound)
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.load_verify_locations(str(server.cert_path))
    ctx.set_verify(SSL.VERIFY_PEER, lambda *args: bool(args[-1]))
    conn = SSL.Connection(ctx, sock)
    conn.set_tlsext_host_name(b"localhost")
    conn.set_connect_state()
    conn.do_handshake()
    return OpenSSLSocket(conn, sock)


def tls_client(server: ServerProcess, how: str) -> tuple[RawClient, OpenSSLSocket]:
    """A connection over TLS: ``imaps`` (implicit) or ``starttls``."""
    if how == "imaps":
        sock = socket.create_connection((server.host, server.imaps_port), timeout=HANG_BOUND)
        wrapped = _wrap(server, sock)
        client = RawClient(wrapped, HANG_BOUND)  # type: ignore[arg-type]
        client.greeting = client.read_response()
        return client, wrapped
    client = RawClient.connect(server.imap_port, timeout=HANG_BOUND)
    assert client.command("STARTTLS").ok
    assert isinstance(client.sock, socket.socket)
    wrapped = _wrap(server, client.sock)
    client.sock = wrapped  # type: ignore[assignment]
    return client, wrapped


def scram_client(user: User, binding: tuple[str, bytes] | None = None, mech: str = PLUS_MECH):
    """scramp's client; with ``binding`` (name, data) a -PLUS one (or "y" with ``mech``
    SCRAM-SHA-256)."""
    if binding is None:
        return ScramClient([PLAIN_MECH], user.name, user.password)
    name, data = binding
    as_named = "tls-unique" if name == "tls-exporter" else name
    client = ScramClient([mech], user.name, user.password, channel_binding=(as_named, data))
    if name == "tls-exporter" and mech == PLUS_MECH:
        label = CbName.__new__(CbName)  # scramp 1.5 refuses the name; nothing else changes
        label.cb_name = name
        client.gs2_header = Gs2Header("p", label)
    return client


def _tagged(line: bytes, tag: str) -> Response | None:
    parts = line.rstrip(b"\r\n").split(b" ", 2)
    if parts[0] != tag.encode():
        return None
    return Response(
        parts[0], parts[1].decode().upper(), parts[2] if len(parts) > 2 else b"", line, []
    )


def _next(client: RawClient, tag: str) -> bytes | Response:
    """The next challenge (decoded), or the tagged response (with the untagged before it)."""
    untagged = []
    while True:
        line = client.read_response()
        if line.startswith(b"+"):
            return base64.b64decode(line[1:].strip())
        done = _tagged(line, tag)
        if done is not None:
            done.untagged = untagged
            return done
        untagged.append(line)


def _send(client: RawClient, text: str) -> None:
    client.send(base64.b64encode(text.encode()) + b"\r\n")


def authenticate(
    client: RawClient,
    scram: ScramClient,
    mech: str = PLUS_MECH,
    *,
    sasl_ir: bool = False,
    tamper: bool = False,
) -> Response:
    """Run the exchange; the tagged response.  ``tamper`` flips a bit of the proof."""
    tag = client.next_tag()
    first = scram.get_client_first()
    if sasl_ir:
        client.send(
            f"{tag} AUTHENTICATE {mech} ".encode() + base64.b64encode(first.encode()) + b"\r\n"
        )
    else:
        client.send(f"{tag} AUTHENTICATE {mech}\r\n")
        step = _next(client, tag)
        if isinstance(step, Response):
            return step
        assert step == b""
        _send(client, first)
    step = _next(client, tag)
    if isinstance(step, Response):
        return step
    scram.set_server_first(step.decode())
    final = scram.get_client_final()
    if tamper:
        head, proof = final.rsplit(",p=", 1)
        raw = bytearray(base64.b64decode(proof))
        raw[0] ^= 1
        final = f"{head},p={base64.b64encode(bytes(raw)).decode()}"
    _send(client, final)
    step = _next(client, tag)
    if isinstance(step, Response):
        return step
    scram.set_server_final(step.decode())  # the server proved it holds the ServerKey
    client.send(b"\r\n")
    done = _next(client, tag)
    assert isinstance(done, Response), done
    return done


def forgive(server: ServerProcess, user: User) -> None:
    """A successful LOGIN from loopback clears its failed-login record, so the next failure
    here (and in the tests beside) waits the base delay, not a doubled one."""
    client = RawClient.connect(server.imap_port, timeout=HANG_BOUND)
    client.login(user.name, user.password)
    client.close()


def auth_caps(client: RawClient) -> set[str]:
    line = client.command("CAPABILITY").data("CAPABILITY")[0].decode()
    return {w[5:] for w in line.split() if w.startswith("AUTH=")}


# -- over the wire, every backend (the passwd-file and the SQL users table) ----------------


def test_scram_signs_in_and_is_offered_where_keys_are_stored(
    server: ServerProcess, scram_user: User
) -> None:
    client = RawClient.connect(server.imap_port, timeout=HANG_BOUND)
    mechs = auth_caps(client)
    if not offers_scram(server):  # the proxy has no stored keys: SCRAM is not offered
        assert PLAIN_MECH not in mechs and PLUS_MECH not in mechs
        assert not authenticate(client, scram_client(scram_user), PLAIN_MECH).ok
        return
    assert PLAIN_MECH in mechs and PLUS_MECH not in mechs  # no -PLUS without TLS
    response = authenticate(client, scram_client(scram_user), PLAIN_MECH)
    assert response.ok, response.line
    assert client.command("SELECT INBOX").ok
    client.close()
    # LOGIN verifies the same stored keys by deriving them from the password
    plain = RawClient.connect(server.imap_port, timeout=HANG_BOUND)
    plain.login(scram_user.name, scram_user.password)
    plain.close()


# -- the engine's side: one backend ------------------------------------------------------


@pytest.mark.one_backend(not_on=("proxy",))
@pytest.mark.usefixtures("scram_offered")
@pytest.mark.parametrize("how", ["imaps", "starttls"])
@pytest.mark.parametrize("binding", ["tls-exporter", "tls-server-end-point"])
def test_plus_with_each_binding(
    server: ServerProcess, scram_user: User, how: str, binding: str
) -> None:
    client, wrapped = tls_client(server, how)
    assert {PLAIN_MECH, PLUS_MECH} <= auth_caps(client)
    response = authenticate(client, scram_client(scram_user, (binding, wrapped.binding(binding))))
    assert response.ok, response.line
    client.close()


@pytest.mark.one_backend(not_on=("proxy",))
@pytest.mark.usefixtures("scram_offered")
def test_binding_mismatch_is_refused(server: ServerProcess, scram_user: User) -> None:
    client, wrapped = tls_client(server, "imaps")
    other = bytes(b ^ 0xFF for b in wrapped.binding("tls-exporter"))  # another channel's
    response = authenticate(client, scram_client(scram_user, ("tls-exporter", other)))
    forgive(server, scram_user)
    assert response.status == "NO" and b"channel bindings" in response.text, response.line


@pytest.mark.one_backend(not_on=("proxy",))
@pytest.mark.usefixtures("scram_offered")
def test_y_flag_downgrade_is_detected(server: ServerProcess, scram_user: User) -> None:
    """A client that can bind but saw no -PLUS says "y"; on TLS the server offers -PLUS, so
    someone stripped it from CAPABILITY (RFC 5802 section 6): refused."""
    client, wrapped = tls_client(server, "imaps")
    data = wrapped.binding("tls-server-end-point")
    scram = scram_client(scram_user, ("tls-server-end-point", data), mech=PLAIN_MECH)
    assert scram.gs2_header.gs2_char == "y"
    response = authenticate(client, scram, PLAIN_MECH)
    forgive(server, scram_user)
    assert response.status == "NO" and b"downgrade" in response.text, response.line
    # without TLS there is nothing to bind to: "y" is honest there
    plain = RawClient.connect(server.imap_port, timeout=HANG_BOUND)
    scram = scram_client(scram_user, ("tls-server-end-point", data), mech=PLAIN_MECH)
    assert authenticate(plain, scram, PLAIN_MECH).ok


@pytest.mark.one_backend
def test_plus_is_not_offered_without_tls(server: ServerProcess, scram_user: User) -> None:
    client = RawClient.connect(server.imap_port, timeout=HANG_BOUND)
    response = client.command(f"AUTHENTICATE {PLUS_MECH}")
    assert response.status == "NO", response.line


@pytest.mark.one_backend(not_on=("proxy",))
@pytest.mark.usefixtures("scram_offered")
@pytest.mark.parametrize(
    "case", ["wrong password", "tampered proof", "unknown user", "argon2id user"]
)
def test_failures_look_alike(
    server: ServerProcess, scram_user: User, user: User, case: str
) -> None:
    """``user`` has an argon2id hash (no SCRAM keys): refused like a wrong password."""
    client = RawClient.connect(server.imap_port, timeout=HANG_BOUND)
    argon2_user = user
    user = scram_user
    if case == "wrong password":
        user = User(scram_user.name, scram_user.password + "x")
    elif case == "unknown user":
        user = new_user()
    elif case == "argon2id user":
        user = argon2_user
    response = authenticate(client, scram_client(user), PLAIN_MECH, tamper=case == "tampered proof")
    forgive(server, scram_user)
    assert response.status == "NO", response.line
    assert response.code == "AUTHENTICATIONFAILED"
    assert response.text.endswith(b"SCRAM-SHA-256: Authentication failed")


@pytest.mark.one_backend(not_on=("proxy",))
@pytest.mark.usefixtures("scram_offered")
def test_unknown_and_argon2_users_get_a_stable_salt(server: ServerProcess, user: User) -> None:
    """``user`` has an argon2id hash: no SCRAM, but nothing tells it from a stranger."""

    def salt_of(name: str) -> str:
        client = RawClient.connect(server.imap_port, timeout=HANG_BOUND)
        tag = client.next_tag()
        scram = ScramClient([PLAIN_MECH], name, "pw")
        client.send(
            f"{tag} AUTHENTICATE {PLAIN_MECH} ".encode()
            + base64.b64encode(scram.get_client_first().encode())
            + b"\r\n"
        )
        step = _next(client, tag)
        assert isinstance(step, bytes), step
        client.send(b"*\r\n")
        assert _next(client, tag).status == "BAD"  # cancelled
        client.close()
        fields = dict(f.split("=", 1) for f in step.decode().split(","))
        assert fields["i"] == "4096"
        return fields["s"]

    stranger = "nobody-" + user.name
    assert salt_of(stranger) == salt_of(stranger)
    assert salt_of(user.name) == salt_of(user.name)
    assert len(base64.b64decode(salt_of(user.name))) == len(base64.b64decode(salt_of(stranger)))


@pytest.mark.one_backend(not_on=("proxy",))
@pytest.mark.usefixtures("scram_offered")
def test_sasl_ir_and_cancel(server: ServerProcess, scram_user: User) -> None:
    client = RawClient.connect(server.imap_port, timeout=HANG_BOUND)
    response = authenticate(client, scram_client(scram_user), PLAIN_MECH, sasl_ir=True)
    assert response.ok, response.line
    other = RawClient.connect(server.imap_port, timeout=HANG_BOUND)
    tag = other.next_tag()
    other.send(f"{tag} AUTHENTICATE {PLAIN_MECH}\r\n")
    assert _next(other, tag) == b""
    other.send(b"*\r\n")
    done = _next(other, tag)
    assert isinstance(done, Response) and done.status == "BAD", done
    assert other.command("NOOP").ok  # still there, not authenticated
    assert PLAIN_MECH in auth_caps(other)


@pytest.mark.one_backend(not_on=("proxy",))
@pytest.mark.usefixtures("scram_offered")
def test_failures_count_like_logins(server: ServerProcess, scram_user: User) -> None:
    """Three failed SCRAM exchanges on one connection end it, as three failed LOGINs do."""
    client = RawClient.connect(server.imap_port, timeout=HANG_BOUND)
    wrong = User(scram_user.name, "not it")
    lines = b""
    for _ in range(3):
        response = authenticate(client, scram_client(wrong), PLAIN_MECH)
        forgive(server, scram_user)
        assert response.status == "NO"
        lines += b"".join(response.untagged)
    assert b"BYE" in lines + b"".join(client.wait_closed())
    assert f"Failed login for {scram_user.name!r}" in server.log_text()  # the user, logged


@pytest.mark.one_backend(not_on=("proxy",))
@pytest.mark.usefixtures("scram_offered")
def test_malformed_messages_are_bad(server: ServerProcess, scram_user: User) -> None:
    client = RawClient.connect(server.imap_port, timeout=HANG_BOUND)
    for first in ("x,,n=a,r=b", "n,,r=abc", "n,,n=a,r=b,m=ext", "n,b,n=a,r=b"):
        tag = client.next_tag()
        client.send(
            f"{tag} AUTHENTICATE {PLAIN_MECH} ".encode()
            + base64.b64encode(first.encode())
            + b"\r\n"
        )
        done = _next(client, tag)
        assert isinstance(done, Response) and done.status == "BAD", (first, done)
    assert client.command("NOOP").ok


# -- no server ----------------------------------------------------------------------------


def test_mechanisms_provide_the_interface() -> None:
    assert verifyObject(ISASLMechanism, mechanism)
    assert verifyObject(ISASLMechanism, mechanism_plus)
    assert (mechanism.name, mechanism_plus.name) == (PLAIN_MECH, PLUS_MECH)


def test_dovecot_written_keys_verify_and_sign_in() -> None:
    assert verify_password(DOVECOT_HASH, "pässword".encode())
    assert not verify_password(DOVECOT_HASH, b"password")

    class Store:
        async def find(self, user: str) -> PasswdEntry | None:
            return PasswdEntry(user, DOVECOT_HASH) if user == "tim" else None

    context = SASLContext(secure=False, plaintext_allowed=True, key_store=Store(), secret=b"k")

    async def run(authzid: str, password: str, first_only: bool = False) -> None:
        scram = ScramClient([PLAIN_MECH], "tim", password)
        exchange = mechanism.start(context)
        first = scram.get_client_first().replace("n,,", f"n,{authzid},", 1)
        challenge = await exchange.step(first.encode())
        if first_only:
            return
        scram.set_server_first(challenge.data.decode())  # type: ignore[union-attr]
        final = scram.get_client_final()
        done = await exchange.step(final.encode())
        scram.set_server_final(done.final.decode())  # type: ignore[union-attr]

    asyncio.run(run("", "pässword"))
    with pytest.raises(SASLFailed):
        asyncio.run(run("", "password"))
    with pytest.raises(SASLFailed) as caught:
        asyncio.run(run("a=root", "pässword"))
    assert caught.value.code == "AUTHORIZATIONFAILED"
    with pytest.raises(SASLError):
        asyncio.run(run("a=ti=m", "pässword"))
    # the user's own name as authzid passes the first step (scramp's client cannot send
    # one through its whole exchange: its binding input is always "n,,")
    asyncio.run(run("a=tim", "pässword", first_only=True))


def test_cli_writes_scram_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    passwd = tmp_path / "passwd"
    argv = ["user", "add", "tim", "--passwd-file", str(passwd), "--password-stdin"]
    monkeypatch.setattr(sys, "stdin", FakeStdin("pässword\n".encode()))
    assert cli.main([*argv, "--scheme", "scram-sha-256"]) == 0
    stored = PasswdFile(passwd).lookup("tim")
    assert stored is not None and stored.password.startswith("{SCRAM-SHA-256}4096,")
    assert verify_password(stored.password, "pässword".encode())
    change = ["user", "passwd", "tim", "--passwd-file", str(passwd), "--password-stdin"]
    monkeypatch.setattr(sys, "stdin", FakeStdin(b"tab\there\n"))  # SASLprep refuses it
    assert cli.main([*change, "--scheme", "SCRAM-SHA-256"]) == 1
    assert PasswdFile(passwd).lookup("tim") == stored


def test_checker_verifies_the_proof_again_against_the_stored_value_now() -> None:
    """The portal's checker does not take the mechanism's word: a proof made against keys
    the store no longer holds (the password changed mid-exchange) does not sign in."""
    stored = {"tim": hash_password(b"old", scheme=PLAIN_MECH)}

    class Store:
        async def find(self, user: str) -> PasswdEntry | None:
            return PasswdEntry(user, stored[user]) if user in stored else None

    context = SASLContext(secure=False, plaintext_allowed=True, key_store=Store(), secret=b"k")

    async def proof() -> Credentials:
        scram = ScramClient([PLAIN_MECH], "tim", "old")
        exchange = mechanism.start(context)
        challenge = await exchange.step(scram.get_client_first().encode())
        assert isinstance(challenge, Challenge)
        scram.set_server_first(challenge.data.decode())
        done = await exchange.step(scram.get_client_final().encode())
        assert isinstance(done, Credentials)
        return done

    checker = UserStoreChecker(Store())
    done = asyncio.run(proof())
    assert verifyObject(IStoredSecretProof, done.credentials)
    fired: list[object] = []
    checker.requestAvatarId(done.credentials).addBoth(fired.append)
    assert fired == ["tim"]
    stored["tim"] = hash_password(b"new", scheme=PLAIN_MECH)
    checker.requestAvatarId(done.credentials).addBoth(fired.append)
    assert isinstance(fired[1], Failure) and fired[1].check(UnauthorizedLogin)
