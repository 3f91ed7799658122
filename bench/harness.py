"""Black-box harness shared by the protocol tests and the benchmark.

Starts ``twistd imapserv`` as a subprocess on free loopback ports, adds users through the
admin CLI, and speaks raw IMAP over a socket (so timing measures the server, not a client
library's parser).  Nothing here imports mailserv: the server is only seen from outside.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

_TWISTD = (
    "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; sys.exit(run())"
)


@dataclass(frozen=True)
class BackendSpec:
    """How to run the server with one backend.

    ``options`` become ``--backend-option K=V``; ``prepare`` (given the data dir) may set up
    an external store and return more ``--backend-option`` values; ``cleanup`` undoes it.
    """

    name: str
    options: Mapping[str, str] = field(default_factory=dict)
    prepare: Callable[[Path], Mapping[str, str]] | None = None
    cleanup: Callable[[Path], None] | None = None


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServerError(RuntimeError):
    """The server did not start (the message carries its log)."""


class ServerProcess:
    """One ``twistd -n imapserv`` subprocess with its own data dir and ports."""

    def __init__(
        self,
        data_dir: Path,
        backend: BackendSpec,
        limits: Mapping[str, object] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.backend = backend
        self.limits = dict(limits or {})
        self.extra_args = list(extra_args)
        self.imap_port = 0
        self.imaps_port = 0
        self.log_path = data_dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._options: dict[str, str] = dict(backend.options)

    @property
    def host(self) -> str:
        return HOST

    @property
    def cert_path(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command_line(self) -> list[str]:
        args = [sys.executable, "-c", _TWISTD, "-n", "--pidfile=", "imapserv"]
        args += ["--data-dir", str(self.data_dir)]
        args += ["--imap", f"tcp:{self.imap_port}:interface={HOST}"]
        args += ["--imaps", f"ssl:{self.imaps_port}:interface={HOST}"]
        args += ["--backend", self.backend.name]
        for key, value in self._options.items():
            args += ["--backend-option", f"{key}={value}"]
        for name, limit in self.limits.items():
            args += ["--limit", f"{name}={limit}"]
        return args + self.extra_args

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.backend.prepare is not None:
            self._options.update(self.backend.prepare(self.data_dir))
        for attempt in range(3):
            self.imap_port, self.imaps_port = free_port(), free_port()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    self.command_line(),
                    cwd=REPO,
                    env=_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_ready(timeout):
                return
            rc = self.proc.poll()
            if rc is not None and "in use" in self.log_text() and attempt < 2:
                self._end_process()  # another port; the store prepared above stays for it
                continue
            self.stop()
            raise ServerError(f"server did not start (exit {rc}):\n{self.log_text()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        pending = [self.imap_port, self.imaps_port]
        while pending and time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((HOST, pending[0]), timeout=1):
                    pending.pop(0)
            except OSError:
                time.sleep(0.05)
        if pending:
            return False
        # A port answering is not yet ours: the kernel queues connections on the first
        # listener before twistd has bound the second, and a port taken by another process
        # answers too (twistd then exits, "Address already in use").  The log says when the
        # last listener is ours; a command line without that line is waited for until the
        # deadline, as long as the process lives.
        ours = f"listening on {HOST}:{self.imaps_port}"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if ours in self.log_text():
                return True
            time.sleep(0.02)
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; cleans up the backend's store."""
        proc = self._end_process()
        if proc is not None and self.backend.cleanup is not None:
            self.backend.cleanup(self.data_dir)

    def _end_process(self) -> subprocess.Popen[bytes] | None:
        """The server process ended (SIGTERM, SIGKILL after a grace period); the store kept."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def add_user(self, name: str, password: str) -> None:
        """``python -m mailserv user add`` (the running server picks the user up)."""
        result = subprocess.run(
            [sys.executable, "-m", "mailserv", "user", "add", name]
            + ["--data-dir", str(self.data_dir), "--password-stdin"],
            input=(password + "\n").encode(),
            cwd=REPO,
            env=_env(),
            capture_output=True,
            timeout=60,
        )
        if result.returncode != 0:
            out = (result.stdout + result.stderr).decode("utf-8", "replace")
            raise ServerError(f"user add {name} failed ({result.returncode}): {out}")

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only this server's certificate."""
        ctx = ssl.create_default_context(cafile=str(self.cert_path))
        ctx.check_hostname = True
        return ctx

    def rss_kib(self) -> int:
        """The server's resident set size (VmRSS) in KiB."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        assert match is not None
        return int(match.group(1))


# -- raw protocol ------------------------------------------------------------------------

_LITERAL_AT_END = re.compile(rb"\{(\d+)\}\r\n$")
_TAGGED = re.compile(rb"^(\S+) (OK|NO|BAD)\b ?(.*)$", re.S | re.I)
_CODE = re.compile(rb"^\[([^\]]*)\]")


@dataclass
class Response:
    """The untagged responses of one command (literals inlined) and its tagged line."""

    tag: bytes
    status: str
    text: bytes
    line: bytes
    untagged: list[bytes]

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    @property
    def code(self) -> str | None:
        """The tagged response code without brackets, e.g. ``APPENDUID 5 1``."""
        match = _CODE.match(self.text)
        return match.group(1).decode("utf-8", "replace") if match else None

    def data(self, kind: str) -> list[bytes]:
        """Untagged responses of one kind without the ``* `` (and the number of ``* n KIND``),
        e.g. ``data("FETCH")`` gives the parenthesised lists, ``data("EXISTS")`` ``[b""]``."""
        out = []
        want = kind.upper().encode()
        for line in self.untagged:
            parts = line.rstrip(b"\r\n").split(b" ", 3)
            if len(parts) >= 2 and parts[1].upper() == want:
                out.append(b" ".join(parts[2:]))
            elif len(parts) >= 3 and parts[1].isdigit() and parts[2].upper() == want:
                out.append(parts[1] + (b" " + parts[3] if len(parts) > 3 else b""))
        return out

    def numbers(self, kind: str) -> list[int]:
        """The numbers of ``* n KIND`` responses (EXISTS, RECENT, EXPUNGE, FETCH)."""
        return [int(d.split(b" ", 1)[0]) for d in self.data(kind)]

    def codes(self) -> list[str]:
        """Response codes of untagged OK/NO/BAD/BYE lines and of the tagged line."""
        found = []
        for line in self.untagged:
            match = re.match(rb"^\* (?:OK|NO|BAD|BYE) \[([^\]]*)\]", line, re.I)
            if match:
                found.append(match.group(1).decode("utf-8", "replace"))
        if self.code is not None:
            found.append(self.code)
        return found

    def all_text(self) -> bytes:
        return b"".join(self.untagged) + self.line


class DeflateSocket:
    """A client socket after ``COMPRESS DEFLATE`` (RFC 4978): what is sent is deflated and
    flushed per send, what is received inflated; counts the bytes on the wire."""

    def __init__(self, sock: socket.socket) -> None:
        self.raw = sock
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._inflate = zlib.decompressobj(-15)
        self.wire_sent = 0
        self.wire_received = 0

    def sendall(self, data: bytes) -> None:
        self.send_deflated(self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH))

    def send_deflated(self, data: bytes) -> None:
        """Send bytes already deflated (as a continuation of this stream)."""
        self.wire_sent += len(data)
        self.raw.sendall(data)

    def recv(self, size: int) -> bytes:
        while True:
            data = self.raw.recv(size)
            if not data:
                return b""
            self.wire_received += len(data)
            out = self._inflate.decompress(data)
            if out:
                return out

    def settimeout(self, timeout: float | None) -> None:
        self.raw.settimeout(timeout)

    def close(self) -> None:
        self.raw.close()


class RawClient:
    """A socket that speaks IMAP line by line; every read is bounded by ``timeout``."""

    def __init__(self, sock: socket.socket, timeout: float = 10.0) -> None:
        self.sock: socket.socket | DeflateSocket = sock
        self.sock.settimeout(timeout)
        self.buf = bytearray()
        self._counter = 0
        self.greeting = b""

    @classmethod
    def connect(
        cls,
        port: int,
        host: str = HOST,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float = 10.0,
        read_greeting: bool = True,
    ) -> RawClient:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname or host)
        client = cls(sock, timeout)
        if read_greeting:
            client.greeting = client.read_response()
        return client

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def next_tag(self) -> str:
        self._counter += 1
        return f"t{self._counter}"

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _fill(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise EOFError("connection closed by server")
        self.buf += chunk

    def read_line(self) -> bytes:
        """One line up to and including CRLF (no literal handling)."""
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[: i + 2])
                del self.buf[: i + 2]
                return line
            self._fill()

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_response(self) -> bytes:
        """One whole response line, literals inlined (``{n}\\r\\n`` kept before the data)."""
        out = bytearray()
        while True:
            line = self.read_line()
            out += line
            match = _LITERAL_AT_END.search(line)
            if match is None:
                return bytes(out)
            out += self.read_exact(int(match.group(1)))

    def read_until_tagged(self, tag: str | bytes) -> Response:
        want = tag.encode() if isinstance(tag, str) else tag
        untagged: list[bytes] = []
        while True:
            line = self.read_response()
            match = _TAGGED.match(line)
            if match and match.group(1) == want:
                status = match.group(2).decode().upper()
                text = match.group(3).rstrip(b"\r\n")
                return Response(want, status, text, line, untagged)
            untagged.append(line)

    def command(self, text: str | bytes, tag: str | None = None) -> Response:
        """Send ``tag text`` and read to its tagged response (no synchronizing literals)."""
        tag = tag or self.next_tag()
        body = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b" " + body + b"\r\n")
        return self.read_until_tagged(tag)

    def command_with_literal(
        self, before: str | bytes, literal: bytes, after: bytes = b""
    ) -> Response:
        """A command with one synchronizing literal: waits for ``+`` before sending it.

        If the server answers with a tagged response instead of ``+``, that is returned.
        """
        tag = self.next_tag()
        head = before.encode() if isinstance(before, str) else before
        self.send(tag.encode() + b" " + head + b"{%d}\r\n" % len(literal))
        untagged: list[bytes] = []
        while True:
            line = self.read_response()
            if line.startswith(b"+"):
                break
            match = _TAGGED.match(line)
            if match and match.group(1) == tag.encode():
                status = match.group(2).decode().upper()
                return Response(tag.encode(), status, match.group(3).rstrip(), line, untagged)
            untagged.append(line)
        self.send(literal + after + b"\r\n")
        response = self.read_until_tagged(tag)
        response.untagged[:0] = untagged
        return response

    def login(self, user: str, password: str) -> Response:
        response = self.command(f"LOGIN {quote(user)} {quote(password)}")
        if not response.ok:
            raise AssertionError(f"LOGIN failed: {response.line!r}")
        return response

    def append_many(
        self, mailbox: str, messages: Sequence[bytes], flags: str = ""
    ) -> list[Response]:
        """APPEND every message in one pipelined burst of LITERAL+ literals."""
        tags = []
        chunks = []
        prefix = f"APPEND {quote(mailbox)} " + (f"({flags}) " if flags else "")
        for message in messages:
            tag = self.next_tag()
            tags.append(tag)
            chunks.append(
                b"%s %s{%d+}\r\n%s\r\n" % (tag.encode(), prefix.encode(), len(message), message)
            )
        self.send(b"".join(chunks))
        return [self.read_until_tagged(tag) for tag in tags]

    def starttls(self, ctx: ssl.SSLContext, server_hostname: str = "localhost") -> Response:
        response = self.command("STARTTLS")
        if response.ok:
            assert not self.buf, "data after STARTTLS OK before the handshake"
            assert isinstance(self.sock, socket.socket)
            self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        return response

    def compress(self, pipelined: bytes = b"") -> Response:
        """``COMPRESS DEFLATE``; ``pipelined`` (commands) follows it compressed in the same
        send, before the tagged OK is read."""
        tag = self.next_tag()
        line = tag.encode() + b" COMPRESS DEFLATE\r\n"
        if not pipelined:
            self.send(line)
            response = self.read_until_tagged(tag)
            if response.ok:
                assert not self.buf, "data after COMPRESS OK"
                assert isinstance(self.sock, socket.socket)
                self.sock = DeflateSocket(self.sock)
            return response
        assert isinstance(self.sock, socket.socket)
        deflating = DeflateSocket(self.sock)
        deflated = deflating.deflate.compress(pipelined)
        deflated += deflating.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.send(line + deflated)
        # The tagged OK is plain text, the rest is deflated: read the OK byte by byte.
        plain = b""
        while not plain.endswith(b"\r\n"):
            plain += self.sock.recv(1)
        self.sock = deflating
        assert plain.startswith(tag.encode() + b" "), plain
        status = plain.split(b" ", 2)[1].decode()
        return Response(tag.encode(), status, plain.split(b" ", 2)[2].rstrip(), plain, [])

    def wait_closed(self, timeout: float = 5.0) -> list[bytes]:
        """Read until the server closes; the lines it sent meanwhile.  TimeoutError if not."""
        self.sock.settimeout(timeout)
        lines: list[bytes] = []
        try:
            while True:
                lines.append(self.read_line())
        except EOFError:
            if self.buf:
                lines.append(bytes(self.buf))
            return lines
        except (ConnectionResetError, ssl.SSLError):
            return lines

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def quote(value: str) -> str:
    """An IMAP quoted string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- response values ---------------------------------------------------------------------


class ParseError(ValueError):
    pass


Value = None | int | str | bytes | list["Value"]
"""A parsed value: ``list`` for parenthesised lists, ``bytes`` for strings, ``str`` for atoms
(``BODY[HEADER.FIELDS (FROM)]<0>`` stays one atom), ``int`` for numbers, ``None`` for NIL."""

_ATOM_END = b" ()\r\n"


def parse_values(data: bytes, pos: int = 0) -> tuple[list[Value], int]:
    """Parse a run of space-separated values up to ``)`` or end of input."""
    out: list[Value] = []
    n = len(data)
    while pos < n:
        c = data[pos : pos + 1]
        if c == b" ":
            pos += 1
        elif c in (b")", b"\r", b"\n"):
            return out, pos
        elif c == b"(":
            inner, pos = parse_values(data, pos + 1)
            if data[pos : pos + 1] != b")":
                raise ParseError(f"unbalanced parenthesis at {pos}")
            out.append(inner)
            pos += 1
        elif c == b'"':
            value = bytearray()
            pos += 1
            while True:
                if pos >= n:
                    raise ParseError("unterminated quoted string")
                ch = data[pos : pos + 1]
                if ch == b"\\":
                    value += data[pos + 1 : pos + 2]
                    pos += 2
                elif ch == b'"':
                    pos += 1
                    break
                else:
                    value += ch
                    pos += 1
            out.append(bytes(value))
        elif c in (b"{", b"~") and re.match(rb"~?\{\d+\}\r\n", data[pos:]):
            match = re.match(rb"~?\{(\d+)\}\r\n", data[pos:])
            assert match is not None
            length = int(match.group(1))
            start = pos + match.end()
            out.append(data[start : start + length])
            pos = start + length
        else:
            start = pos
            depth = 0
            while pos < n:
                ch = data[pos : pos + 1]
                if ch == b"[":
                    depth += 1
                elif ch == b"]":
                    depth -= 1
                elif depth == 0 and ch in _ATOM_END:
                    break
                pos += 1
            atom = data[start:pos].decode("utf-8", "replace")
            if atom.upper() == "NIL":
                out.append(None)
            elif atom.isdigit():
                out.append(int(atom))
            else:
                out.append(atom)
    return out, pos


def parse_fetch(response: bytes) -> tuple[int, dict[str, Value]]:
    """``* n FETCH (...)`` → (n, {ITEM: value}); item names upper-cased."""
    match = re.match(rb"\* (\d+) FETCH ", response, re.I)
    if match is None:
        raise ParseError(f"not a FETCH response: {response[:80]!r}")
    values, _ = parse_values(response, match.end())
    if len(values) != 1 or not isinstance(values[0], list) or len(values[0]) % 2:
        raise ParseError(f"bad FETCH response: {response[:200]!r}")
    items = values[0]
    result: dict[str, Value] = {}
    for key, value in zip(items[::2], items[1::2], strict=True):
        if not isinstance(key, str):
            raise ParseError(f"bad FETCH item name {key!r}")
        result[key.upper()] = value
    return int(match.group(1)), result


def fetches(response: Response) -> dict[int, dict[str, Value]]:
    """Every FETCH response of a command by sequence number (items of repeats merged)."""
    out: dict[int, dict[str, Value]] = {}
    for line in response.untagged:
        if re.match(rb"\* \d+ FETCH ", line, re.I):
            seq, items = parse_fetch(line)
            out.setdefault(seq, {}).update(items)
    return out


def flag_set(value: Value) -> set[str]:
    """A FLAGS value as upper-case names (``\\SEEN``, ``$LABEL``)."""
    if not isinstance(value, list):
        raise AssertionError(f"not a flag list: {value!r}")
    return {str(f).upper() for f in value}


def search_numbers(response: Response) -> list[int]:
    """The numbers of the (single) ``* SEARCH`` response."""
    lines = response.data("SEARCH")
    if len(lines) != 1:
        raise AssertionError(f"expected one SEARCH response, got {response.untagged!r}")
    return [int(x) for x in lines[0].split()]
