"""Certificates made at test time: a trustme CA, server certificates, and client certificates
with URI SANs (SPIFFE ids), which trustme cannot issue, signed by the same CA."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pem:
    """A certificate chain and key, in memory and as files."""

    cert: bytes
    key: bytes
    cert_file: Path
    key_file: Path


def write(directory: Path, name: str, cert: bytes, key: bytes) -> Pem:
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert_file.write_bytes(cert)
    key_file.write_bytes(key)
    key_file.chmod(0o600)
    return Pem(cert, key, cert_file, key_file)


def server_cert(
    ca: trustme.CA,
    directory: Path,
    name: str = "server",
    not_after: datetime.datetime | None = None,
) -> Pem:
    """A certificate for 127.0.0.1 and localhost (what the tests dial)."""
    issued = ca.issue_cert("127.0.0.1", "localhost", "::1", not_after=not_after)
    chain = b"".join(blob.bytes() for blob in issued.cert_chain_pems)
    return write(directory, name, chain, issued.private_key_pem.bytes())


def client_cert(
    ca: trustme.CA,
    directory: Path,
    name: str,
    uris: tuple[str, ...] = (),
    dns: tuple[str, ...] = (),
    common_name: str = "",
) -> Pem:
    """A client certificate with exactly these URI and DNS SANs, signed by ``ca``."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    sans += [x509.DNSName(d) for d in dns]
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or f"client {name}")])
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return write(directory, name, cert.public_bytes(serialization.Encoding.PEM), key_pem)


def ca_file(ca: trustme.CA, directory: Path, name: str = "ca") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.pem"
    path.write_bytes(ca.cert_pem.bytes())
    return path
