"""A webhook receiver for the webhook tests, served by twisted.web over plain HTTP on a
loopback port: ``python tests/webhookreceiver.py STATE_DIR [PORT]`` (PORT 0 or absent: a free
one, written to ``STATE_DIR/port`` once listening).  With ``cert.pem`` and ``key.pem`` in
STATE_DIR it serves HTTPS too, on a free port written to ``STATE_DIR/tls-port``.

- ``POST /hook/NAME``: a webhook delivery; recorded (path, headers, body, the answer given)
  and answered as the path's script says: its next entry if any, else its default.  An
  entry is ``"ok"`` (204), a status code (``"500"``) or ``"hang"`` (never answered).
- ``PUT /control/NAME``: set the script of ``/hook/NAME`` to the JSON body
  ``{"script": [...], "default": "ok"}``; the requests hanging there are answered 503.
- ``GET /requests/NAME``: the requests recorded at ``/hook/NAME`` as a JSON list.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.ssl import PrivateCertificate
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site


class Receiver(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.scripts: dict[str, list[str]] = {}
        self.defaults: dict[str, str] = {}
        self.recorded: dict[str, list[dict[str, object]]] = {}
        self.hanging: dict[str, list[Request]] = {}

    def render_POST(self, request: Request) -> bytes | int:
        kind, name = _route(request)
        if kind != "hook":
            request.setResponseCode(404)
            return b""
        script = self.scripts.get(name, [])
        answer = script.pop(0) if script else self.defaults.get(name, "ok")
        assert request.content is not None
        self.recorded.setdefault(name, []).append(
            {
                "headers": {
                    key.decode().lower(): value[0].decode()
                    for key, value in request.requestHeaders.getAllRawHeaders()
                },
                "body": request.content.read().decode("utf-8"),
                "answer": answer,
            }
        )
        if answer == "hang":
            self.hanging.setdefault(name, []).append(request)
            request.notifyFinish().addErrback(lambda _: None)
            return NOT_DONE_YET
        request.setResponseCode(204 if answer == "ok" else int(answer))
        return b""

    def render_PUT(self, request: Request) -> bytes:
        kind, name = _route(request)
        assert kind == "control" and request.content is not None
        wanted = json.loads(request.content.read())
        self.scripts[name] = list(wanted.get("script", []))
        self.defaults[name] = wanted.get("default", "ok")
        for hung in self.hanging.pop(name, []):
            if not hung.finished and not hung._disconnected:
                hung.setResponseCode(503)
                hung.finish()
        return b"{}"

    def render_GET(self, request: Request) -> bytes:
        kind, name = _route(request)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(self.recorded.get(name, []) if kind == "requests" else None).encode()


def _route(request: Request) -> tuple[str, str]:
    parts = request.path.decode().strip("/").split("/")
    return (parts[0], parts[1]) if len(parts) == 2 else ("", "")


def main() -> None:
    state = Path(sys.argv[1])
    site = Site(Receiver())
    port = reactor.listenTCP(  # type: ignore[attr-defined]
        int(sys.argv[2]) if len(sys.argv) > 2 else 0, site, interface="127.0.0.1"
    )
    if (state / "cert.pem").exists():  # HTTPS too, with that certificate chain and key
        pem = (state / "cert.pem").read_bytes() + (state / "key.pem").read_bytes()
        options = PrivateCertificate.loadPEM(pem).options()
        tls = reactor.listenSSL(0, site, options, interface="127.0.0.1")  # type: ignore[attr-defined]
        (state / "tls-port").write_text(str(tls.getHost().port))
    (state / "port.tmp").write_text(str(port.getHost().port))
    (state / "port.tmp").rename(state / "port")
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
