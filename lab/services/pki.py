"""The lab's certificate authority: real TLS for `turns:` and `wss:` inside a lab.

Every lab has its own CA (``<dir>/ca.pem``), made when first asked for and kept in the
lab's run directory, so it is removed with the lab. Servers get certificates for their
host names and lab addresses; lab clients (the emulated softphone, coturn's test tools,
a browser) trust ``ca.pem`` and nothing else, exactly as a real client trusts a public CA.

Keys are ECDSA P-256: quick to make (a lab build must not wait on RSA key generation)
and accepted by OpenSSL, coturn and Chromium alike.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True)
class Issued:
    """A server certificate and its key, as PEM files."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


class LabCA:
    """A CA whose certificate and key live in ``directory`` (0700)."""

    def __init__(self, directory: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate):
        self.dir = directory
        self._key = key
        self._cert = cert

    @property
    def cert_path(self) -> Path:
        return self.dir / "ca.pem"

    @classmethod
    def load_or_create(cls, directory: str | Path, name: str = "icelab") -> "LabCA":
        d = Path(directory)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        cert_p, key_p = d / "ca.pem", d / "ca.key"
        if cert_p.exists() and key_p.exists():
            key = serialization.load_pem_private_key(key_p.read_bytes(), None)
            cert = x509.load_pem_x509_certificate(cert_p.read_bytes())
            return cls(d, key, cert)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "icelab"),
                             x509.NameAttribute(NameOID.COMMON_NAME, f"icelab lab CA ({name})")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(subject).issuer_name(subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + VALIDITY)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        _write(key_p, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
        _write(cert_p, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        return cls(d, key, cert)

    def issue(self, name: str, dns: list[str] = (), ips: list[str] = ()) -> Issued:
        """A server certificate for ``name`` valid for the given DNS names and addresses
        (written to ``<dir>/<name>.pem`` and ``<name>.key``; issued again on every call)."""
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in (dns or [name])]
        sans += [x509.IPAddress(ipaddress.ip_address(str(a))) for a in ips]
        # the chain (leaf then CA) so that servers send the whole path
        return self._leaf(name, (list(dns) or [name])[0], ExtendedKeyUsageOID.SERVER_AUTH,
                          [x509.SubjectAlternativeName(sans)], chain=True)

    def issue_client(self, name: str) -> Issued:
        """A client certificate whose common name is ``name`` (clientAuth EKU), for lab
        clients that prove who they are with TLS, such as an OpenVPN client. Written to
        ``<dir>/<name>.pem`` and ``<name>.key``; issued again on every call."""
        usage = x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                              content_commitment=False, key_encipherment=False, data_encipherment=False,
                              key_agreement=True, encipher_only=False, decipher_only=False)
        return self._leaf(name, name, ExtendedKeyUsageOID.CLIENT_AUTH, [usage], critical=True, chain=False)

    def _leaf(self, name: str, common_name: str, eku, extensions: list, critical: bool = False,
              chain: bool = False) -> Issued:
        """A certificate signed by this CA, with its key, as ``<dir>/<name>.pem`` / ``.key``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                   .issuer_name(self._cert.subject)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + VALIDITY)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                                  critical=False))
        for ext in extensions:
            builder = builder.add_extension(ext, critical=critical)
        cert = builder.sign(self._key, hashes.SHA256())
        cert_p, key_p = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        _write(key_p, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
        pem = cert.public_bytes(serialization.Encoding.PEM)
        _write(cert_p, pem + (self._cert.public_bytes(serialization.Encoding.PEM) if chain else b""), mode=0o644)
        return Issued(cert_p, key_p)

    def client_context(self) -> ssl.SSLContext:
        """What a lab client uses: trusts this CA only, checks host names."""
        ctx = ssl.create_default_context(cafile=str(self.cert_path))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)
