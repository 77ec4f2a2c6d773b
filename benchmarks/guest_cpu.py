"""A lab host's CPU, per systemd unit and in all, from the host's own /proc.

Not from cgroups: on this machine every lab guest sees the same cgroup tree (each guest's
/sys/fs/cgroup/unified/cpu.stat reads the whole machine's usage), while each guest has its
own PID namespace. So the probe sums, over the guest's live processes, the kernel's
accounting in /proc/PID/stat: utime + stime + cutime + cstime. A process's children add their
CPU to it when it reaps them, so work done by processes that have exited (Ansible's modules,
pip, systemd-analyze) still counts, in the live ancestor that reaped them (sshd, systemd).

    on(host, PROBE) -> "<unit> <usec>" lines (the process's own cgroup: a service, a scope)
    and "total <usec>"; parse() reads them. The CPU of Ansible's work on a host shows under
    ssh.service once its session ended (the listening sshd reaps the session's).
"""

from __future__ import annotations

PROBE = r"""python3 - <<'PY'
import os
tick = os.sysconf("SC_CLK_TCK")
units, total = {}, 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cgroup") as cg, open(f"/proc/{pid}/stat") as st:
            cgroup, stat = cg.read(), st.read()
    except OSError:  # ended between the listing and the read
        continue
    usec = sum(int(x) for x in stat.rsplit(")", 1)[1].split()[11:15]) * 10**6 // tick
    total += usec
    unit = next((line[3:].rstrip("/").rsplit("/", 1)[-1] for line in cgroup.splitlines()
                 if line.startswith("0::")), "") or "-"
    units[unit] = units.get(unit, 0) + usec
for unit, usec in sorted(units.items()):
    print(unit, usec)
print("total", total)
PY"""


def parse(out: str) -> dict[str, int]:
    """{unit: usec, "total": usec} from PROBE's output."""
    return {name: int(usec) for name, usec in (line.split() for line in out.splitlines()
                                               if line.strip())}
