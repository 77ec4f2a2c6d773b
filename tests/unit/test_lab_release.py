"""DEPLOY_01: lab hosts on Debian 12 and 13, mixed or not, one cached image per release."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from ark_ops.errors import OpsError
from ark_ops.lab import inventory
from ark_ops.lab.config import LabHost, LabPaths
from ark_ops.lab.host import layout, release_of
from ark_ops.lab.image import RELEASES, image_key, image_path
from ark_ops.lab.lab import host_releases


def test_one_release_applies_to_every_host():
    assert host_releases(3, "trixie") == ["trixie"] * 3


def test_a_list_gives_each_host_its_release_in_order():
    assert host_releases(2, "bookworm,trixie") == ["bookworm", "trixie"]
    assert host_releases(2, ["trixie", "bookworm"]) == ["trixie", "bookworm"]


def test_without_a_release_running_hosts_keep_theirs_and_new_ones_are_bookworm():
    assert host_releases(3, None, {2: "trixie"}) == ["bookworm", "trixie", "bookworm"]


def test_a_list_of_the_wrong_length_is_refused_naming_the_counts():
    with pytest.raises(OpsError, match="2 releases for 3 host"):
        host_releases(3, "bookworm,trixie")


@given(st.text(min_size=1, max_size=20).filter(lambda t: t.strip() not in RELEASES
                                               and "," not in t))
def test_an_unknown_release_is_refused_naming_the_option(name):
    with pytest.raises(OpsError, match="--release must be one of bookworm, trixie"):
        host_releases(1, name)


def test_each_release_has_its_own_cached_image(tmp_path):
    assert image_key("bookworm") != image_key("trixie")
    assert image_key("trixie").startswith("trixie-")
    assert image_path(tmp_path, "bookworm") != image_path(tmp_path, "trixie")


def _paths(tmp_path) -> LabPaths:
    return LabPaths(state=tmp_path / "state", cache=tmp_path / "cache",
                    inventory=tmp_path / "inv")


def test_the_inventory_records_each_hosts_release(tmp_path):
    target = inventory.write(_paths(tmp_path), [LabHost(1), LabHost(2)],
                             releases=["bookworm", "trixie"])
    hosts = yaml.safe_load(target.read_text())["all"]["children"]["ark"]["hosts"]
    assert hosts["ark-lab-1"]["ark_lab_release"] == "bookworm"
    assert hosts["ark-lab-2"]["ark_lab_release"] == "trixie"


def test_a_host_made_before_releases_were_recorded_is_bookworm(tmp_path):
    lay = layout(_paths(tmp_path), LabHost(1))
    assert release_of(lay) == "bookworm"
    lay.dir.mkdir(parents=True)
    lay.release_file.write_text("trixie\n")
    assert release_of(lay) == "trixie"
