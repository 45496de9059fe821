"""A string that never shows itself: tokens travel as :class:`Secret`.

:func:`check_credential` is the door every credential passes: a token (GitHub token,
registry token, identity token) holds printable ASCII without spaces, a password no
control character. A value that breaks this would end up whole in an error message
(httpx quotes a header it cannot send, and its ``repr`` escapes what the scrubber
looks for), so it is refused before it is sent anywhere.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Literal

from tagkeeper.errors import RegistryError, UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping

TOKEN_VARIABLES = ("GITHUB_TOKEN", "GH_TOKEN")

# Every credential value this process has held as a Secret, so that what is printed for
# debugging (an error's cause chain, a traceback) can be scrubbed of all of them.
_KNOWN: set[str] = set()


class Secret:
    """Holds a credential. ``str()``, ``repr()`` and f-strings print ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if value:
            _KNOWN.add(value)

    def reveal(self) -> str:
        """The raw value, for the one place that sends it (an auth header)."""
        return self._value

    def scrub(self, text: str) -> str:
        """``text`` with every occurrence of the value replaced by ``***``."""
        return text.replace(self._value, "***") if self._value else text

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"


def scrub_all(text: str) -> str:
    """``text`` with every credential this process has held as a :class:`Secret`
    replaced by ``***`` (longest first, so a token inside another is not half shown)."""
    for value in sorted(_KNOWN, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def _flaw(value: str, kind: Literal["token", "password"]) -> str | None:
    """What makes ``value`` unusable as a ``kind``, or ``None`` when it is fine."""
    for position, ch in enumerate(value, start=1):
        if kind == "token" and not ("!" <= ch <= "~"):
            if ch.isspace():
                return f"a whitespace character at position {position}"
            if ch.isascii():
                return f"a control character at position {position}"
            return f"a non-ASCII character at position {position}"
        if kind == "password" and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            return f"a control character at position {position}"
    return None


def check_credential(
    secret: Secret,
    *,
    what: str,
    kind: Literal["token", "password"] = "token",
    outside: bool = False,
) -> None:
    """Refuse ``secret`` when it cannot be sent as it is.

    A ``token`` is printable ASCII without whitespace (RFC 6750's ``b64token`` and every
    GitHub and registry token); a ``password`` may hold spaces and non-ASCII letters but
    no control character. ``what`` names the value for the message (never the value).
    Raises :class:`UsageError` (exit 2) for a value the user gave, or
    :class:`RegistryError` (exit 5) for one a server sent (``outside``).
    """
    flaw = _flaw(secret.reveal(), kind)
    if flaw is None:
        return
    if outside:
        raise RegistryError(
            f"{what} has {flaw}; tagkeeper does not send such a value anywhere",
            hint="the server answered something no registry sends; check the registry URL "
            "and any proxy between this machine and the registry",
        )
    raise UsageError(
        f"{what} has {flaw}; a {kind} never does, so it was not sent anywhere",
        hint=f"set the {kind} again without line breaks, spaces or other invisible "
        "characters (a copy from a terminal or an editor often adds them)",
    )


def token_from_env(flag: str | None, environ: Mapping[str, str]) -> Secret | None:
    """The GitHub token: ``--token``, else ``$GITHUB_TOKEN``, else ``$GH_TOKEN``.

    Surrounding whitespace (a newline pasted into a secret) is stripped; a value that is
    empty or only whitespace counts as not given, so the next source is tried. ``None``
    when no source has a token. A token with whitespace or a control character inside
    is refused (:func:`check_credential`, exit 2), naming where it came from.
    """
    candidates = [("--token", flag)] + [(f"${n}", environ.get(n)) for n in TOKEN_VARIABLES]
    for source, value in candidates:
        if value and value.strip():
            secret = Secret(value.strip())
            check_credential(secret, what=f"the GitHub token from {source}")
            return secret
    return None
