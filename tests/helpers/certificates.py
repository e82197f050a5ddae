"""Test certificates: a CA, a server certificate for 127.0.0.1 and triton.test, a client one, an unrelated CA."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path


def write_certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and triton.test, a client certificate, and an unrelated CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    files: dict[str, Path] = {}

    def write(name: str, data: bytes) -> None:
        files[name] = directory / f"{name}.pem"
        files[name].write_bytes(data)

    def key_pem(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def issue(subject: str, key, issuer_name, issuer_key, *, ca: bool, sans=(), usage=None) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def new_ca(name: str):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue(name, key, None, key, ca=True)
        write(name, cert.public_bytes(serialization.Encoding.PEM))
        return cert, key

    ca, ca_key = new_ca("ca")
    new_ca("other_ca")
    sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("triton.test")]
    for name, san, usage in (
        ("server", sans, ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", (), ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue(name, key, ca.subject, ca_key, ca=False, sans=san, usage=usage)
        write(name, cert.public_bytes(serialization.Encoding.PEM))
        write(f"{name}_key", key_pem(key))
    return files
