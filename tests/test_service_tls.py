"""mailserv.tls: the generated certificate is a usable server leaf, and loading checks files."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import socket
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import SSL
from service_identity.pyopenssl import verify_hostname, verify_ip_address

from mailserv.tls import CERT_VALIDITY, TLSError, generate_self_signed, load_tls, prepare_tls


@pytest.fixture
def generated(tmp_path: Path) -> tuple[Path, x509.Certificate]:
    material = prepare_tls(str(tmp_path), None, None)
    assert material.generated
    cert = x509.load_pem_x509_certificate((tmp_path / "tls" / "cert.pem").read_bytes())
    return tmp_path, cert


def test_files_and_modes(generated: tuple[Path, x509.Certificate]) -> None:
    data_dir, _ = generated
    assert stat.S_IMODE(os.stat(data_dir / "tls").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(data_dir / "tls" / "key.pem").st_mode) == 0o600
    assert sorted(os.listdir(data_dir / "tls")) == ["cert.pem", "key.pem"]


def test_leaf_not_ca(generated: tuple[Path, x509.Certificate]) -> None:
    _, cert = generated
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.key_cert_sign and not usage.crl_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.issuer == cert.subject


def test_names(generated: tuple[Path, x509.Certificate]) -> None:
    _, cert = generated
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = san.get_values_for_type(x509.DNSName)
    ips = san.get_values_for_type(x509.IPAddress)
    assert "localhost" in dns
    assert ipaddress.ip_address("127.0.0.1") in ips
    assert ipaddress.ip_address("::1") in ips
    for name in (socket.gethostname(), socket.getfqdn()):
        assert name.rstrip(".").lower() in dns


def test_validity(generated: tuple[Path, x509.Certificate]) -> None:
    _, cert = generated
    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_before_utc <= now
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert CERT_VALIDITY <= lifetime <= CERT_VALIDITY + datetime.timedelta(hours=1)
    assert lifetime <= datetime.timedelta(days=825, minutes=10)


def test_second_start_reuses_and_fingerprint_matches(tmp_path: Path) -> None:
    first = prepare_tls(str(tmp_path), None, None)
    second = prepare_tls(str(tmp_path), None, None)
    assert not second.generated
    assert first.fingerprint == second.fingerprint
    cert = x509.load_pem_x509_certificate(Path(first.cert_path).read_bytes())
    expected = cert.fingerprint(hashes.SHA256()).hex(":").upper()
    assert first.fingerprint == expected
    assert len(first.fingerprint.split(":")) == 32


def _handshake(server_context: SSL.Context, client_context: SSL.Context) -> SSL.Connection:
    """Run a TLS handshake between two in-memory connections; SSL.Error when it fails."""
    server = SSL.Connection(server_context, None)
    server.set_accept_state()
    client = SSL.Connection(client_context, None)
    client.set_connect_state()
    client.set_tlsext_host_name(b"localhost")
    done: set[str] = set()
    for _ in range(50):
        for name, conn in (("client", client), ("server", server)):
            try:
                conn.do_handshake()
                done.add(name)
            except SSL.WantReadError:
                pass
        for source, sink in ((client, server), (server, client)):
            with contextlib.suppress(SSL.WantReadError):
                sink.bio_write(source.bio_read(65536))
        if done == {"client", "server"}:
            return client
    raise AssertionError("handshake did not finish")


def _client(cert_path: str, oldest: int, newest: int) -> SSL.Context:
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_verify(SSL.VERIFY_PEER, lambda *args: bool(args[-1]))
    context.load_verify_locations(cert_path)
    context.set_min_proto_version(oldest)
    context.set_max_proto_version(newest)
    context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")  # let the *server* be the one to refuse
    return context


def test_clients_verify_it_for_localhost(tmp_path: Path) -> None:
    material = prepare_tls(str(tmp_path), None, None)
    client = _handshake(
        material.options.getContext(), _client(material.cert_path, 0, SSL.TLS1_3_VERSION)
    )
    verify_hostname(client, "localhost")
    verify_ip_address(client, "127.0.0.1")
    verify_ip_address(client, "::1")


def test_tls_1_1_refused(tmp_path: Path) -> None:
    material = prepare_tls(str(tmp_path), None, None)
    old_client = _client(material.cert_path, SSL.TLS1_VERSION, SSL.TLS1_1_VERSION)
    # Control: the same certificate, no version floor, OpenSSL's own bar lowered.
    permissive = SSL.Context(SSL.TLS_METHOD)
    permissive.use_certificate(
        x509.load_pem_x509_certificate(Path(material.cert_path).read_bytes())
    )
    permissive.use_privatekey(
        serialization.load_pem_private_key(Path(material.key_path).read_bytes(), None)  # type: ignore[arg-type]
    )
    permissive.set_min_proto_version(SSL.TLS1_VERSION)
    permissive.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    try:
        _handshake(permissive, old_client)
    except SSL.Error:
        pytest.skip("this OpenSSL build cannot speak TLS 1.1 at all")
    ours = material.options.getContext()
    ours.set_cipher_list(b"DEFAULT:@SECLEVEL=0")  # so only the version floor can refuse
    with pytest.raises(SSL.Error):
        _handshake(ours, old_client)


def test_given_chain_and_key(tmp_path: Path) -> None:
    cert_pem, key_pem = generate_self_signed(["mail.example.org"])
    other_pem, _ = generate_self_signed(["intermediate.example.org"])
    (tmp_path / "chain.pem").write_bytes(cert_pem + other_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    material = prepare_tls(
        str(tmp_path / "data"), str(tmp_path / "chain.pem"), str(tmp_path / "key.pem")
    )
    assert not material.generated
    assert not (tmp_path / "data" / "tls").exists()
    leaf = x509.load_pem_x509_certificate(cert_pem)
    assert material.fingerprint == leaf.fingerprint(hashes.SHA256()).hex(":").upper()


def test_key_mismatch(tmp_path: Path) -> None:
    cert_pem, _ = generate_self_signed(["a.example"])
    _, other_key = generate_self_signed(["b.example"])
    (tmp_path / "c.pem").write_bytes(cert_pem)
    (tmp_path / "k.pem").write_bytes(other_key)
    with pytest.raises(TLSError, match="is not the key of the certificate"):
        load_tls(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))


def test_bad_files(tmp_path: Path) -> None:
    cert_pem, key_pem = generate_self_signed(["a.example"])
    (tmp_path / "c.pem").write_bytes(cert_pem)
    (tmp_path / "k.pem").write_bytes(key_pem)
    (tmp_path / "junk").write_bytes(b"hello")
    with pytest.raises(TLSError, match=r"cannot read .*absent"):
        load_tls(str(tmp_path / "absent"), str(tmp_path / "k.pem"))
    with pytest.raises(TLSError, match="holds no PEM certificate"):
        load_tls(str(tmp_path / "junk"), str(tmp_path / "k.pem"))
    with pytest.raises(TLSError, match="no usable unencrypted PEM private key"):
        load_tls(str(tmp_path / "c.pem"), str(tmp_path / "junk"))
    encrypted = serialization.load_pem_private_key(key_pem, None).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (tmp_path / "enc.pem").write_bytes(encrypted)
    with pytest.raises(TLSError, match="no usable unencrypted"):
        load_tls(str(tmp_path / "c.pem"), str(tmp_path / "enc.pem"))


def test_names_filtering() -> None:
    cert_pem, _ = generate_self_signed(["localhost", "10.0.0.1", "bad name!", "Host.Example."])
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "host.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.1")]
