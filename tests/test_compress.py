"""COMPRESS=DEFLATE (RFC 4978) over real sockets: the client side is ``bench.harness``'s
``DeflateSocket`` (zlib, raw DEFLATE both ways).

Every case runs against one backend: compression is the transport, the engine's alone;
the commands run through it (APPEND, FETCH, IDLE) are tested on every backend elsewhere.
"""

from __future__ import annotations

import base64
import random
import re
import socket
import time
import zlib
from pathlib import Path

import pytest
from imapserver import Connector

from bench import messages
from bench.harness import DeflateSocket, RawClient, ServerProcess

pytestmark = pytest.mark.one_backend


def capabilities(client: RawClient) -> list[str]:
    response = client.command("CAPABILITY")
    (line,) = response.data("CAPABILITY")
    return line.decode().split()


def deflated(client: RawClient) -> DeflateSocket:
    assert isinstance(client.sock, DeflateSocket)
    return client.sock


def noise(size: int, seed: int) -> bytes:
    """Base64 text of random bytes in 76-column lines (compresses to about 3/4)."""
    data = random.Random(seed).randbytes(size * 3 // 4)
    return b"\r\n".join(re.findall(rb".{1,76}", base64.b64encode(data))) + b"\r\n"


def test_session_through_compression(connect: Connector) -> None:
    client = connect.raw(login=False)
    assert "COMPRESS=DEFLATE" not in capabilities(client)
    assert client.command("COMPRESS DEFLATE").status == "BAD"  # not authenticated
    client.login(connect.user.name, connect.user.password)
    assert "COMPRESS=DEFLATE" in capabilities(client)
    response = client.compress()
    assert response.ok, response.line
    body = "\n".join(f"Line {n} of a long and repetitive letter." for n in range(20000))
    message = messages.plain(subject="big", body=body)
    appended = client.command_with_literal("APPEND INBOX ", message)  # a synchronizing one
    assert appended.ok, appended.line
    assert client.command("SELECT INBOX").ok
    before = deflated(client).wire_received
    response = client.command("FETCH 1 (RFC822.SIZE BODY.PEEK[])")
    assert response.ok, response.line
    assert str(len(message)).encode() in response.untagged[0]
    assert response.untagged[0].endswith(message + b")\r\n")
    assert deflated(client).wire_received - before < len(message) // 10
    assert client.command("LOGOUT").ok


@pytest.mark.parametrize("transport", ["plain", "starttls", "imaps"])
def test_pipelined_after_compress(connect: Connector, transport: str) -> None:
    """Commands sent compressed in the same packet as COMPRESS, over TLS or not."""
    if transport == "imaps":
        client = connect.raw_tls()
    else:
        client = connect.raw(login=False)
        if transport == "starttls":
            assert client.starttls(connect.server.ssl_context()).ok
        client.login(connect.user.name, connect.user.password)
    response = client.compress(b"p1 SELECT INBOX\r\np2 NOOP\r\np3 COMPRESS DEFLATE\r\n")
    assert response.ok, response.line
    assert client.read_until_tagged("p1").ok
    assert client.read_until_tagged("p2").ok
    again = client.read_until_tagged("p3")
    assert again.status == "NO" and again.code == "COMPRESSIONACTIVE", again.line
    assert client.command("LOGOUT").ok
    assert client.wait_closed() == []


def test_refusals(connect: Connector) -> None:
    client = connect.raw()
    for command in ("COMPRESS", "COMPRESS GZIP", "COMPRESS DEFLATE DEFLATE", 'COMPRESS "x'):
        response = client.command(command)
        assert response.status == "BAD", (command, response.line)
    assert client.compress().ok
    for command in ("COMPRESS DEFLATE", "COMPRESS deflate"):
        response = client.command(command)
        assert response.status == "NO" and response.code == "COMPRESSIONACTIVE", response.line
    assert client.command("COMPRESS GZIP").status == "BAD"
    assert client.command("NOOP").ok


def test_idle_sees_another_sessions_append(connect: Connector) -> None:
    client = connect.selected()
    assert client.compress().ok
    tag = client.next_tag()
    client.send(f"{tag} IDLE\r\n")
    assert client.read_line().startswith(b"+ ")
    connect.append([messages.plain(subject="while idling")])
    assert client.read_line() == b"* 1 EXISTS\r\n"
    client.send(b"DONE\r\n")
    assert client.read_until_tagged(tag).ok


def test_bad_stream_is_bye(connect: Connector) -> None:
    client = connect.raw()
    assert client.compress().ok
    deflated(client).send_deflated(b"\xff" * 64)  # an invalid block type
    lines = client.wait_closed()
    assert any(line.startswith(b"* BYE") for line in lines), lines


def _peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    assert match is not None
    return int(match.group(1))


def test_decompression_bomb_meets_the_line_bound(connect: Connector, server: ServerProcess) -> None:
    """64 MB of zeros without a line feed, in about 64 KB on the wire: refused as a line
    too long, read a chunk at a time (the server's peak memory stays put) and a share per
    reactor turn (other sessions are answered meanwhile)."""
    client = connect.raw()
    assert client.compress().ok
    stream = deflated(client)
    zeros = bytes(1 << 20)
    start = stream.deflate.compress(zeros) + stream.deflate.flush(zlib.Z_SYNC_FLUSH)
    # Once the window holds only zeros, a further megabyte deflates to the same bytes each
    # time: repeating them continues the stream cheaply.
    again = stream.deflate.compress(zeros) + stream.deflate.flush(zlib.Z_SYNC_FLUSH)
    Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # reset the peak
    base = _peak_rss_kib(server.pid)
    probe = connect.raw()
    stream.send_deflated(start + again * 62)
    worst = 0.0
    for _ in range(20):  # another session's NOOPs while the bomb is read
        sent = time.perf_counter()
        assert probe.command("NOOP").ok
        worst = max(worst, time.perf_counter() - sent)
    assert worst < 0.25, f"the reactor was held {worst * 1000:.0f} ms"  # ~0.8 s at once
    client.send(b"\r\n")  # the end of that line
    response = client.command("NOOP")
    assert response.ok, response.line
    assert response.untagged == [b"* BAD Command line too long\r\n"]
    assert _peak_rss_kib(server.pid) - base < 24 * 1024
    assert client.command("NOOP").ok


def test_a_client_that_does_not_read_holds_the_next_command(connect: Connector) -> None:
    """Producer pausing through the compressor: while a compressed client reads nothing of
    a big FETCH, the server starts no further command; once it reads, all arrive."""
    body = noise(1 << 20, 7)
    connect.append([messages.plain(subject="noise", body=body.decode())] * 6)
    client = connect.selected()
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)  # type: ignore[union-attr]
    assert client.compress().ok
    client.send(b"f1 FETCH 1:6 BODY.PEEK[TEXT]\r\nf2 STORE 1 +FLAGS (\\Flagged)\r\n")
    time.sleep(0.3)
    other = connect.selected()
    assert b"\\Flagged" not in other.command("FETCH 1 FLAGS").untagged[0]
    fetched = client.read_until_tagged("f1")
    assert len(fetched.untagged) == 6
    assert all(line.endswith(body + b")\r\n") for line in fetched.untagged)
    assert client.read_until_tagged("f2").ok
