"""Issue #19 §4: the control node's CA (ark_ops/pki.py) and its Ansible lookup."""

from __future__ import annotations

import datetime as dt
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from ark_ops import pki
from ark_ops.pki import CertificateAuthority, PkiError, days_left

SUBJECTS = ["127.0.0.1", "10.213.0.11", "ark-lab-1", "localhost"]


def _sans(pem: str) -> set[str]:
    cert = x509.load_pem_x509_certificate(pem.encode())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(g.value) for g in ext}


def test_a_host_certificate_is_signed_by_the_ca_names_the_host_and_serves_tls(tmp_path):
    issued = CertificateAuthority(tmp_path / "tls").issue("ark-lab-1", SUBJECTS)
    assert issued.changed
    assert _sans(issued.cert_pem) == set(SUBJECTS)
    cert = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(issued.ca_pem.encode()))
    # Python's own TLS stack takes the pair and trusts the CA (what redis-py does).
    (tmp_path / "h.crt").write_text(issued.cert_pem)
    (tmp_path / "h.key").write_text(issued.key_pem)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=issued.ca_pem)
    ctx.load_cert_chain(tmp_path / "h.crt", tmp_path / "h.key")
    assert 390 < days_left(issued.cert_pem) <= pki.HOST_DAYS


def test_keys_are_private_and_the_ca_key_stays_in_its_directory(tmp_path):
    ca = CertificateAuthority(tmp_path / "tls")
    ca.issue("ark-lab-1", SUBJECTS)
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    for key in ("ca.key", "ark-lab-1.key"):
        assert stat.S_IMODE((tmp_path / "tls" / key).stat().st_mode) == 0o600, key


def test_a_second_deploy_gets_the_same_certificate(tmp_path):
    ca = CertificateAuthority(tmp_path / "tls")
    first = ca.issue("ark-lab-1", SUBJECTS)
    again = ca.issue("ark-lab-1", list(reversed(SUBJECTS)))
    assert not again.changed
    assert (again.cert_pem, again.key_pem) == (first.cert_pem, first.key_pem)


def test_new_names_a_new_ca_or_the_renewal_window_issue_a_new_one(tmp_path, monkeypatch):
    ca = CertificateAuthority(tmp_path / "tls")
    first = ca.issue("ark-lab-1", SUBJECTS)
    moved = ca.issue("ark-lab-1", [*SUBJECTS, "10.213.0.99"])
    assert moved.changed and "10.213.0.99" in _sans(moved.cert_pem)
    # Inside the renewal window: a year later, 30 days to go.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=pki.HOST_DAYS - 20)
    monkeypatch.setattr(pki, "_now", lambda: later)
    renewed = ca.issue("ark-lab-1", [*SUBJECTS, "10.213.0.99"])
    assert renewed.changed and renewed.cert_pem != moved.cert_pem
    monkeypatch.undo()
    # Another CA's certificate on file (the CA was replaced): issued anew by this one.
    (tmp_path / "tls" / "ca.key").unlink()
    (tmp_path / "tls" / "ca.crt").unlink()
    replaced = ca.issue("ark-lab-1", [*SUBJECTS, "10.213.0.99"])
    assert replaced.changed and replaced.ca_pem != first.ca_pem
    x509.load_pem_x509_certificate(replaced.cert_pem.encode()).verify_directly_issued_by(
        x509.load_pem_x509_certificate(replaced.ca_pem.encode()))


@settings(max_examples=60, deadline=None)
@given(bad=st.text(min_size=1, max_size=40).filter(
    lambda t: not pki._NAME.fullmatch(t.strip()) and "\x00" not in t))
def test_a_subject_that_is_neither_address_nor_name_is_refused_naming_it(tmp_path_factory, bad):
    import ipaddress
    try:
        ipaddress.ip_address(bad.strip())
        return  # an address after all
    except ValueError:
        pass
    directory = tmp_path_factory.mktemp("tls")
    with pytest.raises(PkiError, match="neither an IP address nor a host name"):
        CertificateAuthority(directory).issue("ark-lab-1", ["127.0.0.1", bad])
    assert not (directory / "ark-lab-1.crt").exists()  # nothing half written


def test_the_lookup_returns_pem_and_refuses_without_a_directory(tmp_path):
    from ansible.errors import AnsibleLookupError

    from plugins.lookup.ark_tls import LookupModule

    [got] = LookupModule().run(["ark-lab-2"], dir=str(tmp_path / "tls"), subjects=SUBJECTS)
    assert got["cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" in got["key"] and got["changed"] is True
    with pytest.raises(AnsibleLookupError, match="dir="):
        LookupModule().run(["ark-lab-2"], subjects=SUBJECTS)
    with pytest.raises(AnsibleLookupError, match="not a host name"):
        LookupModule().run(["bad name"], dir=str(tmp_path / "tls"), subjects=SUBJECTS)


def test_days_left_is_negative_once_expired(tmp_path):
    issued = CertificateAuthority(Path(tmp_path) / "tls").issue("h", ["127.0.0.1"])
    after = dt.datetime.now(dt.UTC) + dt.timedelta(days=pki.HOST_DAYS + 1)
    assert days_left(issued.cert_pem, now=after) < 0
