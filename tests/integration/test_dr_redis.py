"""Issue #19 §5 (REC_03): Redis in the DR bundle, with real redis-servers started from the
ark_redis role's own config (AOF on, as deployed: tests/integration/deployed_redis.py).

Host A's Redis holds streams with consumer groups (some entries pending); its bundle carries
an RDB saved at bundle time, listed in the manifest with its sha256 like every member, and the
control node's signature covers it. Restored onto host B — a Redis with other data — B comes
back with A's streams, lengths and groups, and keeps them across a kill -9 (the AOF was
rewritten from the dump, not left empty). A tampered dump is refused before anything is
written."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployed_redis import DeployedRedis

from ark_ops.fleet.dr_sign import SignatureRefused, sign_bundle, verify_signature
from ark_runtime.host.dr.bundle import create_bundle
from ark_runtime.host.dr.format import BundleError, Sources
from ark_runtime.host.dr.redis_dump import (
    PRE_RESTORE_SUFFIX,
    REDIS_MEMBER,
    ServiceControl,
    summarize,
)
from ark_runtime.host.dr.restore import restore_bundle, verify_bundle
from tests.unit.test_dr import populate, state_of

pytestmark = pytest.mark.requirement("REC_03")


def _fill_bus(server: DeployedRedis, n: int, tag: str) -> None:
    r = server.server.client()
    for agent in ("kyle", "joey", "kenny"):
        stream = f"ark:stream:{agent}"
        for i in range(n):
            r.xadd(stream, {"n": str(i), "from": tag})
        r.xgroup_create(stream, agent, id="0")
        got = r.xreadgroup(agent, f"{agent}@{tag}", {stream: ">"}, count=n // 2)
        ids = [mid for _, entries in got for mid, _ in entries]
        r.xack(stream, agent, *ids[: len(ids) // 2])  # the rest stays pending
    r.xgroup_create("ark:stream:kyle", "audit", id="$")  # a second group, nothing read
    r.set(f"ark:kyle:cursor:{tag}", str(n))


def _host(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch,
          server: DeployedRedis | None) -> Sources:
    monkeypatch.setenv("ARK_ROOT_PREFIX", str(tmp_path / name))
    if server is not None:  # the host's settings: what `ark_env` exports on a host
        monkeypatch.setenv("ARK_REDIS_PASSWORD", server.password)
    src = Sources.from_env()
    return dataclasses.replace(
        src, redis_conf=server.dir / "redis.conf" if server is not None else None)


@pytest.fixture
def host_a(tmp_path: Path) -> Iterator[DeployedRedis]:
    server = DeployedRedis(tmp_path / "redis-a")
    server.start()
    _fill_bus(server, 400, "a")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def host_b(tmp_path: Path) -> Iterator[DeployedRedis]:
    server = DeployedRedis(tmp_path / "redis-b")
    server.start()
    _fill_bus(server, 7, "b")  # a fresh host's own, different bus
    try:
        yield server
    finally:
        server.stop()


def _bundle_of_a(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, a: DeployedRedis) -> Path:
    populate(tmp_path / "a")
    src = _host(tmp_path, "a", monkeypatch, a)
    return create_bundle(tmp_path / "a.tar.gz", src=src).path


def _service(server: DeployedRedis) -> ServiceControl:
    return ServiceControl(stop=server.stop, start=lambda: server.start() and None)


def test_the_bundle_carries_the_rdb_listed_and_signed(
        host_a: DeployedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = summarize(host_a.server.client())
    path = _bundle_of_a(tmp_path, monkeypatch, host_a)
    manifest = verify_bundle(path)
    entry = manifest["redis"]
    assert entry["dump"] == REDIS_MEMBER
    # The summary is the dump's own (loaded in a scratch Redis), and A was quiet: equal.
    assert entry["streams"] == before
    assert entry["streams"]["ark:stream:joey"]["groups"]["joey"]["pending"] == 100
    assert set(entry["streams"]["ark:stream:kyle"]["groups"]) == {"kyle", "audit"}
    with tarfile.open(path) as tar:
        dump = tar.extractfile(REDIS_MEMBER).read()
    assert dump.startswith(b"REDIS")
    assert manifest["members"][REDIS_MEMBER] == {
        "sha256": hashlib.sha256(dump).hexdigest(), "size": len(dump), "category": "redis"}
    assert host_a.password.encode() not in dump  # data only: no config, no password
    inventory = tmp_path / "inventory"
    sign_bundle(path, inventory, host="a", signer="test")
    assert verify_signature(path, inventory)["sha256"] == hashlib.sha256(
        path.read_bytes()).hexdigest()


def _rewrite(path: Path, out: Path, dump: bytes, *, fix_manifest: bool) -> None:
    """The bundle with another dump; with fix_manifest, its hash recomputed in the manifest
    (what an attacker who can write the file, but not sign, would do)."""
    with tarfile.open(path) as tar, tarfile.open(out, "w:gz") as new:
        for m in tar:
            data = tar.extractfile(m).read() if m.isreg() else b""
            if m.name == REDIS_MEMBER:
                data = dump
            elif m.name == "manifest.json" and fix_manifest:
                doc = json.loads(data)
                doc["members"][REDIS_MEMBER].update(
                    sha256=hashlib.sha256(dump).hexdigest(), size=len(dump))
                data = json.dumps(doc).encode()
            m.size = len(data)
            new.addfile(m, io.BytesIO(data))


def test_a_tampered_dump_is_refused_and_nothing_is_written(
        host_a: DeployedRedis, host_b: DeployedRedis, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = _bundle_of_a(tmp_path, monkeypatch, host_a)
    inventory = tmp_path / "inventory"
    sign_bundle(path, inventory, host="a", signer="test")
    with tarfile.open(path) as tar:
        dump = tar.extractfile(REDIS_MEMBER).read()
    # An empty bus, as a valid RDB: written in a Redis with nothing in it.
    empty = DeployedRedis(tmp_path / "redis-empty")
    empty.start()
    empty.server.client().save()
    empty.stop()
    forged = (empty.dir / "dump.rdb").read_bytes()
    assert forged != dump
    b_before = summarize(host_b.server.client())
    b_files = sorted(p.name for p in host_b.dir.iterdir())
    src_b = _host(tmp_path, "b", monkeypatch, host_b)
    for fix in (False, True):
        bad = tmp_path / f"bad-{fix}.tar.gz"
        _rewrite(path, bad, forged, fix_manifest=fix)
        bad.with_name(bad.name + ".sig").write_text(
            path.with_name(path.name + ".sig").read_text())
        with pytest.raises(SignatureRefused, match="not the bundle that was signed"):
            verify_signature(bad, inventory)
        if not fix:  # the host refuses it on its own, before the signature is even asked
            with pytest.raises(BundleError, match="redis/dump.rdb.*differ from the manifest"):
                restore_bundle(bad, src=src_b, redis_service=_service(host_b))
    assert summarize(host_b.server.client()) == b_before
    assert sorted(p.name for p in host_b.dir.iterdir()) == b_files
    assert not (tmp_path / "b" / "var/lib/ark/memory.db").exists()


@pytest.mark.parametrize("appendonly", [True, False], ids=["aof", "rdb-only"])
def test_restore_brings_back_the_same_streams_and_groups(
        appendonly: bool, host_a: DeployedRedis, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    a = host_a.server.client()
    want = summarize(a)
    want_entries = {k: a.xrange(k) for k in want}
    want_store = state_of(populate(tmp_path / "a"))
    path = create_bundle(tmp_path / "a.tar.gz",
                         src=_host(tmp_path, "a", monkeypatch, host_a)).path
    b = DeployedRedis(tmp_path / "redis-b", ark_redis_appendonly=appendonly)
    b.start()
    try:
        _fill_bus(b, 7, "b")
        assert summarize(b.server.client()) != want
        src_b = _host(tmp_path, "b", monkeypatch, b)
        plan, note = restore_bundle(path, src=src_b, redis_service=_service(b))
        assert plan.redis == REDIS_MEMBER
        assert "Redis restored from the bundle's dump (3 streams, 4 consumer groups" in note
        assert summarize(b.server.client()) == want
        assert {k: b.server.client().xrange(k) for k in want} == want_entries
        assert b.server.client().get("ark:kyle:cursor:a") == "400"
        assert b.server.client().get("ark:kyle:cursor:b") is None  # B's own bus is replaced
        assert (b.dir / ("dump.rdb" + PRE_RESTORE_SUFFIX)).exists()  # ... but kept aside
        assert state_of(_layout(tmp_path / "b")) == want_store
        # A crash right after: the restored bus is in what Redis loads at start (the AOF
        # when it is on), not only in memory.
        b.kill9()
        b.start()
        assert summarize(b.server.client()) == want
        info = b.server.client().info("persistence")
        assert int(info["aof_enabled"]) == int(appendonly)
        assert (b.dir / "appendonlydir").exists() == appendonly
    finally:
        b.stop()


def _layout(root: Path):
    from ark_runtime.host.layout import Layout
    return Layout.from_env({"ARK_ROOT_PREFIX": str(root)})


def test_hosts_without_redis_bundle_and_restore_none(
        host_a: DeployedRedis, host_b: DeployedRedis, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # An agents-only host (split topology): no Redis to dump, and the manifest says why.
    populate(tmp_path / "agents")
    src = _host(tmp_path, "agents", monkeypatch, None)
    agents_bundle = create_bundle(tmp_path / "agents.tar.gz", src=src).path
    manifest = verify_bundle(agents_bundle)
    assert manifest["redis"]["dump"] is None and "not a Redis host" in manifest["redis"][
        "reason"]
    assert not any(n.startswith("redis/") for n in manifest["members"])
    b_before = summarize(host_b.server.client())
    _, note = restore_bundle(agents_bundle, src=_host(tmp_path, "b", monkeypatch, host_b),
                             redis_service=_service(host_b))
    assert "bundle holds no Redis dump (not a Redis host" in note and "Redis untouched" in note
    assert summarize(host_b.server.client()) == b_before
    # The Redis host's bundle restored onto an agents-only host: said so, not silently.
    redis_bundle = _bundle_of_a(tmp_path, monkeypatch, host_a)
    _, note = restore_bundle(redis_bundle, src=_host(tmp_path, "agents2", monkeypatch, None))
    assert "Redis dump NOT restored: this host runs no ARK Redis" in note
