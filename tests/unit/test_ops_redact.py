"""ark_ops.redact: every known secret value is masked before a report is written."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ark_ops.redact import MASK, Redactor, env_file_secrets, inventory_secrets

pytestmark = pytest.mark.requirement("SEC_01")

secret_text = st.text(min_size=1, max_size=24).filter(lambda s: s.strip("*"))
filler = st.text(max_size=40)


@settings(max_examples=300, deadline=None)
@given(secrets=st.lists(secret_text, min_size=1, max_size=5), pieces=st.lists(filler, max_size=6),
       data=st.data())
def test_secrets_embedded_in_random_text_are_always_removed(secrets, pieces, data):
    # Interleave every secret with random text, some more than once.
    parts: list[str] = []
    for piece in pieces:
        parts.append(piece)
        parts.append(data.draw(st.sampled_from(secrets)))
    parts += secrets
    text = "".join(parts)
    out = Redactor(secrets)(text)
    for secret in secrets:
        assert secret not in out


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200), secrets=st.lists(secret_text, max_size=4))
def test_text_without_the_secrets_is_unchanged(text, secrets):
    secrets = [s for s in secrets if s not in text and s not in MASK]
    redactor = Redactor(secrets)
    if not any(f in text for f in redactor.secrets):
        assert redactor(text) == text


def test_overlapping_secrets_leave_no_fragment():
    # "abcd" and "cdef" overlap in "abcdef": masking one first would leave "ef" or "ab".
    assert Redactor(["abcd", "cdef"])("x abcdef y") == f"x {MASK} y"


def test_a_secret_inside_another_is_masked_with_it():
    assert Redactor(["pass", "password123"])("pw=password123 p=pass") == f"pw={MASK} p={MASK}"


def test_a_mask_next_to_leftovers_cannot_spell_a_secret():
    # After "xa" is masked in "xaa" the text reads "***a", which holds the secret "**a".
    out = Redactor(["xa", "**a"])("xaa")
    assert "**a" not in out.replace(MASK, "") and "xa" not in out
    assert set(out) == {"*"}


def test_escaped_forms_of_a_secret_are_masked():
    secret = 'p<a"s&s'
    red = Redactor([secret])
    assert secret not in red(f"raw {secret}")
    assert "p&lt;a&quot;s&amp;s" not in red("xml p&lt;a&quot;s&amp;s")
    assert 'p<a\\"s&s' not in red('json "p<a\\"s&s"')


def test_values_made_of_mask_characters_are_ignored():
    red = Redactor(["***", ""])
    assert not red
    assert red("a *** b") == "a *** b"


def test_inventory_secrets_are_read_from_the_secrets_folder(tmp_path: Path):
    (tmp_path / ".secrets").mkdir()
    (tmp_path / ".secrets" / "redis_password").write_text("Abc123secret\n")
    (tmp_path / ".secrets" / "api_secret").write_text("hashme salt=s4ltv4lue\n")
    values = inventory_secrets(tmp_path / "hosts.yml")
    assert {"Abc123secret", "hashme", "s4ltv4lue"} <= set(values)


def test_inventory_without_secrets_folder_has_none(tmp_path: Path):
    assert inventory_secrets(tmp_path / "hosts.yml") == []


def test_env_file_secrets_follow_the_schema_sensitivity():
    text = ("# managed\nARK_ENVIRONMENT=\"production\"\nARK_REDIS_PASSWORD=\"Zx9redis\"\n"
            "ARK_API_PORT=8101\nARK_API_SECRET=plainsecret\nMYSTERY_TOKEN=\"tok\\\"en\"\n")
    values = env_file_secrets(text)
    assert "Zx9redis" in values and "plainsecret" in values
    assert 'tok"en' in values  # a name that says secret, though the schema does not know it
    assert "production" not in values and "8101" not in values


COMPLIANCE = Path(__file__).resolve().parents[1] / "compliance"
SECRETISH = re.compile(r"password|secret|token|credential|_key\\b", re.IGNORECASE)
HOST_COMMANDS = {"run", "check_output", "run_test", "run_expect"}


def secretish_values(tree: ast.AST) -> list[tuple[int, str]]:
    """Python expressions that put a secret-named value into a string or a host command."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FormattedValue):
            exprs = [node.value]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) in HOST_COMMANDS:
            exprs = list(node.args[1:])
        else:
            continue
        found += [(node.lineno, ast.unparse(e)) for e in exprs if SECRETISH.search(ast.unparse(e))]
    return found


def test_no_compliance_check_puts_a_secret_value_on_a_command_line():
    # The old Redis check ran f"REDISCLI_AUTH={quote(password)} redis-cli ...": testinfra's
    # CommandResult carried the password into the console and the JUnit XML.
    old = ast.parse('host.check_output(f"REDISCLI_AUTH={quote(password)} redis-cli ping")')
    assert secretish_values(old)
    for path in sorted(COMPLIANCE.glob("*.py")):
        leaks = secretish_values(ast.parse(path.read_text()))
        assert not leaks, f"{path.name}: a secret value reaches a command or message: {leaks}"
