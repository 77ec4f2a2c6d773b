"""SEC_01/SEC_03, issue #17: one redaction module (ark_runtime/redact.py), one mask, one list
of what is secret (from the settings declaration), used by every redactor."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ark_runtime import redact
from ark_runtime.api import audit_hook
from ark_runtime.host.audit import log as audit
from ark_runtime.host.config import history as config_history
from ark_runtime.settings import VARIABLES

pytestmark = pytest.mark.requirement("SEC_01")

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("ark_runtime", "ark_ops", "plugins", "roles", "playbooks")
# Every mask string the project ever used: none may come back outside the one module.
MASKS = ("***", "<redacted>", "<masked>")


def _code_strings(text: str) -> list[str]:
    """String constants of a module, docstrings left out (they may describe the mask)."""
    tree = ast.parse(text)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) \
                and node.body and isinstance(node.body[0], ast.Expr) \
                and isinstance(node.body[0].value, ast.Constant):
            docstrings.add(id(node.body[0].value))
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and id(n) not in docstrings]


def _holds_a_mask(path: Path) -> bool:
    text = path.read_text(errors="replace")
    if path.suffix == ".py":
        return any(m in s for s in _code_strings(text) for m in MASKS)
    return any(m in text for m in MASKS)


def test_the_mask_is_written_in_exactly_one_product_file() -> None:
    files = [REPO / "tasks.py"] + [p for top in PRODUCT for p in (REPO / top).rglob("*")
                                   if p.is_file() and p.suffix in {".py", ".sh", ".yml", ".j2",
                                                                   ".html", ".js"}]
    holders = sorted(p.relative_to(REPO).as_posix() for p in files if _holds_a_mask(p))
    assert holders == ["ark_runtime/redact.py"]
    assert redact.MASK in MASKS


def test_the_scan_finds_a_mask_in_code_but_not_in_a_docstring() -> None:
    assert _code_strings('"""masks with ***"""\nX = "<masked>"\n') == ["<masked>"]


def test_the_secret_list_is_the_settings_declarations() -> None:
    declared = {v.name for v in VARIABLES.values() if v.sensitive}
    schema = yaml.safe_load((REPO / "ark_runtime/env.schema.yaml").read_text())["variables"]
    assert redact.SENSITIVE_VARIABLES == declared == {n for n, s in schema.items()
                                                        if s["sensitive"]}
    assert all(redact.is_secret_name(n) for n in declared)
    # Each non-URL secret's last word marks an unknown variable of that kind as secret.
    assert redact.is_secret_name("SOME_VENDOR_TOKEN") and redact.is_secret_name("X_API_KEY")
    assert not redact.is_secret_name("ARK_REDIS_HOST") and not redact.is_secret_name("unit")


# --- every old call site still redacts what it did ------------------------------------------


def test_the_api_audit_hook_masks_secret_arguments() -> None:
    out = audit_hook.redact({"password": "hunter2hunter2", "csrf_token": "abc", "unit": "x",
                             "note": "api_secret=s3cr3tvalue"})
    assert out == {"password": redact.MASK, "csrf_token": redact.MASK, "unit": "x",
                   "note": f"api_secret={redact.MASK}"}


def test_the_host_audit_masks_keys_assignments_and_env_values() -> None:
    env = {"ARK_REDIS_PASSWORD": "p" * 20, "PATH": "/usr/bin"}
    out = audit.redact({"args": ["--x", "see " + "p" * 20], "token": "t", "path": "/usr/bin"},
                       env)
    assert out == {"args": ["--x", f"see {redact.MASK}"], "token": redact.MASK,
                   "path": "/usr/bin"}


def test_config_history_masks_the_redis_password_directives() -> None:
    conf = b"port 6379\nrequirepass s3cret-pw\nuser ark on >acl-pw ~* +@all\n"
    out = config_history.mask_secrets("etc/redis/ark.conf", conf).decode()
    assert "s3cret-pw" not in out and "acl-pw" not in out
    assert f"requirepass {redact.MASK}" in out and "port 6379" in out
    assert config_history.mask_secrets("etc/logrotate.d/ark", conf) == conf


def test_the_dr_bundle_masks_sensitive_and_unknown_env_values() -> None:
    from ark_runtime.host.dr.bundle import redact_env

    text, hidden = redact_env("ARK_REDIS_PASSWORD=" + "x" * 20 + "\nARK_API_PORT=8101\n"
                              "MYSTERY=1\n")
    assert hidden == ["ARK_REDIS_PASSWORD", "MYSTERY"]
    assert f"ARK_REDIS_PASSWORD={redact.MASK}" in text and "ARK_API_PORT=8101" in text


# --- property: a secret never survives, whatever carries it ---------------------------------

SECRET = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                 min_size=redact.MIN_VALUE, max_size=40).filter(
    lambda s: s.strip() == s and s.strip(redact.MASK[0]) and " " not in s)
NAMES = st.sampled_from(sorted(redact.SENSITIVE_VARIABLES)
                        + ["password", "db_pass", "Session-Cookie", "x_auth", "vendor_token"])


def _places(name: str, secret: str) -> list:
    """Every structure a redactor accepts, the secret somewhere inside it."""
    return [
        {name: secret},
        {"outer": {"inner": [{name: secret}]}},
        [("ok", {name: secret})],
        f"{name}={secret}",
        f"run --flag {name}: {secret} now",
        {"detail": f"failed with {name}={secret}"},
    ]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(name=NAMES, secret=SECRET, noise=st.text(max_size=20))
def test_a_secret_never_survives_redaction(name: str, secret: str, noise: str) -> None:
    assume(secret not in noise and secret not in name and secret not in redact.MASK)
    for place in _places(name, secret):
        out = json.dumps(redact.redact(place, max_text=None), ensure_ascii=False)
        assert secret not in out, place
    # A secret variable's value in free text, under any name (the env tells which).
    env = {name.upper(): secret}
    for form in redact.forms(secret):
        out = redact.redact({"line": f"{noise}{form}{noise}"}, env, max_text=None)["line"]
        assert secret not in out and form not in out
    # Env files and Redis configs.
    redis = redact.mask_redis_secrets(f"requirepass {secret}\nmasterauth {secret}\n")
    assert secret not in redis


@given(secret=SECRET, text=st.text(max_size=60))
def test_the_redactor_leaves_no_fragment_of_a_secret(secret: str, text: str) -> None:
    red = redact.Redactor([secret])
    out = red(text[: len(text) // 2] + secret + text[len(text) // 2:])
    assert secret not in out and redact.MASK in out
