"""Where the checkout is. A leaf: it imports nothing from ark_ops, so any module may use it."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Where Ansible's and testinfra's ssh masters live: ansible.cfg's control_path (%C) in
# Ansible's default control_path_dir.
ANSIBLE_CONTROL_DIR = Path("~/.ansible/cp").expanduser()
