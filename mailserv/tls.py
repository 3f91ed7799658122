"""TLS material: a self-signed leaf certificate made on first start, loaded for Twisted.

The generated certificate is a proper *leaf* (CA:FALSE, serverAuth, names in the SAN), so
clients that pin or trust it once accept it without a CA of our own.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import secrets
import socket
from dataclasses import dataclass
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto
from twisted.internet.ssl import CertificateOptions, TLSVersion

__all__ = [
    "CERT_VALIDITY",
    "TLSError",
    "TLSMaterial",
    "generate_self_signed",
    "load_tls",
    "prepare_tls",
]

CERT_VALIDITY = datetime.timedelta(days=825)
"""The longest lifetime that Apple platforms accept for a server certificate."""

_ServerKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)
_CLOCK_SKEW = datetime.timedelta(minutes=5)
_DNS_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class TLSError(ValueError):
    """The certificate or key cannot be used; the text names the file."""


@dataclass(frozen=True)
class TLSMaterial:
    cert_path: str
    key_path: str
    options: CertificateOptions
    fingerprint: str
    """SHA-256 of the leaf certificate, colon-separated hex, for the startup log."""
    generated: bool
    """True when this call created the certificate."""


def prepare_tls(data_dir: str, cert_path: str | None, key_path: str | None) -> TLSMaterial:
    """Load the given cert/key, or ``<data_dir>/tls/{cert,key}.pem`` (made if absent)."""
    generated = False
    if cert_path is None or key_path is None:
        tls_dir = os.path.join(data_dir, "tls")
        cert_path = os.path.join(tls_dir, "cert.pem")
        key_path = os.path.join(tls_dir, "key.pem")
        generated = _create_if_missing(tls_dir, cert_path, key_path)
    options, fingerprint = load_tls(cert_path, key_path)
    return TLSMaterial(cert_path, key_path, options, fingerprint, generated)


def load_tls(cert_path: str, key_path: str) -> tuple[CertificateOptions, str]:
    """Server options (TLS 1.2 or later) and the leaf's fingerprint.

    ``cert_path`` may hold a chain: the leaf first, then its intermediates.
    """
    chain = _read_chain(cert_path)
    key = _read_key(key_path)
    leaf = chain[0]
    if _public_der(leaf.public_key()) != _public_der(key.public_key()):
        raise TLSError(f"{key_path} is not the key of the certificate in {cert_path}")
    options = CertificateOptions(
        # Twisted's annotations still say pyOpenSSL X509/PKey, which pyOpenSSL now deprecates;
        # CertificateOptions hands these straight to pyOpenSSL, which takes cryptography's.
        privateKey=cast(crypto.PKey, key),
        certificate=cast(crypto.X509, leaf),
        extraCertChain=cast(list[crypto.X509], chain[1:]),
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )
    return options, _fingerprint(leaf)


def generate_self_signed(
    names: list[str] | None = None, now: datetime.datetime | None = None
) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) of a new EC P-256 self-signed leaf.

    ``names`` defaults to localhost, 127.0.0.1, ::1 and this host's names.
    """
    names = _default_names() if names is None else names
    now = now or datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(secrets.randbits(159) | 1)
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _default_names() -> list[str]:
    names = ["localhost", "127.0.0.1", "::1"]
    for name in (socket.gethostname(), socket.getfqdn()):
        if name and name not in names:
            names.append(name)
    return names


def _general_names(names: list[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            dns = name.rstrip(".").lower()
            if len(dns) <= 253 and all(_DNS_LABEL.fullmatch(p) for p in dns.split(".")):
                result.append(x509.DNSName(dns))
    return result


def _create_if_missing(tls_dir: str, cert_path: str, key_path: str) -> bool:
    """Write a new pair unless the certificate is there; the key is written first."""
    if os.path.exists(cert_path):
        return False
    os.makedirs(tls_dir, mode=0o700, exist_ok=True)
    cert_pem, key_pem = generate_self_signed()
    _write_new(key_path, key_pem, 0o600)
    _write_new(cert_path, cert_pem, 0o644)
    return True


def _write_new(path: str, data: bytes, mode: int) -> None:
    """Write via a private temporary name, then rename: never a half-written file."""
    temporary = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSError(f"cannot read {path}: {e.strerror}") from None


def _read_chain(path: str) -> list[x509.Certificate]:
    data = _read(path)
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TLSError(f"{path} holds no PEM certificate") from None
    return chain


def _read_key(path: str) -> _ServerKey:
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise TLSError(f"{path} holds no usable unencrypted PEM private key: {e}") from None
    if not isinstance(key, _ServerKey):
        raise TLSError(f"{path}: a {type(key).__name__} cannot sign for a TLS server")
    return key


def _public_der(public: PublicKeyTypes) -> bytes:
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()
