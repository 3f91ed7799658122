"""A SASL mechanism is one module: dropped into ``mailserv/plugins/`` on the path, it is
offered in CAPABILITY and AUTHENTICATE runs its exchange, over a real server."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from dropins import drop_in

from bench.harness import BackendSpec, RawClient, ServerProcess

# A toy mechanism: the server says "who?", the client answers "user password".
MECHANISM = """
from twisted.cred.credentials import UsernamePassword
from zope.interface import implementer

from mailserv.auth.sasl import Challenge, Credentials, ISASLExchange, ISASLMechanism, SASLError


@implementer(ISASLExchange)
class _Exchange:
    async def step(self, response):
        if response is None:
            return Challenge(b"who?")
        user, sep, password = response.partition(b" ")
        if not sep:
            raise SASLError("expected 'user password'")
        return Credentials(UsernamePassword(user, password))


@implementer(ISASLMechanism)
class Toy:
    name = "X-TOY"

    def available(self, context):
        return context.plaintext_allowed

    def start(self, context):
        return _Exchange()


toy = Toy()
"""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def toy_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ServerProcess:
    drop_in(tmp_path / "path", "toy_mechanism", MECHANISM, monkeypatch)
    server = ServerProcess(tmp_path / "data", BackendSpec("memory"))
    server.start()
    server.add_user("tim", "tanstaaf")
    yield server  # type: ignore[misc]
    server.stop()


def test_a_dropped_in_mechanism_is_offered_and_runs(toy_server: ServerProcess) -> None:
    client = RawClient.connect(toy_server.imap_port)
    try:
        caps = client.command("CAPABILITY").data("CAPABILITY")[0].split()
        assert b"AUTH=X-TOY" in caps and b"AUTH=PLAIN" in caps, caps

        tag = client.next_tag()
        client.send(f"{tag} AUTHENTICATE X-TOY\r\n")
        assert client.read_line() == b"+ " + base64.b64encode(b"who?") + b"\r\n"
        client.send(b64(b"tim wrong") + "\r\n")
        assert client.read_until_tagged(tag).status == "NO"

        assert client.command(f"AUTHENTICATE X-TOY {b64(b'nospace')}").status == "BAD"

        response = client.command(f"AUTHENTICATE X-TOY {b64(b'tim tanstaaf')}")
        assert response.ok, response.line
        assert client.command("SELECT INBOX").ok
    finally:
        client.close()
