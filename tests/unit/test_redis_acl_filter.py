"""SEC_01 (issue #19 §3): the deploy's Redis users come from the pipeline declaration
(plugins/filter/ark_redis_acl.py over ark_runtime/bus/acl.py), and its ACL file holds
SHA-256 hashes only, `default` off unless an older host still needs the shared password."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import given
from hypothesis import strategies as st

from ark_runtime import pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "filter"))
from ark_redis_acl import ark_redis_aclfile, ark_redis_users, ark_sentinel_users  # noqa: E402


@pytest.mark.parametrize("shards", [1, 2, 4])
def test_one_user_per_agent_instance_plus_the_api_and_the_exporter(shards: int) -> None:
    users = ark_redis_users(shards)
    assert users == [*pipeline.instances(shards), "api", "exporter"]
    assert len(set(users)) == len(users) and "admin" not in users and "default" not in users


def passwords(shards: int) -> dict[str, str]:
    return {u: f"pw-{u}-0123456789abcdef" for u in ark_redis_users(shards)}


def test_the_acl_file_has_hashes_never_a_password_and_default_off() -> None:
    pw = passwords(2)
    text = ark_redis_aclfile(pw, "admin-password-0123456789", "2")
    lines = text.splitlines()
    assert lines[0].startswith("user default off ")
    assert [line.split()[1] for line in lines] == ["default", *ark_redis_users(2), "admin"]
    for user, password in {**pw, "admin": "admin-password-0123456789"}.items():
        assert password not in text
        line = next(x for x in lines if x.split()[1] == user)
        assert f"#{hashlib.sha256(password.encode()).hexdigest()}" in line.split()


def test_during_an_upgrade_default_keeps_the_shared_password_only() -> None:
    text = ark_redis_aclfile(passwords(1), "admin-password-0123456789", 1,
                             "admin-password-0123456789")
    digest = hashlib.sha256(b"admin-password-0123456789").hexdigest()
    assert text.splitlines()[0] == f"user default on #{digest} ~* &* +@all"
    assert "admin-password-0123456789" not in text


def test_a_missing_password_is_named_by_user_and_shows_no_password() -> None:
    pw = passwords(1)
    del pw["hrm"]
    with pytest.raises(AnsibleFilterError) as info:
        ark_redis_aclfile(pw, "admin-password-0123456789", 2)
    message = str(info.value)
    assert "hrm" in message and "joey-1" in message
    assert not any(p in message for p in pw.values())


@given(st.one_of(st.text(max_size=20), st.integers(max_value=0)))
def test_a_bad_shard_count_is_refused_naming_it(value) -> None:
    try:
        ok = int(str(value)) >= 1
    except ValueError:
        ok = False
    if ok:
        assert ark_redis_users(value)
        return
    with pytest.raises(AnsibleFilterError, match="shard count"):
        ark_redis_users(value)


LINKS = {"replication": "pw-replication-0123456789", "sentinel": "pw-sentinel-0123456789ab"}


@pytest.mark.requirement("SEC_01")
def test_a_replicated_set_has_its_link_users_with_only_their_commands() -> None:
    """Issue #20: `replication` may only sync, `sentinel` only what Sentinel sends; neither
    reads or writes a key. Without their passwords (no replicas) neither exists."""
    assert "replication" not in ark_redis_aclfile(passwords(1), "admin-password-0123456789", 1)
    text = ark_redis_aclfile(passwords(1) | LINKS, "admin-password-0123456789", 1)
    rules = {line.split()[1]: line.split()[2:] for line in text.splitlines()}
    assert list(rules)[-3:] == ["replication", "sentinel", "admin"]
    assert [w for w in rules["replication"] if w.startswith("+")] == \
        ["+psync", "+replconf", "+ping"]
    for name in LINKS:
        assert not any(w.startswith(("~", "%", "+@")) for w in rules[name]), rules[name]
        assert LINKS[name] not in text
        assert f"#{hashlib.sha256(LINKS[name].encode()).hexdigest()}" in rules[name]


@pytest.mark.requirement("SEC_01")
def test_on_a_sentinel_a_component_may_only_ask_where_the_primary_is() -> None:
    text = ark_sentinel_users(passwords(2) | LINKS, "admin-password-0123456789", 2)
    rules = {line.split()[1]: line.split()[2:] for line in text.splitlines()}
    assert rules["default"][0] == "off"
    assert set(rules) == {"default", *ark_redis_users(2), "sentinel", "admin"}
    for user in ark_redis_users(2):
        granted = {w for w in rules[user] if w.startswith("+")}
        assert granted == {"+@connection", "+sentinel|get-master-addr-by-name",
                           "+sentinel|masters", "+sentinel|master", "+sentinel|slaves",
                           "+sentinel|replicas", "+sentinel|sentinels"}, user
    assert "pw-" not in text and "admin-password" not in text


def test_a_sentinel_without_the_sentinel_password_is_refused_naming_it() -> None:
    with pytest.raises(AnsibleFilterError, match="no password for the Redis user.*sentinel"):
        ark_sentinel_users(passwords(1), "admin-password-0123456789", 1)
