"""The control node's small CA (issue #19 §4): one per inventory, in `.secrets/tls/`.

It signs one certificate per host, good as a TLS server (Redis) and as a client (every ARK
unit that reaches Redis), with the host's addresses and name as subject alternative names.
Certificates are re-issued only when they must be: missing, not signed by this CA, other
names than asked, or fewer than `renew_days` days left - so a deploy that changes nothing
issues nothing (`changed=0`), and one run inside the renewal window renews.

Keys are EC P-256, written 0600 in a 0700 directory; the CA key never leaves the control
node. One lock per directory: Ansible's forks ask for several hosts' certificates at once.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ark_ops.errors import OpsError
from ark_runtime.host.atomic import atomic_write_bytes

CA_DAYS = 3650
HOST_DAYS = 397  # what public CAs may issue at most: a yearly renewal is routine
RENEW_DAYS = 30
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


class PkiError(OpsError):
    exit_code = 78  # EX_CONFIG: a bad name or address in the inventory


@dataclass(frozen=True)
class Issued:
    cert_pem: str
    key_pem: str
    ca_pem: str
    not_after: dt.datetime
    changed: bool

    def as_dict(self) -> dict[str, object]:
        return {"cert": self.cert_pem, "key": self.key_pem, "ca": self.ca_pem,
                "not_after": self.not_after.isoformat(), "changed": self.changed}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def san_of(subjects: list[str]) -> list[x509.GeneralName]:
    """The subject alternative names: each subject an IP address or a host name; anything
    else is refused, naming it."""
    out: list[x509.GeneralName] = []
    for value in subjects:
        text = str(value).strip()
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(text)))
            continue
        except ValueError:
            pass
        if not _NAME.fullmatch(text):
            raise PkiError(f"TLS certificate: {text[:80]!r} is neither an IP address nor a "
                           "host name (letters, digits, '.', '_', '-')")
        out.append(x509.DNSName(text))
    if not out:
        raise PkiError("TLS certificate: give at least one address or name")
    return out


def _sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(g.value) for g in ext}


class CertificateAuthority:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    @property
    def ca_key_path(self) -> Path:
        return self.dir / "ca.key"

    @property
    def ca_cert_path(self) -> Path:
        return self.dir / "ca.crt"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.dir / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _ensure_ca(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        if self.ca_key_path.exists() and self.ca_cert_path.exists():
            key = serialization.load_pem_private_key(self.ca_key_path.read_bytes(), None)
            cert = x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise PkiError(f"{self.ca_key_path}: not an EC key")
            return key, cert
        key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                             f"ARK fleet CA ({self.dir.parent.parent.name})")])
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                             False, False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        atomic_write_bytes(self.ca_key_path, _key_pem(key), mode=0o600)
        atomic_write_bytes(self.ca_cert_path, _cert_pem(cert))
        return key, cert

    def _current(self, host: str, ca: x509.Certificate, wanted: set[str],
                 renew_days: int) -> tuple[x509.Certificate, bytes] | None:
        cert_path, key_path = self.dir / f"{host}.crt", self.dir / f"{host}.key"
        if not (cert_path.exists() and key_path.exists()):
            return None
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):  # another CA's, or altered
            return None
        left = cert.not_valid_after_utc - _now()
        if _sans(cert) != wanted or left < dt.timedelta(days=renew_days):
            return None
        return cert, key_path.read_bytes()

    def issue(self, host: str, subjects: list[str], renew_days: int = RENEW_DAYS) -> Issued:
        """`host`'s certificate: the one on file when still good, else a new one."""
        if not _NAME.fullmatch(host or ""):
            raise PkiError(f"TLS certificate: {str(host)[:80]!r} is not a host name")
        sans = san_of(list(dict.fromkeys(subjects)))
        wanted = {str(g.value) for g in sans}
        with self._locked():
            ca_key, ca = self._ensure_ca()
            ca_pem = _cert_pem(ca).decode()
            current = self._current(host, ca, wanted, renew_days)
            if current is not None:
                cert, key_pem = current
                return Issued(_cert_pem(cert).decode(), key_pem.decode(), ca_pem,
                              cert.not_valid_after_utc, changed=False)
            key = _new_key()
            now = _now()
            cert = (x509.CertificateBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
                    .issuer_name(ca.subject).public_key(key.public_key())
                    .serial_number(x509.random_serial_number())
                    .not_valid_before(now - dt.timedelta(minutes=5))
                    .not_valid_after(now + dt.timedelta(days=HOST_DAYS))
                    .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                   critical=True)
                    .add_extension(x509.KeyUsage(True, False, True, False, True, False, False,
                                                 False, False), critical=True)
                    .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                          ExtendedKeyUsageOID.CLIENT_AUTH]),
                                   critical=False)
                    .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                    .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                        ca_key.public_key()), critical=False)
                    .sign(ca_key, hashes.SHA256()))
            key_pem = _key_pem(key)
            atomic_write_bytes(self.dir / f"{host}.key", key_pem, mode=0o600)
            atomic_write_bytes(self.dir / f"{host}.crt", _cert_pem(cert))
            return Issued(_cert_pem(cert).decode(), key_pem.decode(), ca_pem,
                          cert.not_valid_after_utc, changed=True)


def days_left(cert_pem: str | bytes, now: dt.datetime | None = None) -> float:
    """Days until a PEM certificate expires (negative once it has)."""
    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    cert = x509.load_pem_x509_certificate(data)
    return (cert.not_valid_after_utc - (now or _now())).total_seconds() / 86400
