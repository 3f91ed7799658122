"""Connection-level behaviour: greeting, CAPABILITY, NOOP, LOGOUT, LOGIN, AUTHENTICATE,
STARTTLS, implicit TLS with a pinned certificate, ID, ENABLE, NAMESPACE (RFC 3501 6.1, 6.2;
RFC 4959, 2971, 5161, 2342)."""

from __future__ import annotations

import base64
import imaplib
import ssl

import pytest
from imapclient import IMAPClient
from imapserver import Connector, User

from bench.harness import RawClient, ServerProcess, parse_values, quote

EXTENSIONS = (
    "IMAP4REV1",
    "SASL-IR",
    "IDLE",
    "NAMESPACE",
    "ID",
    "ENABLE",
    "UNSELECT",
    "UIDPLUS",
    "MOVE",
    "CHILDREN",
    "SPECIAL-USE",
    "LITERAL+",
    "PARTIAL",
    "CONTEXT=SEARCH",
    "CONTEXT=SORT",
)


def capabilities(client: RawClient) -> list[str]:
    response = client.command("CAPABILITY")
    assert response.ok, response.line
    lines = response.data("CAPABILITY")
    assert len(lines) == 1, response.untagged
    return [c.upper() for c in lines[0].decode().split()]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- greeting, CAPABILITY, NOOP, LOGOUT --------------------------------------------------


def test_greeting_is_untagged_ok(server: ServerProcess) -> None:
    client = RawClient.connect(server.imap_port)
    try:
        assert client.greeting.startswith(b"* OK "), client.greeting
        assert client.greeting.endswith(b"\r\n")
    finally:
        client.close()


def test_capability_before_login(connect: Connector) -> None:
    caps = capabilities(connect.raw(login=False))
    for ext in EXTENSIONS:
        assert ext in caps, (ext, caps)
    assert "STARTTLS" in caps
    assert "AUTH=PLAIN" in caps and "AUTH=LOGIN" in caps
    # Loopback connections may log in without TLS.
    assert "LOGINDISABLED" not in caps
    limits = [c for c in caps if c.startswith("APPENDLIMIT")]
    assert len(limits) == 1 and limits[0].startswith("APPENDLIMIT=")
    assert int(limits[0].split("=", 1)[1]) > 0


def test_capability_after_login(raw: RawClient) -> None:
    caps = capabilities(raw)
    for ext in EXTENSIONS:
        assert ext in caps, (ext, caps)
    assert "STARTTLS" not in caps, "STARTTLS is only valid before authentication"
    assert any(c.startswith("APPENDLIMIT=") for c in caps)


def test_capability_with_imaplib_and_imapclient(connect: Connector) -> None:
    conn = connect.imaplib(login=False)
    assert "IMAP4REV1" in conn.capabilities
    cli = connect.imapclient(login=False)
    assert cli.has_capability("IDLE") and cli.has_capability("MOVE")


def test_noop_in_every_state(connect: Connector) -> None:
    client = connect.raw(login=False)
    assert client.command("NOOP").ok
    client.login(connect.user.name, connect.user.password)
    assert client.command("NOOP").ok
    assert client.command("SELECT INBOX").ok
    assert client.command("NOOP").ok


@pytest.mark.parametrize("state", ["not-authenticated", "authenticated", "selected"])
def test_logout_sends_bye_then_ok_then_closes(connect: Connector, state: str) -> None:
    client = connect.raw(login=state != "not-authenticated")
    if state == "selected":
        assert client.command("SELECT INBOX").ok
    response = client.command("LOGOUT")
    assert response.ok
    byes = [line for line in response.untagged if line.upper().startswith(b"* BYE")]
    assert len(byes) == 1, response.untagged
    assert client.wait_closed() == []


def test_commands_are_case_insensitive(raw: RawClient) -> None:
    assert raw.command("noop").ok
    assert raw.command("select inbox").ok
    assert raw.command("Fetch 1:* (flags)").status in ("OK", "BAD")  # empty mailbox: * is BAD
    assert raw.command("uid fetch 1:* (flags)").ok


# -- LOGIN ---------------------------------------------------------------------------------


def test_login_with_imaplib(connect: Connector) -> None:
    conn = connect.imaplib(login=False)
    typ, _ = conn.login(connect.user.name, connect.user.password)
    assert typ == "OK"
    assert conn.state == "AUTH"
    assert conn.select("INBOX")[0] == "OK"


def test_login_with_literals(connect: Connector) -> None:
    client = connect.raw(login=False)
    name = connect.user.name.encode()
    password = connect.user.password.encode()
    tag = client.next_tag()
    client.send(tag.encode() + b" LOGIN {%d}\r\n" % len(name))
    assert client.read_line().startswith(b"+")
    client.send(name + b" {%d}\r\n" % len(password))
    assert client.read_line().startswith(b"+")
    client.send(password + b"\r\n")
    assert client.read_until_tagged(tag).ok


def test_login_with_literal_plus(connect: Connector) -> None:
    client = connect.raw(login=False)
    name = connect.user.name.encode()
    password = connect.user.password.encode()
    data = b"a1 LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(name), name, len(password), password)
    client.send(data)
    response = client.read_until_tagged("a1")
    assert response.ok
    assert not any(line.startswith(b"+") for line in response.untagged)


def test_bad_password_is_no_and_session_stays_unauthenticated(connect: Connector) -> None:
    client = connect.raw(login=False)
    response = client.command(f'LOGIN {connect.user.name} "wrong password"')
    assert response.status == "NO", response.line
    assert client.command("SELECT INBOX").status in ("BAD", "NO")
    # The right password still works on the same connection.
    client.login(connect.user.name, connect.user.password)


def test_unknown_user_is_no(server: ServerProcess) -> None:
    client = RawClient.connect(server.imap_port)
    try:
        assert client.command('LOGIN nosuchuser "whatever"').status == "NO"
    finally:
        client.close()


def test_bad_password_imaplib_raises(connect: Connector) -> None:
    conn = connect.imaplib(login=False)
    with pytest.raises(imaplib.IMAP4.error):
        conn.login(connect.user.name, "not the password")


def test_login_twice_is_rejected(raw: RawClient, user: User) -> None:
    response = raw.command(f"LOGIN {quote(user.name)} {quote(user.password)}")
    assert response.status in ("BAD", "NO"), response.line


def test_login_missing_argument_is_bad(connect: Connector) -> None:
    client = connect.raw(login=False)
    assert client.command(f"LOGIN {connect.user.name}").status == "BAD"


# -- AUTHENTICATE ------------------------------------------------------------------------


def test_authenticate_plain_with_continuation(connect: Connector) -> None:
    client = connect.raw(login=False)
    tag = client.next_tag()
    client.send(f"{tag} AUTHENTICATE PLAIN\r\n")
    line = client.read_line()
    assert line.startswith(b"+"), line
    client.send(b64(f"\0{connect.user.name}\0{connect.user.password}") + "\r\n")
    assert client.read_until_tagged(tag).ok
    assert client.command("SELECT INBOX").ok


def test_authenticate_plain_sasl_ir(connect: Connector) -> None:
    client = connect.raw(login=False)
    token = b64(f"\0{connect.user.name}\0{connect.user.password}")
    response = client.command(f"AUTHENTICATE PLAIN {token}")
    assert response.ok, response.line
    assert not any(line.startswith(b"+") for line in response.untagged)
    assert client.command("SELECT INBOX").ok


def test_authenticate_plain_with_authzid_equal_to_user(connect: Connector) -> None:
    client = connect.raw(login=False)
    name = connect.user.name
    token = b64(f"{name}\0{name}\0{connect.user.password}")
    assert client.command(f"AUTHENTICATE PLAIN {token}").ok


def test_authenticate_plain_wrong_password(connect: Connector) -> None:
    client = connect.raw(login=False)
    token = b64(f"\0{connect.user.name}\0nope")
    assert client.command(f"AUTHENTICATE PLAIN {token}").status == "NO"


def test_authenticate_plain_imaplib(connect: Connector) -> None:
    conn = connect.imaplib(login=False)
    secret = f"\0{connect.user.name}\0{connect.user.password}".encode()
    typ, _ = conn.authenticate("PLAIN", lambda _challenge: secret)
    assert typ == "OK"


def test_authenticate_plain_imapclient(connect: Connector) -> None:
    cli = connect.imapclient(login=False)
    cli.plain_login(connect.user.name, connect.user.password)
    assert cli.select_folder("INBOX")[b"EXISTS"] == 0


def test_authenticate_login(connect: Connector) -> None:
    client = connect.raw(login=False)
    tag = client.next_tag()
    client.send(f"{tag} AUTHENTICATE LOGIN\r\n")
    assert client.read_line().startswith(b"+")
    client.send(b64(connect.user.name) + "\r\n")
    assert client.read_line().startswith(b"+")
    client.send(b64(connect.user.password) + "\r\n")
    assert client.read_until_tagged(tag).ok


def test_authenticate_cancel_is_bad(connect: Connector) -> None:
    # RFC 3501 6.2.2: a "*" line cancels; the server MUST answer BAD.
    client = connect.raw(login=False)
    tag = client.next_tag()
    client.send(f"{tag} AUTHENTICATE PLAIN\r\n")
    assert client.read_line().startswith(b"+")
    client.send("*\r\n")
    assert client.read_until_tagged(tag).status == "BAD"
    assert client.command("NOOP").ok


def test_authenticate_unknown_mechanism_is_no(connect: Connector) -> None:
    client = connect.raw(login=False)
    response = client.command("AUTHENTICATE X-NO-SUCH-MECHANISM")
    assert response.status in ("NO", "BAD"), response.line
    assert client.command("NOOP").ok


def test_authenticate_garbage_base64(connect: Connector) -> None:
    client = connect.raw(login=False)
    tag = client.next_tag()
    client.send(f"{tag} AUTHENTICATE PLAIN\r\n")
    assert client.read_line().startswith(b"+")
    client.send("!!!not base64!!!\r\n")
    assert client.read_until_tagged(tag).status in ("BAD", "NO")
    assert client.command("NOOP").ok


def test_authenticate_in_authenticated_state_is_rejected(raw: RawClient, user: User) -> None:
    token = b64(f"\0{user.name}\0{user.password}")
    assert raw.command(f"AUTHENTICATE PLAIN {token}").status in ("BAD", "NO")


# -- TLS -----------------------------------------------------------------------------------


def test_starttls_imaplib_pinned(connect: Connector, server: ServerProcess) -> None:
    conn = connect.imaplib(login=False)
    typ, _ = conn.starttls(ssl_context=server.ssl_context())
    assert typ == "OK"
    assert isinstance(conn.sock, ssl.SSLSocket)
    caps = [c.upper() for c in conn.capabilities]
    assert "STARTTLS" not in caps
    assert "LOGINDISABLED" not in caps
    typ, _ = conn.login(connect.user.name, connect.user.password)
    assert typ == "OK"


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_starttls_raw_then_login(connect: Connector, server: ServerProcess, hostname: str) -> None:
    client = connect.raw(login=False)
    assert client.starttls(server.ssl_context(), server_hostname=hostname).ok
    caps = capabilities(client)
    assert "STARTTLS" not in caps
    assert client.command("STARTTLS").status in ("BAD", "NO")
    client.login(connect.user.name, connect.user.password)
    assert client.command("SELECT INBOX").ok


def test_starttls_after_login_is_rejected(raw: RawClient) -> None:
    assert raw.command("STARTTLS").status in ("BAD", "NO")
    assert raw.command("NOOP").ok


def test_starttls_discards_pipelined_plaintext(connect: Connector, server: ServerProcess) -> None:
    # Commands sent in the clear after STARTTLS must not be executed after the handshake.
    client = connect.raw(login=False)
    name, password = connect.user.name, connect.user.password
    client.send(f"s1 STARTTLS\r\ns2 LOGIN {name} {password}\r\n".encode())
    line = client.read_line()
    while not line.startswith(b"s1 "):
        line = client.read_line()
    if not line.startswith(b"s1 OK"):
        return  # the server refused the pipelined STARTTLS outright: also safe
    client.buf.clear()
    try:
        client.sock = server.ssl_context().wrap_socket(client.sock, server_hostname="localhost")
        response = client.command("NOOP")
    except (ssl.SSLEOFError, ConnectionResetError, EOFError):
        return  # the server hung up on the injected plaintext: also safe
    assert response.ok
    assert not any(b"s2" in line for line in response.untagged)
    assert client.command("SELECT INBOX").status in ("BAD", "NO"), "pipelined LOGIN ran"


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_implicit_tls_pinned_imaplib(connect: Connector, hostname: str) -> None:
    conn = connect.imaplib_ssl(host=hostname)
    assert conn.state == "AUTH"
    typ, _ = conn.select("INBOX")
    assert typ == "OK"


def test_implicit_tls_imapclient(connect: Connector) -> None:
    cli = connect.imapclient_ssl()
    assert cli.select_folder("INBOX")[b"EXISTS"] == 0


def test_implicit_tls_capabilities(connect: Connector) -> None:
    client = connect.raw_tls(login=False)
    assert client.greeting.startswith(b"* OK")
    caps = capabilities(client)
    assert "STARTTLS" not in caps
    assert "LOGINDISABLED" not in caps
    assert "AUTH=PLAIN" in caps


def test_implicit_tls_rejects_unpinned_trust(server: ServerProcess) -> None:
    ctx = ssl.create_default_context()  # system CAs only: the self-signed leaf is unknown
    with pytest.raises(ssl.SSLCertVerificationError):
        RawClient.connect(server.imaps_port, ssl_context=ctx, server_hostname="localhost")


def test_certificate_does_not_match_other_names(server: ServerProcess) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        RawClient.connect(
            server.imaps_port, ssl_context=server.ssl_context(), server_hostname="example.com"
        )


# -- ID, ENABLE, NAMESPACE ---------------------------------------------------------------


@pytest.mark.parametrize("args", ["NIL", '("name" "pytest" "version" "1.0")'])
def test_id_before_and_after_login(connect: Connector, args: str) -> None:
    for client in (connect.raw(login=False), connect.raw()):
        response = client.command(f"ID {args}")
        assert response.ok, response.line
        lines = response.data("ID")
        assert len(lines) == 1
        values, _ = parse_values(lines[0])
        assert len(values) == 1
        assert values[0] is None or (isinstance(values[0], list) and len(values[0]) % 2 == 0)


def test_id_with_imapclient(client: IMAPClient) -> None:
    info = client.id_({"name": "pytest"})
    assert info is None or isinstance(info, (tuple, list))


def test_id_bad_arguments(raw: RawClient) -> None:
    assert raw.command('ID ("name")').status == "BAD"
    assert raw.command("ID").status == "BAD"


def test_enable_unknown_extension_is_ignored(raw: RawClient) -> None:
    response = raw.command("ENABLE X-NO-SUCH-EXTENSION")
    assert response.ok, response.line
    for line in response.data("ENABLED"):
        assert b"X-NO-SUCH-EXTENSION" not in line.upper()


def test_enable_before_login_is_rejected(connect: Connector) -> None:
    client = connect.raw(login=False)
    assert client.command("ENABLE CONDSTORE").status in ("BAD", "NO")


def test_enable_without_arguments_is_bad(raw: RawClient) -> None:
    assert raw.command("ENABLE").status == "BAD"


def test_namespace(raw: RawClient) -> None:
    response = raw.command("NAMESPACE")
    assert response.ok
    lines = response.data("NAMESPACE")
    assert len(lines) == 1
    values, _ = parse_values(lines[0])
    assert len(values) == 3
    personal = values[0]
    assert isinstance(personal, list) and personal, "a personal namespace is expected"
    for namespace in values:
        if namespace is None:
            continue
        assert isinstance(namespace, list)
        for desc in namespace:
            assert isinstance(desc, list) and len(desc) >= 2
            assert isinstance(desc[0], bytes)
            assert desc[1] is None or desc[1] == b"/"


def test_namespace_imapclient(client: IMAPClient) -> None:
    ns = client.namespace()
    assert ns.personal


def test_namespace_before_login_is_rejected(connect: Connector) -> None:
    client = connect.raw(login=False)
    assert client.command("NAMESPACE").status in ("BAD", "NO")


# -- wrong state ---------------------------------------------------------------------------

NOT_AUTH_FORBIDDEN = [
    "SELECT INBOX",
    "EXAMINE INBOX",
    "CREATE foo",
    "DELETE foo",
    "RENAME foo bar",
    "SUBSCRIBE INBOX",
    "UNSUBSCRIBE INBOX",
    'LIST "" *',
    'LSUB "" *',
    "STATUS INBOX (MESSAGES)",
    "APPEND INBOX {0+}\r\n",
    "CHECK",
    "CLOSE",
    "UNSELECT",
    "EXPUNGE",
    "SEARCH ALL",
    "FETCH 1 FLAGS",
    "STORE 1 +FLAGS (\\Seen)",
    "COPY 1 INBOX",
    "MOVE 1 INBOX",
    "UID FETCH 1 FLAGS",
    "UID SEARCH ALL",
    "IDLE",
]

AUTH_FORBIDDEN = [
    "CHECK",
    "CLOSE",
    "UNSELECT",
    "EXPUNGE",
    "SEARCH ALL",
    "FETCH 1 FLAGS",
    "STORE 1 +FLAGS (\\Seen)",
    "COPY 1 INBOX",
    "MOVE 1 INBOX",
    "UID FETCH 1 FLAGS",
    "UID STORE 1 +FLAGS (\\Seen)",
    "UID COPY 1 INBOX",
    "UID MOVE 1 INBOX",
    "UID SEARCH ALL",
    "UID EXPUNGE 1",
]


@pytest.mark.one_backend  # the engine refuses these before any backend is asked
@pytest.mark.parametrize("command", NOT_AUTH_FORBIDDEN)
def test_wrong_state_before_login(shared_connect: Connector, command: str) -> None:
    client = shared_connect.raw(login=False)
    response = client.command(command)
    assert response.status in ("BAD", "NO"), response.line
    assert client.command("NOOP").ok


@pytest.mark.one_backend  # the engine refuses these before any backend is asked
@pytest.mark.parametrize("command", AUTH_FORBIDDEN)
def test_wrong_state_without_selected_mailbox(shared_connect: Connector, command: str) -> None:
    client = shared_connect.raw()
    response = client.command(command)
    assert response.status in ("BAD", "NO"), response.line
    assert client.command("NOOP").ok


_CORE_CAPABILITIES = (
    "IMAP4REV1 IMAP4REV2 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN"
    " SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS STATUS=SIZE APPENDLIMIT="
)


def test_capability_words_and_order_in_every_state(
    connect: Connector, server: ServerProcess
) -> None:
    """The words and their order, pinned: the extension registry must keep them."""
    client = connect.raw(login=False)
    before = " ".join(capabilities(client))
    core, _, rest = before.partition(" STARTTLS ")
    limit = core.partition(" APPENDLIMIT=")[2]
    tail = (
        " CONDSTORE QRESYNC ESEARCH SORT SORT=DISPLAY ESORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES"
        " BINARY MULTIAPPEND CATENATE PREVIEW PARTIAL CONTEXT=SEARCH CONTEXT=SORT SEARCHRES WITHIN"
        " QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE ACL RIGHTS=TEXK LIST-MYRIGHTS UTF8=ACCEPT"
        " OBJECTID SAVEDATE NOTIFY"
    )
    assert limit.endswith(tail), before
    assert core == _CORE_CAPABILITIES + limit, before
    assert rest == "AUTH=PLAIN AUTH=LOGIN", rest  # no SCRAM: argon2id users (auto)
    assert client.starttls(server.ssl_context(), server_hostname="localhost").ok
    assert " ".join(capabilities(client)) == f"{_CORE_CAPABILITIES}{limit} {rest}"
    client.login(connect.user.name, connect.user.password)
    if server.backend.name == "proxy":  # the tests' Dovecot has no OBJECTID
        limit = limit.replace(" OBJECTID", "")
        limit = limit.replace(" ACL RIGHTS=TEXK LIST-MYRIGHTS", "")  # no ACLs upstream
    after_login = f"{_CORE_CAPABILITIES}{limit} COMPRESS=DEFLATE"
    assert " ".join(capabilities(client)) == after_login
    assert client.command("SELECT INBOX").ok
    assert " ".join(capabilities(client)) == after_login
