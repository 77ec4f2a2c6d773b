"""Issue #19 §5 (REC_03): the parts of the Redis dump that need no redis-server — the
deployed config read as Redis reads it, and bundles whose `redis` entry lies refused before
anything is written. The round trip with real redis-servers: tests/integration/test_dr_redis.py.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ark_runtime.cli import main
from ark_runtime.host.dr.bundle import create_bundle
from ark_runtime.host.dr.redis_dump import RedisDumpError, RedisFiles, differences
from ark_runtime.host.layout import Layout
from tests.unit.test_dr import _env, populate, tree

pytestmark = pytest.mark.requirement("REC_03")


def test_the_config_is_read_as_redis_reads_it(tmp_path: Path) -> None:
    (tmp_path / "ark.conf").write_text(
        'requirepass "s3cret pass"\nport 6390\nappendonly yes\nappenddirname "aof dir"\n')
    (tmp_path / "redis.conf").write_text(
        "# Debian's\ndir /var/lib/redis\ndbfilename dump.rdb\nappendonly no\nport 6379\n"
        f"include {tmp_path / 'ark.conf'}\n")
    files = RedisFiles.from_config(tmp_path / "redis.conf")
    assert (files.dir, files.rdb, files.port, files.appendonly) == (
        Path("/var/lib/redis"), Path("/var/lib/redis/dump.rdb"), 6390, True)  # last one wins
    assert files.aof_dir == Path("/var/lib/redis/aof dir")
    assert "s3cret" not in repr(files)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_any_config_text_is_read_or_refused_in_one_sentence(tmp_path: Path, text: str) -> None:
    conf = tmp_path / "redis.conf"
    conf.write_text(text)
    try:
        files = RedisFiles.from_config(conf)
    except RedisDumpError as exc:
        assert "Redis" in str(exc) and "\n" not in str(exc)
    else:
        assert files.dir.is_absolute() and isinstance(files.port, int)


def test_a_relative_dir_or_a_missing_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "redis.conf").write_text("dir ./\n")
    with pytest.raises(RedisDumpError, match="'dir' must be an absolute path"):
        RedisFiles.from_config(tmp_path / "redis.conf")
    with pytest.raises(RedisDumpError, match="cannot read the Redis config"):
        RedisFiles.from_config(tmp_path / "absent.conf")
    (tmp_path / "loop.conf").write_text(f"include {tmp_path / 'loop.conf'}\n")
    with pytest.raises(RedisDumpError, match="nest too deep"):
        RedisFiles.from_config(tmp_path / "loop.conf")


def test_differences_name_each_stream() -> None:
    a = {"s1": {"length": 3, "groups": {}}, "s2": {"length": 1, "groups": {}}}
    b = {"s1": {"length": 2, "groups": {}}, "s3": {"length": 1, "groups": {}}}
    out = differences(a, b)
    assert out[0].startswith("stream s1: bundle") and "stream s2 missing" in out
    assert "stream s3 not in the bundle" in out
    assert differences(a, a) == []


def _with_manifest_redis(good: Path, out: Path, redis_entry: object) -> Path:
    with tarfile.open(good) as src:
        items = [(m, src.extractfile(m).read()) for m in src if m.isreg()]
    with tarfile.open(out, "w:gz") as tar:
        for m, data in items:
            if m.name == "manifest.json":
                doc = json.loads(data)
                doc["redis"] = redis_entry
                data = json.dumps(doc).encode()
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    return out


@pytest.mark.parametrize("entry", [
    {"dump": "redis/dump.rdb", "streams": {}},     # names a dump the archive does not hold
    {"dump": "logs/hrm.log", "streams": {}},       # points the restore at another member
    {"dump": "../../etc/shadow"},
    {"dump": 7},
])
def test_a_manifest_naming_a_dump_that_is_not_there_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: object,
        capsys: pytest.CaptureFixture[str]) -> None:
    _env(monkeypatch, tmp_path / "a")
    monkeypatch.setenv("ARK_RUN_DIR", str(tmp_path / "run"))
    populate(tmp_path / "a")
    good = create_bundle(tmp_path / "good.tar.gz").path
    with tarfile.open(good) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert manifest["redis"]["dump"] is None  # a host without ARK's Redis config: no dump
    bad = _with_manifest_redis(good, tmp_path / "bad.tar.gz", entry)
    _env(monkeypatch, tmp_path / "b")
    populate(tmp_path / "b", decisions=1)
    before = tree(tmp_path / "b")
    capsys.readouterr()
    assert main(["dr", "restore", str(bad)]) == 65
    err = capsys.readouterr().err
    assert "refused" in err and "manifest Redis dump" in err, err
    assert tree(tmp_path / "b") == before
    assert Layout.from_env().state.exists()
