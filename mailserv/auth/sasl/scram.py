"""SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677): password proofs against stored
keys, with channel binding to the TLS connection for -PLUS.

The keys come from the user store's ``{SCRAM-SHA-256}`` value (:mod:`mailserv.auth.schemes`),
read mid-exchange through ``SASLContext.key_store``; the server never sees the password.
scramp parses the client's messages (SASLprep of the user name included) and derives keys;
the exchange itself is here, because scramp 1.5 knows neither the ``tls-exporter`` binding
(RFC 9266) nor an authorization identity.

Channel bindings offered: ``tls-exporter`` on TLS 1.3 and ``tls-server-end-point`` (RFC 5929,
the server certificate hashed with its signature's hash, SHA-256 for MD5 and SHA-1) when the
certificate names one hash (not Ed25519).  -PLUS is offered only on TLS with one of them.

A user the store does not know, or whose stored value cannot do SCRAM (argon2id, bcrypt,
...), gets a salt derived from the server secret and the name, the same every time, and
fails at the proof exactly as a wrong password does: the exchange does not tell which names
exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from scramp import ScramException  # type: ignore[import-untyped,unused-ignore]
from scramp.core import (  # type: ignore[import-untyped,unused-ignore]
    ClientFinal,
    ClientFirstBare,
)
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
from mailserv.auth.schemes import SCRAM_ITERATIONS, ScramKeys, parse_scram
from mailserv.auth.users import IStoredSecretProof

if TYPE_CHECKING:
    from OpenSSL.SSL import Connection

EXPORTER_LABEL = b"EXPORTER-Channel-Binding"
_FAKE_SALT_LABEL = b"mailserv SCRAM salt of an unknown user\x00"
_WEAK_HASHES = ("md5", "sha1")


def channel_bindings(tls: Connection | None) -> dict[str, bytes]:
    """The channel bindings this TLS connection gives, by name, best first."""
    if tls is None:
        return {}
    found: dict[str, bytes] = {}
    try:
        if tls.get_protocol_version_name() == "TLSv1.3":
            exported = tls.export_keying_material(EXPORTER_LABEL, 32)
            if exported:
                found["tls-exporter"] = exported
        certificate = tls.get_certificate()
    except SSL.Error:
        return found
    if certificate is not None:
        end_point = _end_point(certificate.to_cryptography())
        if end_point is not None:
            found["tls-server-end-point"] = end_point
    return found


def _end_point(certificate: x509.Certificate) -> bytes | None:
    try:
        algorithm = certificate.signature_hash_algorithm
    except Exception:  # noqa: BLE001 -- an algorithm cryptography cannot name: no binding
        return None
    if algorithm is None:  # Ed25519, Ed448: RFC 5929 defines nothing
        return None
    if algorithm.name in _WEAK_HASHES:
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(certificate.public_bytes(Encoding.DER))
    return digest.finalize()


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def proof_holds(keys: ScramKeys, auth_message: bytes, proof: bytes) -> bool:
    """RFC 5802 section 3: H(ClientProof XOR HMAC(StoredKey, AuthMessage)) == StoredKey."""
    signature = _hmac(keys.stored_key, auth_message)
    if len(proof) != len(signature):
        return False
    client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), keys.stored_key)


@implementer(IStoredSecretProof)
class ScramProof:
    """A verified exchange, for the checker to verify again against the stored value."""

    def __init__(self, username: str, auth_message: bytes, proof: bytes) -> None:
        self.username = username
        self._auth_message = auth_message
        self._proof = proof

    def check(self, stored: str) -> bool:
        keys = parse_scram(stored)
        return keys is not None and proof_holds(keys, self._auth_message, self._proof)


def _unescape_saslname(name: str) -> str:
    rest = name.replace("=2C", "").replace("=3D", "")
    if "=" in rest:
        raise SASLError("SCRAM authorization identity has a bad '=' escape")
    return name.replace("=2C", ",").replace("=3D", "=")


def _fake_keys(secret: bytes, user: str) -> ScramKeys:
    salt = _hmac(secret, _FAKE_SALT_LABEL + user.encode("utf-8"))
    return ScramKeys(SCRAM_ITERATIONS, salt, os.urandom(32), os.urandom(32))


@implementer(ISASLExchange)
class _ScramExchange:
    def __init__(self, plus: bool, context: SASLContext) -> None:
        self._plus = plus
        self._context = context
        self._bindings = channel_bindings(context.tls)
        self._first: tuple[bytes, str, str, ScramKeys, str] | None = None
        """After the first message: cbind input, user, client-first-bare, keys, server-first."""

    async def step(self, response: bytes | None) -> Challenge | Credentials:
        if response is None:
            return Challenge(b"")
        text = utf8(response, "SCRAM message")
        if self._first is None:
            return await self._client_first(text)
        return self._client_final(text, *self._first)

    def _gs2(self, text: str) -> tuple[bytes, str, str]:
        """(cbind input, authzid, client-first-bare) of the client's first message."""
        flag, comma, rest = text.partition(",")
        authzid, comma2, bare = rest.partition(",")
        if not comma or not comma2:
            raise SASLError("SCRAM first message lacks its GS2 header")
        if authzid and not authzid.startswith("a="):
            raise SASLError("SCRAM GS2 header's authorization identity must start with a=")
        binding = b""
        if flag.startswith("p="):
            name = flag[2:]
            if not self._plus:
                raise SASLFailed("SCRAM: channel binding needs the -PLUS mechanism")
            if name not in self._bindings:
                offered = ", ".join(self._bindings) or "none"
                raise SASLFailed(f"SCRAM: unsupported channel binding {name[:40]} ({offered})")
            binding = self._bindings[name]
        elif flag in ("n", "y"):
            if self._plus:
                raise SASLFailed("SCRAM-SHA-256-PLUS needs a channel binding (p=)")
            if flag == "y" and self._bindings and self._context.key_store is not None:
                raise SASLFailed("SCRAM: the server does support channel binding (downgrade?)")
        else:
            raise SASLError("SCRAM GS2 channel binding flag must be n, y or p=")
        header = f"{flag},{authzid},".encode()
        return header + binding, _unescape_saslname(authzid[2:]), bare

    async def _client_first(self, text: str) -> Challenge:
        cbind, authzid, bare = self._gs2(text)
        try:
            message = ClientFirstBare(bare)
        except ScramException as exc:
            raise SASLError(f"SCRAM first message: {exc}") from exc
        user = str(message["n"])
        if authzid and authzid != user:
            why = "Authorization identity must match the user"
            raise SASLFailed(why, "AUTHORIZATIONFAILED", user)
        store = self._context.key_store
        if store is None:
            raise SASLFailed("SCRAM is not available")
        entry = await store.find(user)
        keys = parse_scram(entry.password) if entry is not None else None
        if keys is None:
            keys = _fake_keys(self._context.secret, user)
        nonce = str(message["r"]) + secrets.token_urlsafe(18)
        salt = base64.b64encode(keys.salt).decode("ascii")
        server_first = f"r={nonce},s={salt},i={keys.iterations}"
        self._first = (cbind, user, bare, keys, server_first)
        return Challenge(server_first.encode("ascii"))

    def _client_final(
        self, text: str, cbind: bytes, user: str, bare: str, keys: ScramKeys, server_first: str
    ) -> Credentials:
        try:
            message = ClientFinal(text)
        except ScramException as exc:
            raise SASLError(f"SCRAM final message: {exc}") from exc
        try:
            sent_binding = base64.b64decode(message["c"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SASLError("SCRAM channel binding is not base64") from exc
        if not hmac.compare_digest(sent_binding, cbind):
            raise SASLFailed("SCRAM channel bindings do not match", user=user)
        if "r=" + str(message["r"]) != server_first.split(",", 1)[0]:
            raise SASLFailed("SCRAM nonce does not match", user=user)
        without_proof = text[: text.rindex(",p=")]
        auth_message = f"{bare},{server_first},{without_proof}".encode()
        proof: bytes = message["p"]
        if not proof_holds(keys, auth_message, proof):
            raise SASLFailed("Authentication failed", user=user)
        signature = base64.b64encode(_hmac(keys.server_key, auth_message))
        return Credentials(ScramProof(user, auth_message, proof), final=b"v=" + signature)


@implementer(ISASLMechanism)
class ScramSHA256:
    """SCRAM-SHA-256, or with ``plus`` SCRAM-SHA-256-PLUS; offered where the server holds
    stored keys (``key_store``), -PLUS only with a channel binding."""

    def __init__(self, plus: bool = False) -> None:
        self.plus = plus
        self.name = "SCRAM-SHA-256-PLUS" if plus else "SCRAM-SHA-256"

    def available(self, context: SASLContext) -> bool:
        if context.key_store is None:
            return False
        return not self.plus or bool(channel_bindings(context.tls))

    def start(self, context: SASLContext) -> ISASLExchange:
        return _ScramExchange(self.plus, context)


mechanism = ScramSHA256()
mechanism_plus = ScramSHA256(plus=True)
