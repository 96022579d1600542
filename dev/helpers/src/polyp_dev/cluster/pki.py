"""The cluster's certificates and tokens: a CA, the API server's serving and kubelet-client certificates, the
service-account key pair."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# The API server answers on loopback and, for clients that think they are in a pod, as the
# `kubernetes` Service (first address of the service range).
API_SERVER_NAMES = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
]
API_SERVER_IPS = ["127.0.0.1", "10.96.0.1"]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer_cert: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey | None,
    ca: bool,
    names: Sequence[str] = (),
    ips: Sequence[str] = (),
) -> x509.Certificate:
    """Self-signed without an issuer."""
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names or ips:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            ),
            critical=False,
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def ensure_pki(pki: Path) -> None:
    """Create what is missing; a cluster restarted on the same state keeps its CA and tokens."""
    pki.mkdir(parents=True, exist_ok=True)
    if not (pki / "ca.crt").exists():
        ca_key = _key()
        ca = _certificate("polyp-local-ca", ca_key, None, None, ca=True)
        _write_key(pki / "ca.key", ca_key)
        (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        server_key = _key()
        server = _certificate("kube-apiserver", server_key, ca, ca_key, ca=False, names=API_SERVER_NAMES, ips=API_SERVER_IPS)
        _write_key(pki / "apiserver.key", server_key)
        (pki / "apiserver.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    if not (pki / "apiserver-kubelet-client.crt").exists():
        # What the API server shows a real node's kubelet (logs, exec, port-forward); the kubelet trusts the CA.
        issuer_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
        issuer = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
        assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
        client_key = _key()
        client = _certificate("kube-apiserver-kubelet-client", client_key, issuer, issuer_key, ca=False)
        _write_key(pki / "apiserver-kubelet-client.key", client_key)
        (pki / "apiserver-kubelet-client.crt").write_bytes(client.public_bytes(serialization.Encoding.PEM))
    if not (pki / "sa.key").exists():
        sa_key = _key()
        _write_key(pki / "sa.key", sa_key)
        (pki / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    if not (pki / "tokens.csv").exists():
        # Static bearer token for the cluster admin (system:masters), read by --token-auth-file.
        (pki / "tokens.csv").write_text(f"{secrets.token_hex(24)},polyp-admin,polyp-admin,system:masters\n")
        (pki / "tokens.csv").chmod(0o600)


def admin_token(pki: Path) -> str:
    return (pki / "tokens.csv").read_text().split(",", 1)[0]
