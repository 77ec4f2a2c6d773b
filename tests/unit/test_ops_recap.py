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


def test_failed_tasks_names_each_failing_task_and_its_message():
    from ark_ops.deploy.playbook import failed_tasks

    output = (
        "TASK [ark_runtime : Wheels are copied] ****\n"
        "ok: [ark-lab-1]\n"
        "TASK [ark_redis : SEC_01 | Redis starts] ****\n"
        "ok: [ark-lab-1]\n"
        'fatal: [ark-lab-2]: FAILED! => {"msg": "unit failed"}\n'
        "PLAY RECAP ****\n"
        "ark-lab-2 : ok=44 changed=15 unreachable=0 failed=1\n")
    found = failed_tasks(output)
    assert found.splitlines() == ["TASK [ark_redis : SEC_01 | Redis starts]",
                                  'fatal: [ark-lab-2]: FAILED! => {"msg": "unit failed"}']
    assert failed_tasks("TASK [x] ***\nok: [h]\n") == ""


def test_failed_tasks_keeps_the_results_yaml_under_the_fatal_line():
    # ansible.cfg: callback_result_format = yaml puts the message on the lines below "=>"
    # (CI's failed handler showed "fatal: [ark-lab-1]: FAILED! => " and nothing else).
    from ark_ops.deploy.playbook import failed_tasks

    output = (
        "RUNNING HANDLER [ark_redis : Restart redis] ****\n"
        "fatal: [ark-lab-1]: FAILED! => \n"
        "    changed: false\n"
        "    msg: |-\n"
        "        Unable to restart service redis-server.service: Job failed.\n"
        "\n"
        "TASK [next] ****\n"
        "ok: [ark-lab-2]\n")
    assert failed_tasks(output).splitlines() == [
        "RUNNING HANDLER [ark_redis : Restart redis]",
        "fatal: [ark-lab-1]: FAILED! => ",
        "    changed: false",
        "    msg: |-",
        "        Unable to restart service redis-server.service: Job failed."]
