"""Every exception polyp-gitops raises on purpose: a refusal or a missing input, with a message that says what to do.

The CLI (cli.main) catches them, as it does any other ValueError or RuntimeError, prints ``polyp-gitops: <message>``
on stderr and exits 2, without a traceback; their bases keep it so. Each stays importable from the module
that raises it (``polyp_gitops.pins.PinError`` ...).
"""

from __future__ import annotations


class PinError(ValueError):
    """A bump or promotion that must not happen; nothing has been written."""


class NotARepository(ValueError):
    """The command is not run inside (or pointed at) a clone of the platform repository."""


class ChartsUnavailable(ValueError):
    """The packaged upstream charts an environment renders are not where POLYP_CHARTS_DIR says."""


class SchemasUnavailable(RuntimeError):
    """The schemas needed to validate strictly are not where they are expected."""


class GitError(RuntimeError):
    """A git command failed, or the tree is not in a state to commit to."""


class ToolError(RuntimeError):
    """A tool is missing or a command failed; the message says which and why."""
