"""``--debug`` / ``TAGKEEPER_DEBUG=1``: the cause chain of an error, credentials masked.

An error a user can act on prints its message and hint only; many are raised ``from
None`` so that the message stays short. With ``--debug`` the CLI also prints what
caused it: every exception in the chain (``__cause__``, else ``__context__``, even when
suppressed), innermost last, and the traceback of each. Everything printed goes through
:func:`mask`: every credential the process has held as a :class:`~tagkeeper.secret.Secret`,
the token variables of the environment and anything shaped like a GitHub token or an
``Authorization`` value become ``***``, and outside text is neutralised.
"""

from __future__ import annotations

import os
import re
import traceback
from typing import TYPE_CHECKING

from tagkeeper.untrusted import neutralise

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

ENV_VAR = "TAGKEEPER_DEBUG"
FLAG = "--debug"
_SECRET_VARIABLES = ("GITHUB_TOKEN", "GH_TOKEN", "TAGKEEPER_REGISTRY_PASSWORD")
# GitHub tokens (classic and fine-grained), and what follows an auth scheme in a header
_TOKENS = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})")
_AUTH = re.compile(r"\b(Bearer|Basic) +[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_MAX_DEPTH = 20


def wanted(args: Sequence[str], environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``--debug`` is among the root options of ``args``, ``$TAGKEEPER_DEBUG`` is
    set, or GitHub Actions runs the step with debug logging (``RUNNER_DEBUG=1``, a re-run
    with "Enable debug logging")."""
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    if env.get("RUNNER_DEBUG") == "1":
        return True
    for arg in args:
        if arg == FLAG:
            return True
        if not arg.startswith("-"):
            return False  # the command: its own options are not the root's
    return False


def mask(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` without any credential this process knows or that looks like one."""
    from tagkeeper.secret import scrub_all

    env = os.environ if environ is None else environ
    text = scrub_all(text)
    for name in _SECRET_VARIABLES:
        value = env.get(name, "").strip()
        if len(value) >= 4:
            text = text.replace(value, "***")
    return _AUTH.sub(r"\1 ***", _TOKENS.sub("***", text))


def chain(error: BaseException) -> list[BaseException]:
    """``error`` and what caused it, outermost first (cycles and depth bounded)."""
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in found and len(found) < _MAX_DEPTH:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _name(exc: BaseException) -> str:
    kind = type(exc)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def explain(error: BaseException, environ: Mapping[str, str] | None = None) -> str:
    """The debug text for ``error``: its cause chain, then each link's traceback."""
    links = chain(error)
    lines = ["debug: the cause chain (outermost first):"]
    for depth, exc in enumerate(links):
        lead = "  " if depth == 0 else "  caused by "
        lines.append(f"{lead}{_name(exc)}: {neutralise(mask(str(exc), environ), limit=2000)}")
    for exc in links:
        lines.append(f"debug: where {_name(exc)} was raised:")
        for frame in traceback.format_tb(exc.__traceback__):
            for line in frame.rstrip("\n").split("\n"):
                lines.append("  " + neutralise(mask(line, environ), limit=2000))
    return "\n".join(lines)
