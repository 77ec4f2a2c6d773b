"""Issue #21: where the console's certificate comes from (the unit's credentials first, then
ARK_API_TLS_DIR), and that the redirect port exists only with HTTPS; bad values named."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ark_runtime.config import API_TLS_CREDENTIALS, ApiTls, api_settings
from ark_runtime.settings import SettingsError


def test_the_units_credentials_come_before_the_directory(tmp_path, monkeypatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    for name in API_TLS_CREDENTIALS.values():
        (creds / name).write_text("x")
    assert ApiTls.find("/etc/ark/tls", str(creds)) == ApiTls(
        cert=str(creds / "api-tls-cert"), key=str(creds / "api-tls-key"))
    assert ApiTls.find("/etc/ark/tls", None) == ApiTls("/etc/ark/tls/host.crt",
                                                       "/etc/ark/tls/host.key")
    assert ApiTls.find(None, None) is None
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert api_settings({"ARK_API_REDIRECT_PORT": "8100"}).tls.cert.endswith("api-tls-cert")


def test_no_redirect_port_without_https(monkeypatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    plain = api_settings({"ARK_API_REDIRECT_PORT": "8100"})
    assert plain.tls is None and plain.redirect_port == 0
    https = api_settings({"ARK_API_REDIRECT_PORT": "8100", "ARK_API_TLS_DIR": "/etc/ark/tls"})
    assert https.redirect_port == 8100 and https.tls is not None


@given(st.one_of(st.integers(max_value=-1), st.integers(min_value=65536),
                 st.sampled_from(["http", "80x", "8 0"])))
def test_a_bad_redirect_port_is_refused_naming_it(value) -> None:
    with pytest.raises(SettingsError, match="ARK_API_REDIRECT_PORT"):
        api_settings({"ARK_API_REDIRECT_PORT": str(value)})
