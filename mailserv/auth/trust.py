"""HTTPS clients that trust the certificates of a PEM file (``ca-file``) instead of the
system's roots: for an OAuth provider or a webhook receiver behind a private CA."""

from __future__ import annotations

from typing import Any

from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool


def certificates(pem: bytes, what: str) -> list[Certificate]:
    """Every certificate of a PEM file; ValueError (naming ``what``) when there is none."""
    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in pem.split(marker) if b"-----BEGIN" in block]
    if not blocks:
        raise ValueError(f"no PEM certificate in the {what}")
    return [Certificate.loadPEM(block) for block in blocks]


def read_certificates(path: str, what: str) -> list[Certificate]:
    """:func:`certificates` of the file at ``path`` (ValueError if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror}") from None
    return certificates(pem, what)


def https_agent(
    reactor: Any, ca_file: str | None, pool: HTTPConnectionPool, what: str = "ca-file"
) -> Agent:
    """An Agent over ``pool`` verifying servers against ``ca_file``'s certificates (the
    system's roots when None)."""
    trust = None
    if ca_file is not None:
        trust = trustRootFromCertificates(read_certificates(ca_file, what))
    return Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trust), pool=pool)
