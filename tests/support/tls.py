"""Certificates made on the spot for TLS tests: a CA, a server certificate for 127.0.0.1/localhost,
client certificates signed by that CA, and a stranger's certificate signed by another CA.

    pki = make_pki()
    pki.ssl_config_text(client_verify=True)    # text-format SSLConfig for --ssl_config_file
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem_cert(cert) -> str:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _certificate(subject: str, key, issuer_name, issuer_key, *, ca: bool, server: bool = False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


@dataclasses.dataclass(frozen=True)
class Pki:
    """PEM texts: ca_cert, server_key/server_cert, client_key/client_cert, stranger_key/stranger_cert."""

    ca_cert: str
    server_key: str
    server_cert: str
    client_key: str
    client_cert: str
    stranger_key: str
    stranger_cert: str

    def ssl_config_text(self, *, client_verify: bool = False, key: str | None = None, cert: str | None = None) -> str:
        """A text-format tensorflow.serving.SSLConfig (the PEM texts inline, as TF Serving reads them)."""
        fields = [
            f"server_key: {_quote(self.server_key if key is None else key)}",
            f"server_cert: {_quote(self.server_cert if cert is None else cert)}",
            f"custom_ca: {_quote(self.ca_cert)}",
            f"client_verify: {'true' if client_verify else 'false'}",
        ]
        return "\n".join(fields) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def make_pki() -> Pki:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    ca_key = _key()
    ca = _certificate("tfstack test CA", ca_key, None, None, ca=True)
    server_key = _key()
    server = _certificate("localhost", server_key, ca.subject, ca_key, ca=False, server=True)
    client_key = _key()
    client = _certificate("test client", client_key, ca.subject, ca_key, ca=False)
    other_ca_key = _key()
    other_ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone else's CA")])
    stranger_key = _key()
    stranger = _certificate("stranger", stranger_key, other_ca_name, other_ca_key, ca=False)
    return Pki(
        ca_cert=_pem_cert(ca), server_key=_pem_key(server_key), server_cert=_pem_cert(server),
        client_key=_pem_key(client_key), client_cert=_pem_cert(client),
        stranger_key=_pem_key(stranger_key), stranger_cert=_pem_cert(stranger),
    )
