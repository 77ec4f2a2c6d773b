"""Errors an operator sees: one sentence on what failed and what to do."""


class OpsError(Exception):
    """A failure with an operator-facing message; tasks print it and exit non-zero."""

    exit_code = 1


class PreflightError(OpsError):
    """The control node is missing something (root, a tool) before any change is made."""

    exit_code = 2


class LockedError(OpsError):
    """Another operation holds the lock for this target."""

    exit_code = 75  # EX_TEMPFAIL: try again when the other run has finished


class RefusedError(OpsError):
    """The command cannot run as asked; nothing was changed."""

    exit_code = 64  # EX_USAGE
