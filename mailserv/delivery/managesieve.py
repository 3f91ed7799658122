"""ManageSieve (RFC 5804): users upload, list, check and activate their Sieve scripts.

``--managesieve ENDPOINT`` serves it next to IMAP, with the IMAP server's sign-in: the same
portal and user store, the same SASL mechanisms (those a connection may use: no password
in the clear without TLS unless the peer is loopback or ``allow-plaintext-auth`` is set),
the same failed-login throttle (shared by every worker) and TLS material (STARTTLS here).

Commands: CAPABILITY, STARTTLS, AUTHENTICATE, LOGOUT, NOOP, HAVESPACE, PUTSCRIPT,
LISTSCRIPTS, SETACTIVE, GETSCRIPT, DELETESCRIPT, RENAMESCRIPT, CHECKSCRIPT.  Arguments are
quoted strings, literals (``{n+}`` or ``{n}``: the server never asks to go on) and
numbers.  Bounds: a command line of ``MAX_LINE`` octets, a literal of ``MAX_LITERAL``
(larger ones close the connection; scripts themselves are bounded lower, with
QUOTA/MAXSIZE), ``MAX_ERRORS`` bad commands; the IMAP settings' pre-login and idle
timeouts.  A command that waits (a sign-in, a file write) stops reading until it ends.
Connections count against ``max_connections`` and ``max_connections_per_address`` together
with IMAP's and LMTP's (the same counter: with ``--workers``, the master's); one over a
bound is told ``BYE (TRYLATER)`` with the reason and closed.  A failed sign-in is answered
as IMAP answers one (:func:`mailserv.imap.commands.login.hold_failure`): after the
throttles' delay, once every worker holds the failure; a user locked by failures from any
address is refused.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.cred.credentials import ICredentials
from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, ISSLTransport
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from mailserv import __version__
from mailserv.auth.sasl import (
    MAX_RESPONSE,
    Challenge,
    SASLContext,
    SASLError,
    SASLFailed,
)
from mailserv.auth.scramoffer import scram_key_store
from mailserv.delivery.sieve import check_script
from mailserv.delivery.sievescript import EXTENSIONS, MAX_SCRIPT, SieveError
from mailserv.delivery.sievestore import ScriptStore, StoreError
from mailserv.imap.admission import ConnectionCounter, IConnectionLimits, Refused, admitted
from mailserv.imap.commands.login import hold_failure, locked_out
from mailserv.imap.hangup import hang_up
from mailserv.imap.session import Services
from mailserv.interfaces import IAccount

__all__ = ["ManageSieveFactory", "ManageSieveServer"]

_log = Logger()

MAX_LINE = 8192
"""Octets of a command outside its literals."""
MAX_LITERAL = 1 << 20
"""Octets of one literal; a larger one closes the connection."""
MAX_ERRORS = 20
_MAX_SASL_STEPS = 16
_TOKEN = re.compile(rb'"((?:[^"\\\r\n]|\\["\\])*)"|\{(\d{1,10})\+?\}\r\n|([^\s"{}()]+)')


class Bad(Exception):
    """A command refused: NO with this text and an optional response code."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.code = code


class _Close(Exception):
    """The connection must end: BYE with this text."""


class ManageSieveFactory(ServerFactory):
    """One :class:`ManageSieveServer` per connection, with the IMAP server's ``services``;
    ``limits`` counts the connections (pass the IMAP factory's, so all count together;
    default: a count of this factory's own)."""

    def __init__(
        self,
        services: Services,
        store: ScriptStore,
        sends_mail: bool = False,
        limits: IConnectionLimits | None = None,
    ) -> None:
        self.services = services
        self.store = store
        self.sends_mail = sends_mail
        """A submission host is set: scripts may use redirect."""
        self.connections: IConnectionLimits = limits or ConnectionCounter(services.settings)

    def buildProtocol(self, addr: Any) -> Protocol:
        return admitted(self.connections, addr, self._decided)

    def _decided(self, address: str, refusal: str | None) -> Protocol:
        if refusal is not None:
            _log.info(
                "Refused a ManageSieve connection from {address}: {why}",
                address=address,
                why=refusal,
            )
            services = self.services
            reason = _quote(refusal).decode("ascii")
            close_timeout = services.settings.close_timeout
            return Refused(reason, services.clock, close_timeout, prefix=b"BYE (TRYLATER) ")
        protocol = ManageSieveServer(self, address)
        protocol.factory = self
        return protocol


def _quote(text: str) -> bytes:
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode("utf-8") + b'"'


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n%s" % (len(data), data)


class ManageSieveServer(Protocol, TimeoutMixin):
    def __init__(self, factory: ManageSieveFactory, address: str) -> None:
        self.sieve = factory
        self._address = address
        """Where the connection comes from, as it was counted (released when it closes)."""
        self.services = factory.services
        self.user: str | None = None
        self._buffer = bytearray()
        self._busy = False
        self._closed = False
        self._tls_started = False
        self._errors = 0
        self._failures = 0
        self._sasl: Deferred[bytes] | None = None
        """While AUTHENTICATE waits for the client's next response."""
        self._draining = False
        self._abort: IDelayedCall | None = None
        """After a close: the abort of a peer that does not close its end in time."""

    # -- connection ---------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.setTimeout(self.services.settings.preauth_timeout)
        self._send(self._capabilities() + b'OK "mailserv ManageSieve ready"\r\n')

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        return self.services.clock.callLater(period, func)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed = True
        self.setTimeout(None)
        self.sieve.connections.release(self._address)
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        if self._sasl is not None:
            waiting, self._sasl = self._sasl, None
            waiting.errback(_Close("connection lost"))

    def timeoutConnection(self) -> None:
        self._send(b'BYE "Idle too long"\r\n')
        self._close()

    @property
    def secure(self) -> bool:
        return self._tls_started or ISSLTransport.providedBy(self.transport)

    @property
    def peer(self) -> str:
        return str(getattr(self.transport.getPeer(), "host", "unknown"))  # type: ignore[union-attr]

    def _plaintext_allowed(self) -> bool:
        try:
            loopback = ipaddress.ip_address(self.peer).is_loopback
        except ValueError:
            loopback = self.peer == "unknown"  # a unix socket
        return self.secure or loopback or self.services.settings.allow_plaintext_auth

    def _sasl_context(self) -> SASLContext:
        services = self.services
        return SASLContext(
            secure=self.secure,
            plaintext_allowed=self._plaintext_allowed(),
            key_store=scram_key_store(services.portal, services.settings.offer_scram),
            secret=services.secret,
        )

    def _send(self, data: bytes) -> None:
        if not self._closed and self.transport is not None:
            self.transport.write(data)

    def _close(self) -> None:
        """Close after what was sent, within ``close_timeout`` even if the peer keeps its
        end open (over TLS, a client that never answers close_notify would hold its
        connection, and its place in the count, until it went)."""
        self._closed = True
        if self.transport is not None and self._abort is None:
            timeout = self.services.settings.close_timeout
            self._abort = hang_up(self.transport, self.services.clock, timeout)

    # -- input --------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self._buffer += data
        self._drain()

    def _drain(self) -> None:
        if self._draining:
            return  # the loop below goes on with what a finished command left
        self._draining = True
        try:
            self._drain_loop()
        finally:
            self._draining = False

    def _drain_loop(self) -> None:
        while not self._closed:
            if self._sasl is not None:
                parsed = self._parse()
                if parsed is None:
                    return
                self.transport.pauseProducing()  # type: ignore[union-attr]
                waiting, self._sasl = self._sasl, None
                words = parsed[0]
                if len(words) == 1 and isinstance(words[0], bytes):
                    waiting.callback(words[0])
                else:
                    waiting.errback(Bad("An authentication response is one string"))
                continue
            if self._busy:
                return
            parsed = self._parse()
            if parsed is None:
                return
            words, error = parsed
            if error is not None:
                self._refuse(error)
            else:
                self._run(words)

    def _parse(self) -> tuple[list[bytes | int], str | None] | None:
        """The next complete command from the buffer (its words: strings as bytes, numbers
        as ints, the command name first, upper case) and a syntax error's text, or None
        while it has not all come.  A line or a literal over the bounds closes."""
        buffer = self._buffer
        words: list[bytes | int] = []
        at = outside = 0
        while True:
            while bytes(buffer[at : at + 1]) in (b" ", b"\t"):
                at += 1
            if buffer.startswith(b"\r\n", at):
                del buffer[: at + 2]
                return words, None if words else "Empty command"
            match = _TOKEN.match(buffer, at)
            if match is None or (match.end() == len(buffer) and match.group(3) is not None):
                # An error, or a token that may go on in the next packet.
                end = buffer.find(b"\r\n", at)
                if end < 0:
                    if outside + len(buffer) - at > MAX_LINE:
                        self._bye("Line too long")
                    return None
                if match is None:
                    del buffer[: end + 2]
                    return words, "Syntax error: expected a string, a literal or a number"
            quoted, size, atom = match.groups()
            if size is not None:
                length = int(size)
                if length > MAX_LITERAL:
                    self._bye(f"Literal larger than {MAX_LITERAL} octets")
                    return None
                if len(buffer) < match.end() + length:
                    return None
                words.append(bytes(buffer[match.end() : match.end() + length]))
            else:
                outside += match.end() - at
                if quoted is not None:
                    words.append(re.sub(rb"\\(.)", rb"\1", quoted))
                elif atom.isdigit() and words:
                    words.append(int(atom) if len(atom) < 12 else 1 << 40)
                else:
                    words.append(bytes(atom).upper() if not words else bytes(atom))
                if outside > MAX_LINE:
                    self._bye("Line too long")
                    return None
            at = match.end() + (int(size) if size is not None else 0)

    def _bye(self, text: str) -> None:
        self._send(b"BYE " + _quote(text) + b"\r\n")
        self._close()

    def _refuse(self, text: str, code: str | None = None) -> None:
        self._errors += 1
        self._send(self._no(text, code))
        if self._errors >= MAX_ERRORS:
            self._bye("Too many errors")

    @staticmethod
    def _no(text: str, code: str | None = None) -> bytes:
        prefix = f"({code}) ".encode() if code else b""
        return b"NO " + prefix + _quote(text) + b"\r\n"

    def _run(self, words: list[bytes | int]) -> None:
        name = words[0]
        handler = self._handlers().get(name) if isinstance(name, bytes) else None
        if handler is None:
            self._refuse("Unknown command")
            return
        needs_login, function = handler
        if needs_login and self.user is None:
            self._refuse("Authenticate first")
            return
        if self.user is not None and name == b"AUTHENTICATE":
            self._refuse("Already authenticated")
            return

        async def run() -> None:
            try:
                reply = await function(words[1:])
            except Bad as exc:
                self._refuse(str(exc), exc.code)
                return
            except _Close as exc:
                self._bye(str(exc))
                return
            self._send(reply)

        # Nothing more is read while it runs (pipelined commands wait in the buffer).
        self._busy = True
        self.transport.pauseProducing()  # type: ignore[union-attr]
        done = Deferred.fromCoroutine(run())
        done.addErrback(self._internal_error)
        done.addBoth(self._finished)

    def _finished(self, _: object) -> None:
        self._busy = False
        if self._closed:
            return
        self.transport.resumeProducing()  # type: ignore[union-attr]
        self._drain()

    def _internal_error(self, failure: Failure) -> None:
        _log.failure("ManageSieve command failed; closing the connection", failure)
        self._bye("Internal error")

    def _handlers(self) -> dict[bytes, tuple[bool, Callable[[list[Any]], Awaitable[bytes]]]]:
        return {
            b"CAPABILITY": (False, self._capability),
            b"STARTTLS": (False, self._starttls),
            b"AUTHENTICATE": (False, self._authenticate),
            b"LOGOUT": (False, self._logout),
            b"NOOP": (False, self._noop),
            b"HAVESPACE": (True, self._havespace),
            b"PUTSCRIPT": (True, self._putscript),
            b"LISTSCRIPTS": (True, self._listscripts),
            b"SETACTIVE": (True, self._setactive),
            b"GETSCRIPT": (True, self._getscript),
            b"DELETESCRIPT": (True, self._deletescript),
            b"RENAMESCRIPT": (True, self._renamescript),
            b"CHECKSCRIPT": (True, self._checkscript),
        }

    # -- commands -----------------------------------------------------------------------

    def _capabilities(self) -> bytes:
        lines: list[tuple[bytes, str | None]] = [
            (b"IMPLEMENTATION", f"mailserv {__version__}"),
            (b"SIEVE", " ".join(EXTENSIONS)),
            (b"VERSION", "1.0"),
        ]
        if self.user is None:
            names = self.services.mechanisms.offered(self._sasl_context())
            lines.append((b"SASL", " ".join(names)))
            if self.services.tls is not None and not self.secure:
                lines.append((b"STARTTLS", None))
        else:
            lines.append((b"OWNER", self.user))
        return b"".join(
            b'"%s"%s\r\n' % (name, b" " + _quote(value) if value is not None else b"")
            for name, value in lines
        )

    async def _capability(self, args: list[Any]) -> bytes:
        _no_args(args, "CAPABILITY")
        return self._capabilities() + b'OK "Capability completed"\r\n'

    async def _noop(self, args: list[Any]) -> bytes:
        if len(args) > 1 or (args and not isinstance(args[0], bytes)):
            raise Bad("NOOP takes an optional string")
        tag = b"(TAG " + _quote(args[0].decode("utf-8", "replace")) + b") " if args else b""
        return b"OK " + tag + b'"Done"\r\n'

    async def _logout(self, args: list[Any]) -> bytes:
        _no_args(args, "LOGOUT")
        self._send(b'OK "Logout completed"\r\n')  # RFC 5804 2.3: OK, then the server closes
        self._close()
        return b""

    async def _starttls(self, args: list[Any]) -> bytes:
        _no_args(args, "STARTTLS")
        if self.services.tls is None or self.secure:
            raise Bad("STARTTLS is not available" if not self.secure else "TLS is active")
        if self.user is not None:
            raise Bad("STARTTLS only before authenticating")
        self._send(b'OK "Begin TLS negotiation now"\r\n')
        del self._buffer[:]  # what the client pipelined before TLS is not trusted
        self.transport.startTLS(self.services.tls)  # type: ignore[union-attr]
        self._tls_started = True
        return self._capabilities() + b'OK "TLS active"\r\n'

    async def _authenticate(self, args: list[Any]) -> bytes:
        if not 1 <= len(args) <= 2 or not all(isinstance(a, bytes) for a in args):
            raise Bad("AUTHENTICATE takes a mechanism name and an optional initial response")
        name = args[0].decode("ascii", "replace").upper()
        context = self._sasl_context()
        mechanism = self.services.mechanisms.find(name, context)
        if mechanism is None:
            if self.services.mechanisms.needs_tls(name):
                raise Bad(f"{name} needs TLS; use STARTTLS first", "ENCRYPT-NEEDED")
            raise Bad(f"Unsupported authentication mechanism {name[:40]}")
        self._refuse_if_blocked(name)
        response = _b64(args[1]) if len(args) == 2 else None
        exchange = mechanism.start(context)
        try:
            for _ in range(_MAX_SASL_STEPS):
                step = await exchange.step(response)
                if isinstance(step, Challenge):
                    response = await self._challenge(step.data)
                    continue
                final = b""
                if step.final is not None:
                    final = b'(SASL "' + base64.b64encode(step.final) + b'") '
                return await self._sign_in(name, step.credentials, final)
        except SASLError as exc:
            raise Bad(f"{name}: {exc}") from exc
        except SASLFailed as exc:
            if not exc.counts:  # nothing was decided: no throttle, no held answer
                self._attempt(exc.user, name, "unavailable")
                return self._no(f"{name}: {exc}")
            return await self._failed(name, exc.user, f"{name}: {exc}")
        raise Bad(f"{name}: too many exchange steps")

    async def _challenge(self, data: bytes) -> bytes:
        self._send(_quote(base64.b64encode(data).decode("ascii")) + b"\r\n")
        waiting: Deferred[bytes] = Deferred()
        self._sasl = waiting
        self.transport.resumeProducing()  # type: ignore[union-attr]
        if self._buffer:
            self.services.clock.callLater(0, self._drain)
        response = await waiting
        if response == b"*":
            raise Bad("Authentication cancelled")
        if len(response) > (MAX_RESPONSE + 2) // 3 * 4:
            raise Bad("Authentication response too long")
        return _b64(response)

    def _attempt(self, user: str, mechanism: str, result: str, delay: float = 0.0) -> None:
        self.services.metrics.login(mechanism, result)
        _log.info(
            "ManageSieve login {result} for {user!r} from {address} ({mechanism})",
            event="login", protocol="managesieve", result=result, mechanism=mechanism,
            user=user[:64], address=self.peer, delay=round(delay, 2),
        )  # fmt: skip

    def _refuse_if_blocked(self, mechanism: str, user: str = "") -> None:
        scope = locked_out(self.services, self.peer, user)
        if scope is None:
            return
        self._attempt(user, mechanism, "blocked")
        if scope == "address":
            raise _Close("Too many failed logins from your address; try later")
        raise _Close("Too many failed logins for this user; try later")

    async def _sign_in(self, mechanism: str, credentials: ICredentials, final: bytes) -> bytes:
        raw = getattr(credentials, "username", b"")
        user = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        self._refuse_if_blocked(mechanism, user)
        try:
            _iface, _account, logout = await self.services.portal.login(credentials, None, IAccount)
        except (UnauthorizedLogin, LoginFailed):
            return await self._failed(mechanism, user, "Authentication failed")
        logout()  # the scripts are files of ours: no mailbox is needed
        self.services.throttle.record_success(self.peer)
        self._attempt(user, mechanism, "ok")
        self.user = user
        self.setTimeout(self.services.settings.idle_timeout)
        return b"OK " + final + b'"Logged in"\r\n'

    async def _failed(self, mechanism: str, user: str, text: str) -> bytes:
        self._failures += 1

        def attempt(delay: float) -> None:
            self._attempt(user, mechanism, "failed", delay)

        if await hold_failure(self.services, self.peer, user, self._failures, attempt):
            raise _Close("Too many failed logins")
        return self._no(text)

    # -- scripts ------------------------------------------------------------------------

    async def _store(self, work: Callable[[], Any]) -> Any:
        """Run ``work`` on the script store in a thread (it syncs files); StoreError → NO."""
        try:
            return await deferToThread(work)
        except StoreError as exc:
            raise Bad(str(exc), exc.code) from exc

    @property
    def _owner(self) -> str:
        assert self.user is not None
        return self.user

    async def _havespace(self, args: list[Any]) -> bytes:
        if len(args) != 2 or not isinstance(args[0], bytes) or not isinstance(args[1], int):
            raise Bad("HAVESPACE takes a script name and a size")
        name = _name(args[0])
        if args[1] > MAX_SCRIPT:
            raise Bad(f"Scripts are at most {MAX_SCRIPT} octets", "QUOTA/MAXSIZE")
        await self._store(lambda: self.sieve.store.room_for(self._owner, name))
        return b'OK "Putscript would succeed"\r\n'

    async def _putscript(self, args: list[Any]) -> bytes:
        name, source = _strings(args, 2, "PUTSCRIPT takes a script name and a script")
        script_name = _name(name)
        await _check(source, self.sieve.sends_mail)
        await self._store(lambda: self.sieve.store.put(self._owner, script_name, source))
        return b'OK "Script stored"\r\n'

    async def _checkscript(self, args: list[Any]) -> bytes:
        (source,) = _strings(args, 1, "CHECKSCRIPT takes a script")
        await _check(source, self.sieve.sends_mail)
        return b'OK "Script is valid"\r\n'

    async def _listscripts(self, args: list[Any]) -> bytes:
        _no_args(args, "LISTSCRIPTS")
        scripts = await self._store(lambda: self.sieve.store.list(self._owner))
        lines = b"".join(
            _quote(name) + (b" ACTIVE" if active else b"") + b"\r\n" for name, active in scripts
        )
        return lines + b'OK "Listscripts completed"\r\n'

    async def _setactive(self, args: list[Any]) -> bytes:
        (name,) = _strings(args, 1, "SETACTIVE takes a script name")
        text = name.decode("utf-8", "replace")
        await self._store(lambda: self.sieve.store.activate(self._owner, text or None))
        return b'OK "Active script set"\r\n'

    async def _getscript(self, args: list[Any]) -> bytes:
        (name,) = _strings(args, 1, "GETSCRIPT takes a script name")
        script_name = _name(name)
        source = await self._store(lambda: self.sieve.store.get(self._owner, script_name))
        return _literal(source) + b'\r\nOK "Getscript completed"\r\n'

    async def _deletescript(self, args: list[Any]) -> bytes:
        (name,) = _strings(args, 1, "DELETESCRIPT takes a script name")
        script_name = _name(name)
        await self._store(lambda: self.sieve.store.delete(self._owner, script_name))
        return b'OK "Script deleted"\r\n'

    async def _renamescript(self, args: list[Any]) -> bytes:
        old, new = _strings(args, 2, "RENAMESCRIPT takes the old and the new name")
        names = _name(old), _name(new)
        await self._store(lambda: self.sieve.store.rename(self._owner, *names))
        return b'OK "Script renamed"\r\n'


def _no_args(args: list[Any], command: str) -> None:
    if args:
        raise Bad(f"{command} takes no arguments")


def _strings(args: list[Any], count: int, usage: str) -> list[bytes]:
    if len(args) != count or not all(isinstance(a, bytes) for a in args):
        raise Bad(usage)
    return args


def _name(raw: bytes) -> str:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Bad("Script name is not UTF-8") from None
    if not name:
        raise Bad("Script name is empty")
    return name


async def _check(source: bytes, sends_mail: bool) -> None:
    """Bad with the reason when ``source`` is no script we can run; parsed in a thread
    (a large script takes long)."""
    if len(source) > MAX_SCRIPT:
        raise Bad(f"Scripts are at most {MAX_SCRIPT} octets", "QUOTA/MAXSIZE")
    try:
        await deferToThread(check_script, source, sends_mail)
    except SieveError as exc:
        raise Bad(str(exc)) from exc


def _b64(data: bytes) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Bad("Invalid base64 in authentication response") from exc
