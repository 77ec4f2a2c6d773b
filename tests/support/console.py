"""The lab console as its clients reach it (issue #21): HTTPS on the API port, verified
against the inventory's own CA on this control node (ark_ops/pki.py), never unverified."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from ark_ops.lab.config import LabPaths

API_PORT = 8101
REDIRECT_PORT = 8100


def tls_dir(paths: LabPaths | None = None) -> Path:
    return (paths or LabPaths.default()).inventory / ".secrets" / "tls"


def fleet_ca(paths: LabPaths | None = None) -> Path:
    return tls_dir(paths) / "ca.crt"


def host_cert(name: str, paths: LabPaths | None = None) -> Path:
    return tls_dir(paths) / f"{name}.crt"


def console_url(address: str, port: int = API_PORT) -> str:
    return f"https://[{address}]:{port}" if ":" in address else f"https://{address}:{port}"


def verified() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(fleet_ca()))


def client(base: str, **kwargs) -> httpx.Client:
    return httpx.Client(base_url=base, verify=verified(), **kwargs)


def get(url: str, **kwargs) -> httpx.Response:
    return httpx.get(url, verify=verified(), **kwargs)
