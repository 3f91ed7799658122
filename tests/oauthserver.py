"""A stand-in OAuth provider for the OAUTHBEARER/XOAUTH2 tests, served by twisted.web over
HTTPS on a free loopback port: ``python tests/oauthserver.py STATE_DIR``.

STATE_DIR holds ``cert.pem``/``key.pem`` (its certificate, which the IMAP server is told to
trust with ``[oauth] ca-file``), ``client.json`` (the client id and secret introspection
requires, HTTP Basic), ``tokens.json`` (token → the introspection answer, or the string
``"hang"`` for a request never answered, ``"503"`` for an HTTP 503) and ``jwks.json``
(served as is).  Both JSON files are read at each request, so a test changes them between
sign-ins (a rotated key).  The port is written to ``STATE_DIR/port`` once listening.

- ``POST /introspect``: RFC 7662; an unknown token is ``{"active": false}``.
- ``GET /jwks``: the key set.
- ``GET /stats``: how many introspections and key-set fetches were served.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from urllib.parse import unquote_plus

from twisted.internet import reactor
from twisted.internet.ssl import PrivateCertificate
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site


class Provider(Resource):
    def __init__(self, state: Path) -> None:
        super().__init__()
        self.state = state
        self.counts = {"introspect": 0, "jwks": 0}

    def getChild(self, path: bytes, request: Request) -> Resource:
        return self

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        if request.path == b"/jwks":
            self.counts["jwks"] += 1
            return (self.state / "jwks.json").read_bytes()
        if request.path == b"/stats":
            return json.dumps(self.counts).encode()
        request.setResponseCode(404)
        return b"{}"

    def render_POST(self, request: Request) -> bytes | int:
        if request.path != b"/introspect":
            request.setResponseCode(404)
            return b"{}"
        client = json.loads((self.state / "client.json").read_text())
        if _basic(request.getHeader("authorization")) != (client["id"], client["secret"]):
            request.setResponseCode(401)
            return b'{"error": "invalid_client"}'
        self.counts["introspect"] += 1
        token = (request.args or {}).get(b"token", [b""])[0].decode()
        answer = json.loads((self.state / "tokens.json").read_text()).get(token)
        if answer == "hang":
            return NOT_DONE_YET
        if answer == "503":
            request.setResponseCode(503)
            return b'{"error": "temporarily_unavailable"}'
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(answer if answer is not None else {"active": False}).encode()


def _basic(header: str | None) -> tuple[str, str] | None:
    """RFC 6749 2.3.1: HTTP Basic over the form-urlencoded client id and secret."""
    if header is None or not header.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return unquote_plus(user), unquote_plus(password)


def main(state: Path) -> None:
    pem = (state / "cert.pem").read_bytes() + (state / "key.pem").read_bytes()
    options = PrivateCertificate.loadPEM(pem).options()
    port = reactor.listenSSL(0, Site(Provider(state)), options, interface="127.0.0.1")  # type: ignore[attr-defined]
    (state / "port.tmp").write_text(str(port.getHost().port))
    (state / "port.tmp").rename(state / "port")
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(Path(sys.argv[1]))
