"""HTTPS for the tracking server: a self-signed certificate for 127.0.0.1 (`cryptography`), and the
uvicorn options that make `mlflow server` terminate TLS itself."""

from __future__ import annotations

import datetime
import ipaddress
import shlex
from pathlib import Path

from raymlops.core.errors import UserError

CERT_ENV = "MLFLOW_TRACKING_SERVER_CERT_PATH"  # the CA bundle MLflow's client (and check_reachable) verify against


def self_signed(folder: Path, host: str = "127.0.0.1", days: int = 365) -> tuple[Path, Path]:
    """Write <folder>/tls/server.crt and server.key (kept if present); the certificate is its own CA,
    so clients point MLFLOW_TRACKING_SERVER_CERT_PATH at server.crt."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = folder / "tls"
    cert_path, key_path = out / "server.crt", out / "server.key"
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"raymlops tracking server {host}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def uvicorn_opts(cert: str, key: str) -> str:
    """`mlflow server --uvicorn-opts`: uvicorn (MLflow 3.17's default server) serves TLS with these."""
    for label, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not Path(path).is_file():
            raise UserError(
                f"{label} {path} is not a file. Pass a PEM file, or use --tls-self-signed (make mlflow-server TLS=1)."
            )
    return f"--ssl-certfile {shlex.quote(str(Path(cert).resolve()))} --ssl-keyfile {shlex.quote(str(Path(key).resolve()))}"
