"""The one error tree of tagkeeper and the exit codes it maps to.

Every failure a user can act on is a :class:`TagkeeperError` subclass. Each subclass
carries its own exit code (all of them are listed in :class:`ExitCode`, and in the
README) and a message that says what to do next. The CLI catches only the base class,
so a bug still shows its traceback.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar


class ExitCode(IntEnum):
    """Process exit codes. Stable: scripts depend on them."""

    OK = 0
    INTERNAL = 1  # a bug: an uncaught exception with its traceback
    USAGE = 2  # bad input or usage (also what the CLI parser uses)
    POLICY = 3  # a reference breaks the environment's tag rules
    AUTH = 4  # authentication or permission refused
    REGISTRY = 5  # the registry, API or network failed
    PARTIAL = 6  # some deletes (or other steps) failed: rerun to finish
    CAP = 7  # the plan exceeds --max-delete: nothing was deleted
    NO_TARGET = 8  # no rollback target qualifies
    CONFIG = 9  # a configuration file is invalid
    RATE_LIMITED = 10  # stopped on the primary rate limit: rerun after the reset
    ABORTED = 11  # the user declined the confirmation
    LEDGER = 12  # the deploy ledger cannot be opened, read or written
    VERIFY = 13  # verification failed: nothing was switched (the old version serves)
    ROLLED_BACK = 14  # released, then rolled back automatically
    LOCKED = 15  # another deploy of this environment is running (its lock is held)
    INTERRUPTED = 130  # stopped by Ctrl-C (SIGINT, 128 + 2): rerun to continue


# Which failure wins when several parts of a run end differently (worst last).
_SEVERITY = (
    ExitCode.OK,
    ExitCode.PARTIAL,
    ExitCode.CAP,
    ExitCode.RATE_LIMITED,
    ExitCode.REGISTRY,
    ExitCode.CONFIG,
    ExitCode.USAGE,
    ExitCode.AUTH,
    ExitCode.ABORTED,
)


def worst(a: ExitCode, b: ExitCode) -> ExitCode:
    """The more serious of two exit codes (codes not ranked above rank as the most serious)."""

    def rank(code: ExitCode) -> int:
        return _SEVERITY.index(code) if code in _SEVERITY else len(_SEVERITY)

    return a if rank(a) >= rank(b) else b


class TagkeeperError(Exception):
    """Base of every error a user can act on."""

    exit_code: ClassVar[ExitCode] = ExitCode.INTERNAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """A human message: what went wrong, then what to do next."""
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(TagkeeperError):
    """Bad input: an argument, a reference or a file that cannot be used."""

    exit_code = ExitCode.USAGE


class PolicyViolation(TagkeeperError):
    """A reference is not acceptable for the environment."""

    exit_code = ExitCode.POLICY


class AuthError(TagkeeperError):
    """Credentials missing, invalid, or lacking a permission."""

    exit_code = ExitCode.AUTH


class RegistryError(TagkeeperError):
    """The registry, the GitHub API or the network failed."""

    exit_code = ExitCode.REGISTRY


class PartialApply(TagkeeperError):
    """A plan was applied in part; rerunning finishes it."""

    exit_code = ExitCode.PARTIAL


class CapExceeded(TagkeeperError):
    """The plan deletes more than the safety cap allows; nothing was deleted."""

    exit_code = ExitCode.CAP


class NoRollbackTarget(TagkeeperError):
    """No earlier deploy or release qualifies as a rollback target."""

    exit_code = ExitCode.NO_TARGET


class ConfigError(TagkeeperError):
    """A configuration file is invalid; the message names the file and the key."""

    exit_code = ExitCode.CONFIG


class RateLimited(TagkeeperError):
    """The primary rate limit ran out; the run stopped cleanly and can be resumed."""

    exit_code = ExitCode.RATE_LIMITED


class Aborted(TagkeeperError):
    """The user declined to go on."""

    exit_code = ExitCode.ABORTED


class LedgerError(TagkeeperError):
    """The deploy ledger cannot be created, opened, read or written."""

    exit_code = ExitCode.LEDGER


class VerificationFailed(TagkeeperError):
    """A check before or during a switch failed; nothing was switched.

    The old version kept (or got back) every request: a pre-check failed, a new container
    failed its checks and the old one was restored, or a proxy change could not be
    tested, reloaded or confirmed and the previous proxy file was restored.
    """

    exit_code = ExitCode.VERIFY


class RolledBack(TagkeeperError):
    """The new version was released, then rolled back automatically (a threshold crossed)."""

    exit_code = ExitCode.ROLLED_BACK


class DeployLocked(TagkeeperError):
    """Another deploy of this environment holds its lock; nothing was done."""

    exit_code = ExitCode.LOCKED
