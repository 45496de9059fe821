"""A string that never shows itself: tokens travel as :class:`Secret`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

TOKEN_VARIABLES = ("GITHUB_TOKEN", "GH_TOKEN")


class Secret:
    """Holds a credential. ``str()``, ``repr()`` and f-strings print ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

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


def token_from_env(flag: str | None, environ: Mapping[str, str]) -> Secret | None:
    """The GitHub token: ``--token``, else ``$GITHUB_TOKEN``, else ``$GH_TOKEN``.

    Surrounding whitespace (a newline pasted into a secret) is stripped; a value that is
    empty or only whitespace counts as not given, so the next source is tried. ``None``
    when no source has a token.
    """
    for value in (flag, *(environ.get(name) for name in TOKEN_VARIABLES)):
        if value and value.strip():
            return Secret(value.strip())
    return None
