"""The strategy every Ansible run of the toolkit uses: mitogen_linear by default, plain
`linear` on request, anything else refused before Ansible starts."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ark_ops.deploy import playbook as ansible_run
from ark_ops.deploy.playbook import STRATEGY_VAR, ansible_env, ansible_strategy
from ark_ops.errors import OpsError

PLAY = """\
- name: Two module calls on the control node
  hosts: all
  gather_facts: false
  tasks:
    - name: A command
      ansible.builtin.command: "true"
      changed_when: false
    - name: A file stat
      ansible.builtin.stat:
        path: /
"""


@pytest.fixture(autouse=True)
def _no_strategy_in_env(monkeypatch):
    monkeypatch.delenv(STRATEGY_VAR, raising=False)
    monkeypatch.delenv("ANSIBLE_STRATEGY", raising=False)


def test_mitogen_is_the_default_and_is_installed():
    assert importlib.util.find_spec("ansible_mitogen") is not None
    assert ansible_strategy() == "mitogen_linear"
    assert ansible_env()["ANSIBLE_STRATEGY"] == "mitogen_linear"


def test_one_task_runs_stay_linear_even_without_mitogen(monkeypatch):
    """An ad-hoc call of one task per host does not pay mitogen's bootstrap, and still works
    in a venv without mitogen (verify's per-command calls, the deploy's fact gathering)."""
    assert ansible_env(one_task=True)["ANSIBLE_STRATEGY"] == "linear"
    monkeypatch.setattr(ansible_run.importlib.util, "find_spec", lambda *_a: None)
    assert ansible_env(one_task=True)["ANSIBLE_STRATEGY"] == "linear"


def test_the_operator_can_fall_back_to_linear(monkeypatch):
    monkeypatch.setenv(STRATEGY_VAR, "linear")
    assert ansible_env()["ANSIBLE_STRATEGY"] == "linear"


def test_a_strategy_left_in_the_shell_does_not_win(monkeypatch):
    monkeypatch.setenv("ANSIBLE_STRATEGY", "free")
    assert ansible_env()["ANSIBLE_STRATEGY"] == "mitogen_linear"


@given(st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
               max_size=30).filter(lambda s: s.strip() not in ("", *ansible_run.STRATEGIES)))
def test_an_unknown_strategy_is_refused_naming_the_variable(name):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(STRATEGY_VAR, name)
        with pytest.raises(OpsError, match=STRATEGY_VAR):
            ansible_env()


def test_missing_mitogen_is_one_sentence_with_the_way_out(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(ansible_run.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ansible_mitogen" else real(name, *a))
    with pytest.raises(OpsError, match=f"{STRATEGY_VAR}=linear"):
        ansible_strategy()
    monkeypatch.setenv(STRATEGY_VAR, "linear")
    assert ansible_strategy() == "linear"


def test_a_requested_strategy_applies_to_that_run_only():
    assert ansible_env(strategy="linear")["ANSIBLE_STRATEGY"] == "linear"
    assert STRATEGY_VAR not in os.environ
    assert ansible_env(strategy=None)["ANSIBLE_STRATEGY"] == "mitogen_linear"
    with pytest.raises(OpsError, match="bogus"):
        ansible_env(strategy="bogus")
    assert STRATEGY_VAR not in os.environ


def run_play(tmp_path: Path, strategy: str) -> str:
    """-vvv output of a two-task play on the control node, through the repo's ansible.cfg
    (run from another directory: the shim's path must resolve against the config file)."""
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    env = {**ansible_env(), "ANSIBLE_STRATEGY": strategy}
    exe = Path(sys.executable).parent / "ansible-playbook"
    proc = subprocess.run(
        [str(exe), "-i", "localhost,", "-c", "local", "-vvv", str(play),
         "-e", f"ansible_python_interpreter={sys.executable}"],
        env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "ok=2" in proc.stdout
    return proc.stdout


def test_mitogen_runs_modules_without_uploading_them(tmp_path):
    """Plain linear writes an AnsiballZ payload per task; mitogen runs modules in its
    persistent interpreter, so the default strategy must show none."""
    assert "AnsiballZ" in run_play(tmp_path, "linear")
    assert "AnsiballZ" not in run_play(tmp_path, ansible_strategy())
