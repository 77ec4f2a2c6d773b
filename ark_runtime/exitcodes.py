"""One exit-code table for every ARK command, agent and unit (sysexits-style).

systemd units, the control node and operators read these numbers; `docs/AGENT_PROTOCOL.md`
prints this table. A command turns an expected failure into one sentence on stderr and
one of these codes, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from enum import IntEnum
from typing import NoReturn


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # the command ran and found a problem (a check failed, a repair was refused)
    USAGE = 64  # bad command line: unknown option, missing or malformed argument
    DATAERR = 65  # bad input data: corrupt snapshot or bundle, invalid ruleset or envelope
    UNAVAILABLE = 69  # something needed is not there: Redis down or refusing us, port taken
    SOFTWARE = 70  # a bug: an unexpected exception (report it)
    NOPERM = 77  # not allowed: needs root, or a file it must not read
    TEMPFAIL = 75  # temporary: another instance holds the lock, try again later
    CONFIG = 78  # configuration error: env file or schema wrong; systemd must not restart

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "success",
    ExitCode.FAILURE: "the command ran and found a problem (a check failed, a repair was refused)",
    ExitCode.USAGE: "bad command line: unknown option, missing or malformed argument",
    ExitCode.DATAERR: "bad input data: corrupt snapshot or bundle, invalid ruleset or envelope",
    ExitCode.UNAVAILABLE: "something needed is unavailable: Redis down or refusing us, port taken",
    ExitCode.SOFTWARE: "internal error: an unexpected exception (a bug; report it)",
    ExitCode.NOPERM: "not permitted: needs root, or a file it may not read",
    ExitCode.TEMPFAIL: "temporary: another instance holds the lock; try again later",
    ExitCode.CONFIG: "configuration error: env file, schema or ruleset wrong; not restarted",
}


class ArkArgumentParser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; ours exits 64 like every other ARK command."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")
