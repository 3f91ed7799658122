"""Not-authenticated state: LOGIN, AUTHENTICATE (PLAIN, LOGIN; SASL-IR), STARTTLS."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.internet import task
from twisted.logger import Logger

from mailserv import errors
from mailserv.auth.sasl import decode_plain
from mailserv.imap import capabilities
from mailserv.imap.commands import NOT_AUTH, CommandSpec
from mailserv.imap.parser import astring, text_atom
from mailserv.imap.replies import Bad, No, Reply
from mailserv.imap.tokens import Atom, Command
from mailserv.interfaces import IAccount

if TYPE_CHECKING:
    from mailserv.imap.server import IMAPServerProtocol

_log = Logger()
_MAX_SASL_LINE = 8192


async def login(session: IMAPServerProtocol, command: Command) -> Reply:
    if len(command.args) != 2:
        raise Bad("LOGIN takes a user name and a password")
    _require_privacy(session)
    user = astring(command.args[0]).decode("utf-8", "replace")
    password = astring(command.args[1])
    return await _authenticate(session, user, password)


async def authenticate(session: IMAPServerProtocol, command: Command) -> Reply:
    if not 1 <= len(command.args) <= 2:
        raise Bad("AUTHENTICATE takes a mechanism and an optional initial response")
    mechanism = text_atom(command.args[0]).upper()
    if mechanism not in ("PLAIN", "LOGIN"):
        raise No(f"Unsupported authentication mechanism {mechanism[:40]}")
    _require_privacy(session)
    initial: bytes | None = None
    if len(command.args) == 2:
        arg = command.args[1]
        initial = b"" if isinstance(arg, Atom) and arg.value == "=" else _b64(astring(arg))
    if mechanism == "PLAIN":
        response = initial if initial is not None else await _challenge(session, b"")
        try:
            authzid, user, password = decode_plain(response)
        except ValueError as exc:
            raise Bad(f"Malformed PLAIN response: {exc}") from exc
        if authzid and authzid != user:
            raise No("Authorization identity must match the user", "AUTHORIZATIONFAILED")
        return await _authenticate(session, user, password)
    user_bytes = initial if initial is not None else await _challenge(session, b"Username:")
    password = await _challenge(session, b"Password:")
    return await _authenticate(session, user_bytes.decode("utf-8", "replace"), password)


async def _challenge(session: IMAPServerProtocol, prompt: bytes) -> bytes:
    session.write(b"+ " + base64.b64encode(prompt) + b"\r\n")
    line = (await session.read_line()).rstrip(b"\r\n")
    if line == b"*":
        raise Bad("Authentication cancelled")
    if len(line) > _MAX_SASL_LINE:
        raise Bad("Authentication response too long")
    return _b64(line)


def _b64(data: bytes) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Bad("Invalid base64 in authentication response") from exc


def _require_privacy(session: IMAPServerProtocol) -> None:
    if not session.plaintext_auth_allowed:
        raise No("Plaintext authentication is disabled; use STARTTLS", "PRIVACYREQUIRED")


async def _authenticate(session: IMAPServerProtocol, user: str, password: bytes) -> Reply:
    factory = session.factory
    peer = session.peer
    if factory.throttle.blocked(peer):
        session.disconnect("Too many failed logins from your address; try later")
        raise No("Too many failed logins", "UNAVAILABLE")
    try:
        _iface, account, logout = await factory.portal.login(
            UsernamePassword(user.encode("utf-8"), password), None, IAccount
        )
    except (UnauthorizedLogin, LoginFailed):
        return await _failed(session, user)
    except errors.BackendError:
        raise
    factory.throttle.record_success(peer)
    session.logged_in(user, account, logout)
    _log.info("{user} logged in from {peer}", user=user, peer=peer)
    caps = b" ".join(capabilities.for_session(session))
    return Reply("Logged in", b"CAPABILITY " + caps)


async def _failed(session: IMAPServerProtocol, user: str) -> Reply:
    factory = session.factory
    peer = session.peer
    factory.throttle.record_failure(peer)
    session.auth_failures += 1
    _log.info("Failed login for {user!r} from {peer}", user=user[:64], peer=peer)
    delay = max(
        factory.throttle.delay_for(peer),
        session.settings.auth_failure_delay * 2 ** min(session.auth_failures - 1, 5),
    )
    await task.deferLater(factory.clock, min(delay, 30.0), lambda: None)
    if session.auth_failures >= session.settings.max_auth_failures:
        session.disconnect("Too many failed logins")
    raise No("Authentication failed", "AUTHENTICATIONFAILED")


async def starttls(session: IMAPServerProtocol, command: Command) -> Reply:
    if command.args:
        raise Bad("STARTTLS takes no arguments")
    if session.factory.tls is None:
        raise Bad("STARTTLS is not available")
    if session.secure:
        raise Bad("TLS is already active")
    session.write(b"%s OK Begin TLS negotiation now\r\n" % command.tag.encode())
    session.start_tls()
    return Reply(sent=True)


SPECS = (
    CommandSpec("LOGIN", login, NOT_AUTH),
    CommandSpec("AUTHENTICATE", authenticate, NOT_AUTH, exclusive=True),
    CommandSpec("STARTTLS", starttls, NOT_AUTH, exclusive=True),
)
