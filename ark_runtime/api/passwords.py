"""Operator password hashes: scrypt (memory-hard, in the standard library) with a per-user
salt. Only these hashes reach a host; `ark api hash-password` makes one from stdin.

Format: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`` — parameters travel with the hash so
they can be raised later without invalidating old accounts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

N, R, P = 2**14, 8, 1  # 16 MiB per hash: costly to brute-force, ~50 ms to check
DKLEN = 32
PREFIX = "scrypt"


class HashFormatError(ValueError):
    pass


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P,
                  salt: bytes | None = None) -> str:
    if not password:
        raise ValueError("password: must not be empty")
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=DKLEN,
                            maxmem=256 * 1024 * 1024)
    return f"{PREFIX}${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def parse(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != PREFIX:
        raise HashFormatError("password_hash: expected scrypt$n$r$p$salt$hash")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, digest = base64.b64decode(parts[4], validate=True), \
            base64.b64decode(parts[5], validate=True)
    except ValueError as exc:
        raise HashFormatError(f"password_hash: {exc}") from None
    if n < 2**10 or n & (n - 1) or not (1 <= r <= 64) or not (1 <= p <= 16) or len(salt) < 8:
        raise HashFormatError("password_hash: scrypt parameters out of range")
    return n, r, p, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    n, r, p, salt, digest = parse(encoded)
    candidate = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(digest),
                               maxmem=256 * 1024 * 1024)
    return hmac.compare_digest(candidate, digest)


# Verifying against this when the user does not exist keeps the timing the same, so a
# login attempt cannot tell "no such operator" from "wrong password".
DUMMY_HASH = hash_password("not-a-real-password", salt=b"\0" * 16)
