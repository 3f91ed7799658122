"""Bearer tokens (RFC 6750) for OAUTHBEARER and XOAUTH2: whom a token names, and whether
to believe it.

An :class:`ITokenValidator` turns a token into a :class:`TokenInfo` or refuses it.  Two
ship here: :class:`IntrospectionValidator` asks the authorization server (RFC 7662) and
remembers a positive answer briefly; :class:`JWKSValidator` checks a JWT locally against the
provider's published keys (RFC 7517), fetched and refreshed over HTTPS.  Both speak HTTP
through treq with a deadline, so a slow provider delays only the sign-ins waiting for it.

The SASL mechanisms hand the portal an :class:`OAuthIdentity` (a validated token), which
:class:`OAuthUserChecker` accepts only for a user of the user store: a provider usually
serves many applications, and a valid token alone must not create a mailbox here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.client import HTTPConnectionPool
from zope.interface import Attribute, Interface, implementer

from mailserv.auth.trust import https_agent
from mailserv.auth.users import IUserStore
from mailserv.config import OAuthConfig

__all__ = [
    "ALGORITHMS",
    "ITokenValidator",
    "IntrospectionValidator",
    "InvalidToken",
    "JWKSValidator",
    "OAuthIdentity",
    "OAuthUserChecker",
    "TokenInfo",
    "TokenServiceUnavailable",
    "build_validator",
]

_log = Logger()

ALGORITHMS = ("RS256", "ES256")
"""The JWT signature algorithms :class:`JWKSValidator` accepts."""
MAX_BODY = 256 * 1024
"""Largest introspection answer or JWKS read from a provider."""


@dataclass(frozen=True)
class TokenInfo:
    """A token that checked out: the user it names and when it stops being good."""

    user: str
    expires: float | None
    """POSIX seconds, or None when the provider did not say."""


class InvalidToken(Exception):
    """Not a token to accept: malformed, expired, revoked, forged, or meant for another."""


class TokenServiceUnavailable(Exception):
    """The provider could not be asked (down, too slow, nonsense answer): try later."""


class ITokenValidator(Interface):
    """Checks bearer tokens."""

    def validate(token: str) -> Awaitable[TokenInfo]:
        """The token's :class:`TokenInfo`; raises InvalidToken or TokenServiceUnavailable."""


class _HTTP:
    """JSON over HTTPS with a deadline (``timeout`` seconds for the whole exchange)."""

    def __init__(self, reactor: Any, ca_file: str | None, timeout: float) -> None:
        import treq.client

        pool = HTTPConnectionPool(reactor, persistent=True)
        agent = https_agent(reactor, ca_file, pool, "oauth ca-file")
        self._client = treq.client.HTTPClient(agent)
        self._reactor = reactor
        self.timeout = timeout

    async def json(
        self, method: str, url: str, headers: Mapping[str, str], data: Mapping[str, str] | None
    ) -> dict[str, object]:
        exchange = Deferred.fromCoroutine(self._exchange(method, url, headers, data))
        exchange.addTimeout(self.timeout, self._reactor)
        try:
            return await exchange
        except Exception as exc:  # noqa: BLE001 - whatever failed, the provider is unusable now
            _log.warn("{method} {url} failed: {why}", method=method, url=url, why=_why(exc))
            raise TokenServiceUnavailable(f"{url} did not answer usably") from exc

    async def _exchange(
        self, method: str, url: str, headers: Mapping[str, str], data: Mapping[str, str] | None
    ) -> dict[str, object]:
        sent: dict[bytes | str, bytes | str] = {"Accept": "application/json"}
        sent.update(headers)
        body = dict(data) if data is not None else None
        response = await self._client.request(method, url, headers=sent, data=body)
        chunks: list[bytes] = []
        size = 0

        def collect(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)
            if size > MAX_BODY:
                raise ValueError(f"answer larger than {MAX_BODY} bytes")
            chunks.append(chunk)

        import treq

        await treq.collect(response, collect)
        if response.code != 200:
            raise ValueError(f"HTTP status {response.code}")
        answer = json.loads(b"".join(chunks))
        if not isinstance(answer, dict):
            raise ValueError("the answer is not a JSON object")
        return answer


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


class _Recent:
    """Token digests with the answer given for them, each until its own deadline;
    at most ``size``, the oldest dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[bytes, tuple[float, TokenInfo]] = OrderedDict()

    def get(self, key: bytes, now: float) -> TokenInfo | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: bytes, info: TokenInfo, until: float) -> None:
        if self.size <= 0:
            return
        self._entries[key] = (until, info)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


def _user_of(claims: Mapping[str, object], claim: str) -> str:
    user = claims.get(claim)
    if not isinstance(user, str) or not user:
        raise InvalidToken(f"the token names no user (claim {claim!r})")
    return user


def _expiry(claims: Mapping[str, object]) -> float | None:
    exp = claims.get("exp")
    if exp is None:
        return None
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        raise InvalidToken("the token's expiry is not a number")
    return float(exp)


@implementer(ITokenValidator)
class IntrospectionValidator:
    """RFC 7662: POST the token to ``url`` as client ``client_id`` (HTTP Basic).

    Accepted: ``active`` true, ``exp`` (if any) in the future, ``aud`` holding ``audience``
    and ``iss`` equal to ``issuer`` when those are set, and the ``claim`` naming the user.
    A positive answer is kept ``cache_ttl`` seconds (never past the token's expiry) for at
    most ``cache_size`` tokens, keyed by the token's SHA-256; a refusal is not kept.
    """

    def __init__(
        self,
        http: _HTTP,
        url: str,
        client_id: str,
        client_secret: str,
        clock: IReactorTime,
        claim: str = "sub",
        audience: str | None = None,
        issuer: str | None = None,
        cache_ttl: float = 60.0,
        cache_size: int = 10_000,
    ) -> None:
        self._http = http
        self.url = url
        pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
        self._authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        self._clock = clock
        self.claim = claim
        self.audience = audience
        self.issuer = issuer
        self.cache_ttl = cache_ttl
        self._recent = _Recent(cache_size)

    async def validate(self, token: str) -> TokenInfo:
        key = hashlib.sha256(token.encode("utf-8")).digest()
        known = self._recent.get(key, self._clock.seconds())
        if known is not None:
            return known
        answer = await self._http.json(
            "POST",
            self.url,
            {"Authorization": self._authorization},
            {"token": token, "token_type_hint": "access_token"},
        )
        now = self._clock.seconds()
        if answer.get("active") is not True:
            raise InvalidToken("the token is not active (expired or revoked)")
        expires = _expiry(answer)
        if expires is not None and expires <= now:
            raise InvalidToken("the token has expired")
        if self.audience is not None and not _has_audience(answer.get("aud"), self.audience):
            raise InvalidToken("the token is meant for another audience")
        if self.issuer is not None and answer.get("iss") != self.issuer:
            raise InvalidToken("the token comes from another issuer")
        info = TokenInfo(_user_of(answer, self.claim), expires)
        until = now + self.cache_ttl if expires is None else min(now + self.cache_ttl, expires)
        self._recent.put(key, info, until)
        return info


def _has_audience(aud: object, audience: str) -> bool:
    if isinstance(aud, str):
        return aud == audience
    return isinstance(aud, list) and audience in aud


@implementer(ITokenValidator)
class JWKSValidator:
    """A JWT (RS256 or ES256) checked here against the keys published at ``url``.

    The keys are fetched on first use and again once older than ``max_age``; a token whose
    ``kid`` is not among them fetches them again at once (a rotated key), at most once per
    ``refetch_interval`` seconds, so made-up key ids do not hammer the provider.  ``iss``,
    ``aud`` and ``exp`` must be present and right, with ``leeway`` seconds of clock skew.
    """

    def __init__(
        self,
        http: _HTTP,
        url: str,
        clock: IReactorTime,
        issuer: str,
        audience: str,
        claim: str = "sub",
        leeway: int = 30,
        max_age: float = 3600.0,
        refetch_interval: float = 60.0,
    ) -> None:
        self._http = http
        self.url = url
        self._clock = clock
        self.issuer = issuer
        self.audience = audience
        self.claim = claim
        self.leeway = leeway
        self.max_age = max_age
        self.refetch_interval = refetch_interval
        self._keys: KeySet | None = None
        self._fetched_at = -math.inf
        self._refetched_for_kid_at = -math.inf
        self._waiters: list[Deferred[None]] | None = None

    async def validate(self, token: str) -> TokenInfo:
        header = _jws_header(token)
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise InvalidToken(f"the token's algorithm must be one of {', '.join(ALGORITHMS)}")
        kid = header.get("kid")
        keys = await self._keys_for(kid if isinstance(kid, str) else None)
        try:
            claims = jwt.decode(token, keys, algorithms=[str(algorithm)]).claims
        except (JoseError, ValueError) as exc:
            raise InvalidToken(f"the token's signature does not verify ({exc})"[:200]) from exc
        registry = jwt.JWTClaimsRegistry(
            now=int(self._clock.seconds()),
            leeway=self.leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except (JoseError, ValueError) as exc:
            raise InvalidToken(f"the token's claims are not acceptable ({exc})"[:200]) from exc
        expires = _expiry(claims)
        grace = None if expires is None else expires + self.leeway
        return TokenInfo(_user_of(claims, self.claim), grace)

    async def _keys_for(self, kid: str | None) -> KeySet:
        now = self._clock.seconds()
        if self._keys is None or now - self._fetched_at >= self.max_age:
            await self._refresh()
        elif (
            kid is not None
            and not _holds(self._keys, kid)
            and now - self._refetched_for_kid_at >= self.refetch_interval
        ):
            self._refetched_for_kid_at = now
            await self._refresh()
        if self._keys is None:
            raise TokenServiceUnavailable(f"no keys from {self.url}")
        return self._keys

    async def _refresh(self) -> None:
        """Fetch the key set; callers arriving while a fetch runs wait for that one."""
        if self._waiters is not None:
            waiter: Deferred[None] = Deferred()
            self._waiters.append(waiter)
            await waiter
            return
        self._waiters = []
        try:
            answer = await self._http.json("GET", self.url, {}, None)
            self._keys = _key_set(answer, self.url)
            self._fetched_at = self._clock.seconds()
            _log.info("Fetched {count} keys from {url}", count=len(self._keys.keys), url=self.url)
        except TokenServiceUnavailable:
            if self._keys is None:
                raise
            _log.warn("Keeping the keys fetched before from {url}", url=self.url)
        finally:
            waiters, self._waiters = self._waiters, None
            for waiter in waiters:
                waiter.callback(None)


def _jws_header(token: str) -> dict[str, object]:
    try:
        header = jws.extract_compact(token.encode("ascii")).protected
    except (JoseError, ValueError, UnicodeError) as exc:
        raise InvalidToken("the token is not a signed JWT") from exc
    if not isinstance(header, dict):
        raise InvalidToken("the token's header is not a JSON object")
    return header


def _holds(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


def _key_set(answer: Mapping[str, object], url: str) -> KeySet:
    """The RSA and EC signing keys of a JWKS document (others are left out)."""
    found = answer.get("keys")
    if not isinstance(found, list):
        raise TokenServiceUnavailable(f"{url} sent no JWKS 'keys' list")
    usable = [
        key
        for key in found
        if isinstance(key, dict) and key.get("kty") in ("RSA", "EC") and key.get("use") != "enc"
    ]
    try:
        return KeySet.import_key_set({"keys": usable})
    except (JoseError, ValueError, TypeError) as exc:
        raise TokenServiceUnavailable(f"{url} sent keys that cannot be used: {exc}") from exc


@implementer(ITokenValidator)
class ByShape:
    """With both kinds configured: a JWT-shaped token (three dot-separated parts) is checked
    by ``local``, any other by ``remote``."""

    def __init__(self, local: ITokenValidator, remote: ITokenValidator) -> None:
        self.local = local
        self.remote = remote

    def validate(self, token: str) -> Awaitable[TokenInfo]:
        chosen = self.local if token.count(".") == 2 else self.remote
        return chosen.validate(token)


def build_validator(config: OAuthConfig, reactor: Any) -> ITokenValidator | None:
    """The validator ``config`` describes, or None when OAuth is not configured."""
    if not config.enabled:
        return None
    http = _HTTP(reactor, config.ca_file, config.timeout)
    local: ITokenValidator | None = None
    remote: ITokenValidator | None = None
    if config.jwks:
        assert config.issuer is not None and config.audience is not None  # load_config checks
        local = JWKSValidator(
            http,
            config.jwks,
            reactor,
            config.issuer,
            config.audience,
            config.user_claim,
            config.leeway,
            config.jwks_max_age,
            config.jwks_refetch_interval,
        )
    if config.introspect:
        assert config.client_id is not None and config.client_secret is not None
        remote = IntrospectionValidator(
            http,
            config.introspect,
            config.client_id,
            config.client_secret,
            reactor,
            config.user_claim,
            config.audience,
            config.issuer,
            config.cache_ttl,
            config.cache_size,
        )
    if local is not None and remote is not None:
        return ByShape(local, remote)
    chosen = local or remote
    assert chosen is not None
    return chosen


class IOAuthIdentity(ICredentials):
    """Credentials of a bearer token a validator accepted."""

    info = Attribute("The :class:`TokenInfo`.")
    username = Attribute("The token's user, UTF-8 (bytes), as the engine logs it.")


@implementer(IOAuthIdentity)
class OAuthIdentity:
    def __init__(self, info: TokenInfo) -> None:
        self.info = info
        self.username = info.user.encode("utf-8")


@implementer(ICredentialsChecker)
class OAuthUserChecker:
    """Lets in the user of a validated token if the token has not expired since and
    the user store knows the user; the avatar id is the user name (str)."""

    credentialInterfaces = (IOAuthIdentity,)

    def __init__(self, store: IUserStore, clock: IReactorTime) -> None:
        self.store = store
        self._clock = clock

    def requestAvatarId(  # type: ignore[override]  # the avatar id is text, not bytes
        self, credentials: IOAuthIdentity
    ) -> Deferred[str]:
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: IOAuthIdentity) -> str:
        info = credentials.info
        if not isinstance(info, TokenInfo):
            raise UnauthorizedLogin("not a validated token")
        if info.expires is not None and info.expires <= self._clock.seconds():
            raise UnauthorizedLogin("the token has expired")
        if await self.store.find(info.user) is None:
            _log.info("A valid token names {user!r}, who is not a user here", user=info.user[:64])
            raise UnauthorizedLogin("no such user")
        return info.user
