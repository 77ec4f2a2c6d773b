# ruff: noqa: E501  (recap lines are as wide as Ansible prints them)
"""Reading ansible-playbook's PLAY RECAP: what `changed=0` checks rely on."""

from __future__ import annotations

from ark_ops.deploy.playbook import parse_recap

OUTPUT = """
TASK [x] ***
ok: [ark-lab-1]

PLAY RECAP *********************************************************************
ark-lab-1                  : ok=31   changed=0    unreachable=0    failed=0    skipped=2    rescued=0    ignored=0
ark-lab-2                  : ok=12   changed=3    unreachable=0    failed=1    skipped=0    rescued=0    ignored=0

"""


def test_recap_counts_per_host():
    recap = parse_recap(OUTPUT)
    assert recap["ark-lab-1"]["changed"] == 0
    assert recap["ark-lab-1"]["ok"] == 31
    assert recap["ark-lab-2"] == {
        "ok": 12, "changed": 3, "unreachable": 0, "failed": 1,
        "skipped": 0, "rescued": 0, "ignored": 0,
    }


def test_no_recap_means_no_hosts():
    assert parse_recap("ERROR! the playbook could not be found\n") == {}
