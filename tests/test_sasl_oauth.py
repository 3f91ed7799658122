"""OAUTHBEARER (RFC 7628) and XOAUTH2 against a stand-in provider (``tests/oauthserver.py``,
twisted.web over HTTPS with a certificate made here, trusted through ``[oauth] ca-file``):
RFC 7662 introspection and a JWKS, tokens signed here with joserfc.

What is checked is the engine's and the validators' own behaviour, so one backend.  A
failed sign-in costs the failing address a throttle delay (a second), so each failing
exchange comes from its own loopback address (127.0.1.N) and the refusals run side by side.
"""

from __future__ import annotations

import base64
import imaplib
import itertools
import json
import secrets
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from twisted.python import usage

from bench.harness import HOST, RawClient, Response, ServerProcess
from mailserv.tap import Options
from mailserv.tls import generate_self_signed
from mailserv.workers.wire import decode_config, encode_config

pytestmark = pytest.mark.one_backend(not_on=("proxy",))

ISSUER = "https://issuer.example"
AUDIENCE = "imap.example"
SCOPE = "imap"
TIMEOUT = 0.5
"""The IMAP server's deadline for the provider (a request the provider never answers)."""
REPO = Path(__file__).resolve().parent.parent

Key = RSAKey | ECKey


@dataclass
class Provider:
    state: Path
    port: int
    proc: subprocess.Popen[bytes]
    keys: dict[str, Key]

    @property
    def base(self) -> str:
        return f"https://{HOST}:{self.port}"

    def publish(self, *kids: str) -> None:
        keys = KeySet([self.keys[kid] for kid in kids]).as_dict(private=False)
        (self.state / "jwks.json").write_text(json.dumps(keys))

    def introspection(self, token: str, answer: object) -> None:
        path = self.state / "tokens.json"
        table = json.loads(path.read_text())
        table[token] = answer
        path.write_text(json.dumps(table))

    def stats(self) -> dict[str, int]:
        context = ssl.create_default_context(cafile=str(self.state / "cert.pem"))
        with urllib.request.urlopen(f"{self.base}/stats", context=context, timeout=10) as r:
            counts: dict[str, int] = json.load(r)
        return counts


@dataclass
class OAuthServer:
    imap: ServerProcess
    provider: Provider
    user: str
    sources: Iterator[int]

    def client(self) -> RawClient:
        """A client from a loopback address of its own (its failures throttle only it)."""
        source = f"127.0.1.{next(self.sources)}"
        sock = socket.create_connection(
            (HOST, self.imap.imap_port), timeout=10, source_address=(source, 0)
        )
        client = RawClient(sock, 10.0)
        client.greeting = client.read_response()
        return client


def _sign(key: Key, claims: dict[str, object], kid: str | None = None) -> str:
    header = {"alg": "ES256" if isinstance(key, ECKey) else "RS256", "kid": kid or key.kid}
    return jwt.encode(header, claims, key)


def _claims(user: str, **changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "email": user,
        "sub": "opaque-subject-id",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(changes)
    return claims


def _active(user: str, **changes: object) -> dict[str, object]:
    answer: dict[str, object] = {"active": True, "email": user, "aud": AUDIENCE, "iss": ISSUER}
    answer["exp"] = int(time.time()) + 600
    answer.update(changes)
    return answer


def _bearer(token: str, authzid: str = "") -> bytes:
    gs2 = f"n,a={authzid}," if authzid else "n,,"
    return f"{gs2}\x01host={HOST}\x01port=143\x01auth=Bearer {token}\x01\x01".encode()


def _xoauth2(user: str, token: str) -> bytes:
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


@dataclass
class Outcome:
    challenges: list[bytes]
    response: Response


def _authenticate(client: RawClient, mechanism: str, message: bytes) -> Outcome:
    """AUTHENTICATE with ``message`` as initial response; any challenge answered ``\\x01``
    (RFC 7628's answer to an error; XOAUTH2 servers take anything)."""
    tag = client.next_tag()
    initial = base64.b64encode(message).decode() or "="
    client.send(f"{tag} AUTHENTICATE {mechanism} {initial}\r\n")
    challenges: list[bytes] = []
    while True:
        line = client.read_response()
        if line.startswith(b"+ "):
            challenges.append(base64.b64decode(line[2:].strip()))
            client.send(base64.b64encode(b"\x01") + b"\r\n")
        elif line.startswith(tag.encode() + b" "):
            status, _, text = line[len(tag) + 1 :].partition(b" ")
            return Outcome(challenges, Response(tag.encode(), status.decode(), text, line, []))


def _start_provider(state: Path) -> subprocess.Popen[bytes]:
    script = REPO / "tests" / "oauthserver.py"
    log = open(state / "provider.log", "wb")  # noqa: SIM115 - the child keeps writing it
    proc = subprocess.Popen([sys.executable, str(script), str(state)], stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + 30
    while not (state / "port").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError((state / "provider.log").read_text())
        time.sleep(0.02)
    return proc


@pytest.fixture(scope="module")
def oauth(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthServer]:
    """An OAuth provider and an IMAP server (of the selected backend) that trusts it."""
    if server.backend.name == "proxy":
        pytest.skip("the proxy backend offers no OAuth (the upstream needs a password)")
    state = tmp_path_factory.mktemp("oauth-provider")
    cert, key = generate_self_signed([HOST])
    (state / "cert.pem").write_bytes(cert)
    (state / "key.pem").write_bytes(key)
    secret = secrets.token_urlsafe(12) + ":/ %"
    (state / "client.json").write_text(json.dumps({"id": "mail server", "secret": secret}))
    (state / "tokens.json").write_text("{}")
    keys: dict[str, Key] = {
        "k1": RSAKey.generate_key(2048, parameters={"kid": "k1"}),
        "k2": ECKey.generate_key("P-256", parameters={"kid": "k2"}),
        "rogue": RSAKey.generate_key(2048, parameters={"kid": "k1"}),
    }
    proc = _start_provider(state)
    provider = Provider(state, int((state / "port").read_text()), proc, keys)
    provider.publish("k1")
    config = state / "mailserv.toml"
    config.write_text(
        "[oauth]\n"
        f'introspect = "{provider.base}/introspect"\n'
        f'jwks = "{provider.base}/jwks"\n'
        f'issuer = "{ISSUER}"\naudience = "{AUDIENCE}"\nuser-claim = "email"\n'
        f'client-id = "mail server"\nclient-secret = {json.dumps(secret)}\n'
        f'ca-file = "cert.pem"\ntimeout = {TIMEOUT}\njwks-refetch-interval = 3600\n'
        f'scope = "{SCOPE}"\nopenid-configuration = "{provider.base}/.well-known/oc"\n'
    )
    data_dir = tmp_path_factory.mktemp("oauth-imap")
    extra = ("--workers", "1", "--config", str(config))
    imap = ServerProcess(data_dir, server.backend, {"auth_failure_delay": 0.05}, extra)
    try:
        imap.start()
        user = f"t{secrets.token_hex(5)}@example.org"
        imap.add_user(user, secrets.token_urlsafe(12))
        yield OAuthServer(imap, provider, user, itertools.count(2))
    finally:
        imap.stop()
        proc.kill()
        proc.wait(10)


def test_offered_only_when_configured(oauth: OAuthServer, server: ServerProcess) -> None:
    client = oauth.client()
    caps = client.command("CAPABILITY").untagged[0]
    assert b" AUTH=OAUTHBEARER" in caps and b" AUTH=XOAUTH2" in caps, caps
    plain = RawClient.connect(server.imap_port)
    try:
        assert b"OAUTHBEARER" not in plain.command("CAPABILITY").untagged[0]
    finally:
        plain.close()


def test_imaplib_oauthbearer_with_a_jwt(oauth: OAuthServer) -> None:
    token = _sign(oauth.provider.keys["k1"], _claims(oauth.user))
    conn = imaplib.IMAP4(HOST, oauth.imap.imap_port, timeout=10)
    try:
        typ, _ = conn.authenticate("OAUTHBEARER", lambda _challenge: _bearer(token))
        assert typ == "OK"
        assert conn.select("INBOX")[0] == "OK"
    finally:
        conn.logout()


def test_imaplib_xoauth2_introspected_once_then_cached(oauth: OAuthServer) -> None:
    token = "opaque-" + secrets.token_urlsafe(16)
    oauth.provider.introspection(token, _active(oauth.user))
    before = oauth.provider.stats()["introspect"]
    for _ in range(2):
        conn = imaplib.IMAP4(HOST, oauth.imap.imap_port, timeout=10)
        try:
            typ, _ = conn.authenticate("XOAUTH2", lambda _c: _xoauth2(oauth.user, token))
            assert typ == "OK"
        finally:
            conn.logout()
    assert oauth.provider.stats()["introspect"] == before + 1


def test_authorization_identity_equal_to_the_token_user(oauth: OAuthServer) -> None:
    token = _sign(oauth.provider.keys["k1"], _claims(oauth.user))
    outcome = _authenticate(oauth.client(), "OAUTHBEARER", _bearer(token, oauth.user))
    assert outcome.response.ok, outcome.response.line
    assert outcome.challenges == []


def _refusals(oauth: OAuthServer) -> dict[str, tuple[str, bytes, str]]:
    """Case → (mechanism, message, response code expected with NO)."""
    keys, user, now = oauth.provider.keys, oauth.user, int(time.time())
    revoked = "revoked-" + secrets.token_urlsafe(8)
    elsewhere = "elsewhere-" + secrets.token_urlsafe(8)
    stranger = "stranger-" + secrets.token_urlsafe(8)
    oauth.provider.introspection(revoked, {"active": False})
    oauth.provider.introspection(elsewhere, _active(user, aud="another-service"))
    oauth.provider.introspection(stranger, _active("nobody-here@example.org"))
    signed = {
        "expired": _claims(user, exp=now - 3600, iat=now - 7200),
        "wrong audience": _claims(user, aud="another-service"),
        "wrong issuer": _claims(user, iss="https://evil.example"),
    }
    failed = "AUTHENTICATIONFAILED"
    cases = {
        name: ("OAUTHBEARER", _bearer(_sign(keys["k1"], c)), failed) for name, c in signed.items()
    }
    forged = _sign(keys["rogue"], _claims(user))
    cases["bad signature"] = ("OAUTHBEARER", _bearer(forged), failed)
    cases["bad signature xoauth2"] = ("XOAUTH2", _xoauth2(user, forged), failed)
    cases["not a jwt"] = ("OAUTHBEARER", _bearer("a.b.c"), failed)
    cases["revoked"] = ("OAUTHBEARER", _bearer(revoked), failed)
    cases["unknown opaque"] = ("XOAUTH2", _xoauth2(user, "never-issued"), failed)
    cases["introspected for another audience"] = ("OAUTHBEARER", _bearer(elsewhere), failed)
    return cases


def test_refused_tokens_get_the_error_exchange_then_no(oauth: OAuthServer) -> None:
    cases = _refusals(oauth)

    def attempt(case: tuple[str, bytes, str]) -> Outcome:
        return _authenticate(oauth.client(), case[0], case[1])

    with ThreadPoolExecutor(len(cases)) as pool:
        outcomes = dict(zip(cases, pool.map(attempt, cases.values()), strict=True))
    for name, outcome in outcomes.items():
        mechanism, _message, code = cases[name]
        assert outcome.response.status == "NO", (name, outcome.response.line)
        assert f"[{code}]".encode() in outcome.response.line, (name, outcome.response.line)
        assert len(outcome.challenges) == 1, (name, outcome.challenges)
        error = json.loads(outcome.challenges[0])
        if mechanism == "OAUTHBEARER":
            assert error["status"] == "invalid_token" and error["scope"] == SCOPE, name
            assert error["openid-configuration"].endswith("/.well-known/oc"), name
        else:
            assert error["status"] == "401", name


def test_valid_token_refused_for_another_user_or_a_stranger(oauth: OAuthServer) -> None:
    token = _sign(oauth.provider.keys["k1"], _claims(oauth.user))
    stranger = _sign(oauth.provider.keys["k1"], _claims("nobody-here@example.org"))
    cases = [
        ("OAUTHBEARER", _bearer(token, "someone-else@example.org"), "AUTHORIZATIONFAILED"),
        ("XOAUTH2", _xoauth2("someone-else@example.org", token), "AUTHORIZATIONFAILED"),
        ("OAUTHBEARER", _bearer(stranger), "AUTHENTICATIONFAILED"),
        ("OAUTHBEARER", b"p=tls-unique,," + _bearer(token)[3:], "AUTHENTICATIONFAILED"),
    ]
    with ThreadPoolExecutor(len(cases)) as pool:
        outcomes = list(pool.map(lambda c: _authenticate(oauth.client(), c[0], c[1]), cases))
    for (mechanism, _message, code), outcome in zip(cases, outcomes, strict=True):
        line = outcome.response.line
        assert outcome.response.status == "NO" and f"[{code}]".encode() in line, (mechanism, line)
        assert outcome.challenges == [], line  # no error exchange: the token itself was good


def test_rotated_key_is_fetched_once_unknown_kids_are_not(oauth: OAuthServer) -> None:
    provider = oauth.provider
    first = _sign(provider.keys["k1"], _claims(oauth.user))
    assert _authenticate(oauth.client(), "OAUTHBEARER", _bearer(first)).response.ok
    fetched = provider.stats()["jwks"]
    provider.publish("k1", "k2")  # the provider rotates to an EC key
    rotated = _sign(provider.keys["k2"], _claims(oauth.user))
    outcome = _authenticate(oauth.client(), "OAUTHBEARER", _bearer(rotated))
    assert outcome.response.ok, outcome.response.line
    assert provider.stats()["jwks"] == fetched + 1
    # A made-up key id right after: refused without asking the provider again.
    ghost = _sign(provider.keys["k2"], _claims(oauth.user), kid="ghost")
    outcome = _authenticate(oauth.client(), "OAUTHBEARER", _bearer(ghost))
    assert outcome.response.status == "NO", outcome.response.line
    assert provider.stats()["jwks"] == fetched + 1


def test_provider_too_slow_is_unavailable_and_blocks_no_one(oauth: OAuthServer) -> None:
    hanging = "hang-" + secrets.token_urlsafe(8)
    oauth.provider.introspection(hanging, "hang")
    waiting = oauth.client()
    tag = waiting.next_tag()
    message = base64.b64encode(_bearer(hanging)).decode()
    waiting.send(f"{tag} AUTHENTICATE OAUTHBEARER {message}\r\n")
    other = oauth.client()
    token = _sign(oauth.provider.keys["k1"], _claims(oauth.user))
    assert _authenticate(other, "OAUTHBEARER", _bearer(token)).response.ok
    assert other.command("NOOP").ok
    response = waiting.read_until_tagged(tag)
    assert response.status == "NO" and b"[UNAVAILABLE]" in response.line, response.line
    assert waiting.command("NOOP").ok


def test_provider_unavailable_is_no_failed_login(oauth: OAuthServer) -> None:
    """A provider answering 503 (or down, or too slow) decides nothing: the answers are not
    failed logins, so the connection is not closed after ``max_auth_failures`` (3) of them
    and its address and user are not throttled."""
    failing = "503-" + secrets.token_urlsafe(8)
    oauth.provider.introspection(failing, "503")
    client = oauth.client()
    for _ in range(4):
        outcome = _authenticate(client, "XOAUTH2", _xoauth2(oauth.user, failing))
        response = outcome.response
        assert response.status == "NO" and b"[UNAVAILABLE]" in response.line, response.line
    assert client.command("NOOP").ok
    token = _sign(oauth.provider.keys["k1"], _claims(oauth.user))
    assert _authenticate(client, "OAUTHBEARER", _bearer(token)).response.ok


MALFORMED: list[tuple[str, bytes]] = [
    ("OAUTHBEARER", b"x,,\x01auth=Bearer abc\x01\x01"),
    ("OAUTHBEARER", b"n,,auth=Bearer abc\x01\x01"),
    ("OAUTHBEARER", b"n,,\x01auth=Bearer abc\x01"),
    ("OAUTHBEARER", b"n,,\x01auth=Basic abc\x01\x01"),
    ("OAUTHBEARER", b"n,,\x01auth=Bearer a b\x01\x01"),
    ("OAUTHBEARER", b"n,,\x01host=x\x01\x01"),
    ("OAUTHBEARER", b"n,,\x01\x01"),
    ("OAUTHBEARER", b"n,u=x,\x01auth=Bearer abc\x01\x01"),
    ("OAUTHBEARER", b"n,a=x=41,\x01auth=Bearer abc\x01\x01"),
    ("OAUTHBEARER", b"n,a=\xff,\x01auth=Bearer abc\x01\x01"),
    ("OAUTHBEARER", b"n,,\x01auth=Bearer abc\x01auth=Bearer d\x01\x01"),
    ("OAUTHBEARER", b"n,,\x011=2\x01auth=Bearer abc\x01\x01"),
    ("OAUTHBEARER", b""),
    ("XOAUTH2", b"auth=Bearer abc\x01\x01"),
    ("XOAUTH2", b"user=a\x01auth=Bearer\x01\x01"),
    ("XOAUTH2", b"user=a\x01auth=Bearer abc"),
    ("XOAUTH2", b"\x00\x01\x02"),
]


def test_malformed_messages_are_bad_with_text(oauth: OAuthServer) -> None:
    client = oauth.client()
    for mechanism, message in MALFORMED:
        outcome = _authenticate(client, mechanism, message)
        response = outcome.response
        assert response.status == "BAD", (message, response.line)
        assert mechanism.encode() in response.line, response.line
    assert client.command("AUTHENTICATE OAUTHBEARER not-base64!").status == "BAD"
    assert client.command("NOOP").ok
    assert "Traceback" not in oauth.imap.log_text()


def _options(*args: str) -> Callable[[], Options]:
    def parse() -> Options:
        options = Options()
        options.parseOptions(list(args))
        return options

    return parse


def test_configuration_refuses_what_cannot_work(tmp_path: Path) -> None:
    good = _options("--oauth-jwks", "https://p.example/jwks", "--oauth-issuer", ISSUER)
    with pytest.raises(usage.UsageError, match="issuer and audience"):
        good()
    with pytest.raises(usage.UsageError, match="https"):
        _options("--oauth-jwks", "http://p.example/jwks")()
    with pytest.raises(usage.UsageError, match="client-secret"):
        _options("--oauth-introspect", "https://p.example/introspect")()
    with pytest.raises(usage.UsageError):  # secrets are not taken from the command line
        _options("--oauth-client-secret", "s")()
    config = tmp_path / "c.toml"
    config.write_text('[oauth]\ntimeout = "soon"\n')
    with pytest.raises(usage.UsageError, match=r"oauth\.timeout"):
        _options("--config", str(config))()
    config.write_text('[oauth]\nclient-secret = "s"\nclient-id = "i"\n')
    parsed = _options(
        "--config",
        str(config),
        "--oauth-introspect",
        "https://p.example/i",
        "--oauth-user-claim",
        "email",
    )().config.oauth
    assert (parsed.client_secret, parsed.user_claim) == ("s", "email")
    whole = _options("--config", str(config), "--oauth-introspect", "https://p.example/i")()
    # A worker of --workers N gets the same settings from its master.
    assert decode_config(encode_config(whole.config)).oauth == whole.config.oauth
