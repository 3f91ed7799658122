"""Not-authenticated state: LOGIN, AUTHENTICATE (any registered SASL mechanism; SASL-IR),
STARTTLS.  The mechanisms themselves live in :mod:`mailserv.auth.sasl`."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from twisted.cred.credentials import ICredentials, UsernamePassword
from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from mailserv import errors
from mailserv.auth.apppasswords import app_password_use
from mailserv.auth.sasl import MAX_RESPONSE, Challenge, SASLError, SASLFailed
from mailserv.imap import capabilities, shared
from mailserv.imap.arguments import astring, text_atom
from mailserv.imap.commands import NOT_AUTH, CommandSpec
from mailserv.imap.registry import Capability, Extension
from mailserv.imap.replies import Bad, No, Reply
from mailserv.imap.session import Services, Session, State
from mailserv.interfaces import IAccount
from mailserv.syntax.tokens import Atom, Command

_log = Logger()
_MAX_SASL_LINE = (MAX_RESPONSE + 2) // 3 * 4
_MAX_SASL_STEPS = 16

LOGIN_COMMAND = "LOGIN-COMMAND"
"""The ``mechanism`` of a sign-in by the LOGIN command (not AUTHENTICATE LOGIN)."""
_LOGIN_TEXT = {
    "ok": "{user} logged in from {address} ({mechanism})",
    "failed": "Failed login for {user!r} from {address} ({mechanism}); answer held {delay}s",
    "blocked": "Refused login for {user!r} from {address} ({mechanism}): too many failures",
    "error": "Login for {user!r} from {address} ({mechanism}) failed in the backend",
    "unavailable": "Login for {user!r} from {address} ({mechanism}) not decided: try later",
}
"""The text of the one ``login`` event per attempt, by result; the fields are the same."""


async def login(session: Session, command: Command) -> Reply:
    if len(command.args) != 2:
        raise Bad("LOGIN takes a user name and a password")
    if not session.plaintext_auth_allowed:
        raise No("Plaintext authentication is disabled; use STARTTLS", "PRIVACYREQUIRED")
    user = astring(command.args[0]).decode("utf-8", "replace")
    password = astring(command.args[1])
    credentials = UsernamePassword(user.encode("utf-8"), password)
    return await _authenticate(session, user, credentials, mechanism=LOGIN_COMMAND)


async def authenticate(session: Session, command: Command) -> Reply:
    if not 1 <= len(command.args) <= 2:
        raise Bad("AUTHENTICATE takes a mechanism and an optional initial response")
    name = text_atom(command.args[0]).upper()
    context = capabilities.sasl_context(session)
    mechanism = session.services.mechanisms.find(name, context)
    if mechanism is None:
        if session.services.mechanisms.needs_tls(name):
            raise No(f"{name} needs TLS; use STARTTLS first", "PRIVACYREQUIRED")
        raise No(f"Unsupported authentication mechanism {name[:40]}")
    response: bytes | None = None
    if len(command.args) == 2:
        arg = command.args[1]
        response = b"" if isinstance(arg, Atom) and arg.value == "=" else _b64(astring(arg))
    _refuse_if_blocked(session, "", name)  # before an exchange that may fail inside the mechanism
    exchange = mechanism.start(context)
    try:
        for _ in range(_MAX_SASL_STEPS):
            step = await exchange.step(response)
            if isinstance(step, Challenge):
                response = await _challenge(session, step.data)
                continue
            if step.final is not None:
                await _challenge(session, step.final)
            user = _user_of(step.credentials)
            return await _authenticate(session, user, step.credentials, mechanism=name)
    except SASLError as exc:
        raise Bad(f"{name}: {exc}") from exc
    except SASLFailed as exc:
        if not exc.counts:  # nothing was decided: no throttle, no held answer
            _attempt(session, exc.user, name, "unavailable")
            raise No(f"{name}: {exc}", exc.code) from exc
        return await _failed(session, exc.user, exc.code, f"{name}: {exc}", mechanism=name)
    raise Bad(f"{name}: too many exchange steps")


def _user_of(credentials: ICredentials) -> str:
    user = getattr(credentials, "username", b"")
    return user.decode("utf-8", "replace") if isinstance(user, bytes) else str(user)


async def _challenge(session: Session, data: bytes) -> bytes:
    session.write(b"+ " + base64.b64encode(data) + b"\r\n")
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


def _attempt(session: Session, user: str, mechanism: str, result: str, delay: float = 0.0) -> None:
    """One log event and one count per login attempt; never the secret.  ``delay``: how
    long a failure's answer is held (the throttles)."""
    session.services.metrics.login(mechanism, result)
    _log.info(
        _LOGIN_TEXT[result],
        event="login",
        result=result,
        mechanism=mechanism,
        user=user[:64],
        address=session.peer,
        delay=round(delay, 2),
    )


def locked_out(services: Services, peer: str, user: str) -> str | None:
    """Which record refuses a login of ``user`` (if named) from ``peer`` now, counted as a
    lockout in the metrics: ``"address"`` or ``"user"``; None when neither does."""
    if services.throttle.blocked(peer):
        scope = "address"
    elif user and services.throttle.user_blocked(user):
        scope = "user"
    else:
        return None
    services.metrics.lockout(scope)
    return scope


def _refuse_if_blocked(session: Session, user: str, mechanism: str) -> None:
    scope = locked_out(session.services, session.peer, user)
    if scope is None:
        return
    _attempt(session, user, mechanism, "blocked")
    if scope == "address":
        session.disconnect("Too many failed logins from your address; try later")
        raise No("Too many failed logins", "UNAVAILABLE")
    session.disconnect("Too many failed logins for this user; try later")
    raise No("Too many failed logins for this user", "UNAVAILABLE")


async def _authenticate(
    session: Session, user: str, credentials: ICredentials, *, mechanism: str
) -> Reply:
    services = session.services
    peer = session.peer
    _refuse_if_blocked(session, user, mechanism)
    try:
        _iface, account, logout = await services.portal.login(credentials, None, IAccount)
    except (UnauthorizedLogin, LoginFailed):
        return await _failed(session, user, mechanism=mechanism)
    except errors.BackendError:
        _attempt(session, user, mechanism, "error")
        raise
    services.throttle.record_success(peer)
    session.logged_in(user, shared.wrap(IAccount(account), user), logout)
    use = app_password_use(credentials)
    if use is not None:  # revoking it ends this session
        use.hold(session)
    _attempt(session, user, mechanism, "ok")
    caps = b" ".join(capabilities.for_session(session))
    return Reply("Logged in", b"CAPABILITY " + caps)


async def _failed(
    session: Session,
    user: str,
    code: str = "AUTHENTICATIONFAILED",
    text: str = "Authentication failed",
    *,
    mechanism: str,
) -> Reply:
    failures = session.note_auth_failure()

    def attempt(delay: float) -> None:
        _attempt(session, user, mechanism, "failed", delay)

    if await hold_failure(session.services, session.peer, user, failures, attempt):
        session.disconnect("Too many failed logins")
    raise No(text, code)


async def hold_failure(
    services: Services, peer: str, user: str, failures: int, attempt: Callable[[float], None]
) -> bool:
    """Record a failed login of ``user`` from ``peer`` (the ``failures``-th of its
    connection) and hold its answer: for the throttles' delay (``attempt(delay)`` logs the
    attempt first), then until every worker holds the failure (at once in one process).
    Whether the connection must now end (too many failures on it).  Every protocol that
    signs in (IMAP, ManageSieve) answers a failure through here."""
    recorded = services.throttle.login_failed(peer, user=user)
    delay = min(
        30.0,
        max(
            services.throttle.delay_for(peer),
            services.throttle.user_delay(user) if user else 0.0,
            services.settings.auth_failure_delay * 2 ** min(failures - 1, 5),
        ),
    )
    attempt(delay)
    services.metrics.login_delayed(delay)
    await task.deferLater(services.clock, delay, lambda: None)
    # The answer waits for the failure to be held by every worker too.
    if await _settled(recorded):
        _log.warn(
            "Logins of {user!r} refused for now: too many failed logins from any address",
            event="lockout",
            scope="user",
            user=user[:64],
            address=peer,
        )
    if failures >= services.settings.max_auth_failures:
        services.metrics.lockout("connection")
        return True
    return False


async def _settled(recorded: Deferred[bool]) -> bool:
    """Whether the failed login ``recorded`` locked its user (False if that is not known)."""
    try:
        return await recorded
    except Exception:  # noqa: BLE001 - the record holds here; the other workers' may lag
        _log.failure("Sharing a failed login with the other workers failed")
        return False


async def starttls(session: Session, command: Command) -> Reply:
    if command.args:
        raise Bad("STARTTLS takes no arguments")
    if session.services.tls is None:
        raise Bad("STARTTLS is not available")
    if session.secure:
        raise Bad("TLS is already active")
    session.write(b"%s OK Begin TLS negotiation now\r\n" % command.tag.encode())
    session.start_tls()
    return Reply(sent=True)


def _before_login(session: Session) -> bool:
    return session.state is State.NOT_AUTHENTICATED


def _offers_starttls(session: Session) -> bool:
    return _before_login(session) and session.services.tls is not None and not session.secure


def _mechanisms(session: Session) -> list[bytes]:
    names = session.services.mechanisms.offered(capabilities.sasl_context(session))
    return [name.encode("ascii") for name in names]


def _login_disabled(session: Session) -> bool:
    return _before_login(session) and not session.plaintext_auth_allowed


SIGN_IN = Extension(
    "sign-in",
    capabilities=(
        Capability(b"STARTTLS", _offers_starttls),
        Capability(b"AUTH=", _before_login, _mechanisms),
        Capability(b"LOGINDISABLED", _login_disabled),
    ),
    commands=(
        CommandSpec("LOGIN", login, NOT_AUTH),
        CommandSpec("AUTHENTICATE", authenticate, NOT_AUTH, exclusive=True),
        CommandSpec("STARTTLS", starttls, NOT_AUTH, exclusive=True),
    ),
    response_codes=frozenset({"AUTHENTICATIONFAILED", "PRIVACYREQUIRED", "UNAVAILABLE"}),
)
"""RFC 3501's sign-in commands and the capabilities that tell how to use them."""
