"""OAUTHBEARER (RFC 7628): a bearer token in one client message.

The message is a GS2 header (RFC 5801; channel binding is not supported, so the flag is
``n`` or ``y``, with an optional ``a=`` authorization identity), then ``\\x01``-separated
``key=value`` pairs ending with ``\\x01\\x01``; ``auth=Bearer <token>`` is the one that
matters (``host`` and ``port`` are ignored: the token's audience says whom it is for).

A token that fails is answered with RFC 7628's error exchange: a challenge holding a JSON
``{"status": "invalid_token", ...}``, to which the client answers ``\\x01``, then the
tagged NO.  A provider that cannot be asked gives ``NO [UNAVAILABLE]`` at once.

Unlike PLAIN and LOGIN, these mechanisms need the server's token validator, so they are not
module-level plugins: the server builds them when ``[oauth]`` is configured
(:func:`oauth_mechanisms`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from zope.interface import implementer

from mailserv.auth.sasl import (
    Challenge,
    Credentials,
    ISASLExchange,
    ISASLMechanism,
    SASLContext,
    SASLError,
    SASLFailed,
    utf8,
)
from mailserv.auth.tokens import (
    InvalidToken,
    ITokenValidator,
    OAuthIdentity,
    TokenServiceUnavailable,
)
from mailserv.config import OAuthConfig

_KEY = re.compile(rb"[A-Za-z]+")
_VALUE = re.compile(rb"[\x20-\x7e\t\r\n\x80-\xff]*")  # RFC 7628's, and UTF-8 (XOAUTH2 names)
_BEARER = re.compile(rb"Bearer ([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)


def parse_pairs(body: bytes, what: str) -> dict[str, bytes]:
    """``key=value\\x01...key=value\\x01\\x01`` (the final ``\\x01`` included) as a dict."""
    if not body.endswith(b"\x01\x01"):
        raise SASLError(f"{what} must end with two ^A separators")
    pairs: dict[str, bytes] = {}
    for item in body[:-2].split(b"\x01") if body != b"\x01\x01" else []:
        key, sep, value = item.partition(b"=")
        if not sep or not _KEY.fullmatch(key) or not _VALUE.fullmatch(value):
            raise SASLError(f"{what} holds a malformed key=value pair")
        if key.decode("ascii") in pairs:
            raise SASLError(f"{what} repeats the key {key.decode('ascii')}")
        pairs[key.decode("ascii")] = value
    return pairs


def bearer_token(pairs: dict[str, bytes], what: str) -> str:
    """The token of the ``auth`` pair, which must read ``Bearer <token>``."""
    auth = pairs.get("auth")
    if auth is None:
        raise SASLError(f"{what} has no auth=Bearer <token>")
    found = _BEARER.fullmatch(auth)
    if found is None:
        raise SASLError(f"{what}: auth must be 'Bearer <token>' with a token68 token")
    return found.group(1).decode("ascii")


def parse_oauthbearer(message: bytes) -> tuple[str, str]:
    """The client's message → (authorization identity or "", token)."""
    flag, comma, rest = message.partition(b",")
    authzid_part, comma2, rest = rest.partition(b",")
    if not comma or not comma2:
        raise SASLError("OAUTHBEARER message must start with a GS2 header such as 'n,,'")
    if flag.startswith(b"p="):
        raise SASLFailed("Channel binding is not supported with OAUTHBEARER")
    if flag not in (b"n", b"y"):
        raise SASLError("OAUTHBEARER GS2 header flag must be n or y")
    authzid = ""
    if authzid_part:
        if not authzid_part.startswith(b"a=") or len(authzid_part) == 2:
            raise SASLError("OAUTHBEARER GS2 header authorization identity must be a=<name>")
        authzid = _saslname(authzid_part[2:])
    if not rest.startswith(b"\x01"):
        raise SASLError("OAUTHBEARER GS2 header must be followed by ^A")
    return authzid, bearer_token(parse_pairs(rest[1:], "OAUTHBEARER message"), "OAUTHBEARER")


def _saslname(raw: bytes) -> str:
    if re.search(rb"=(?!2C|3D)", raw) or b"," in raw:
        raise SASLError("OAUTHBEARER authorization identity has a bad '=' escape")
    return utf8(raw.replace(b"=2C", b",").replace(b"=3D", b"="), "authorization identity")


def oauthbearer_error(config: OAuthConfig) -> bytes:
    """RFC 7628 3.2.2's error JSON, with the scope and discovery URL when configured."""
    body: dict[str, str] = {"status": "invalid_token"}
    if config.scope:
        body["scope"] = config.scope
    if config.openid_configuration:
        body["openid-configuration"] = config.openid_configuration
    return json.dumps(body).encode("ascii")


@implementer(ISASLExchange)
class BearerExchange:
    """One sign-in through ``mechanism``."""

    def __init__(self, mechanism: BearerMechanism) -> None:
        self._mechanism = mechanism
        self._refused = False

    async def step(self, response: bytes | None) -> Challenge | Credentials:
        if self._refused:  # the client's answer to the error challenge (\x01, or anything)
            raise SASLFailed("Invalid or expired token")
        if response is None:
            return Challenge(b"")
        mechanism = self._mechanism
        named, token = mechanism.parse(response)
        try:
            info = await mechanism.validator.validate(token)
        except InvalidToken:
            self._refused = True
            return Challenge(mechanism.error)
        except TokenServiceUnavailable as exc:
            raise SASLFailed("Cannot check the token now; try later", "UNAVAILABLE") from exc
        if named and named != info.user:
            raise SASLFailed(
                f"The token's user is not the one the {mechanism.name} message names",
                "AUTHORIZATIONFAILED",
            )
        return Credentials(OAuthIdentity(info))


@implementer(ISASLMechanism)
@dataclass(frozen=True)
class BearerMechanism:
    """A bearer-token mechanism, offered where a password could be (TLS, loopback, or
    allowed by configuration): the token is no less a secret.  ``parse`` reads the client's
    message into (user the client names or "", token); ``error`` is the challenge sent when
    the token is refused."""

    name: str
    parse: Callable[[bytes], tuple[str, str]]
    validator: ITokenValidator
    error: bytes

    def available(self, context: SASLContext) -> bool:
        return context.plaintext_allowed

    def start(self, context: SASLContext) -> ISASLExchange:
        return BearerExchange(self)


def oauthbearer(validator: ITokenValidator, config: OAuthConfig) -> BearerMechanism:
    return BearerMechanism("OAUTHBEARER", parse_oauthbearer, validator, oauthbearer_error(config))


def oauth_mechanisms(validator: ITokenValidator, config: OAuthConfig) -> list[ISASLMechanism]:
    """OAUTHBEARER and XOAUTH2 over ``validator``."""
    from mailserv.auth.sasl.xoauth2 import xoauth2

    return [oauthbearer(validator, config), xoauth2(validator, config)]
