"""What a command that tagkeeper runs gets from tagkeeper's environment (pure).

tagkeeper's environment holds what it needs and a deploy script does not: ``GITHUB_TOKEN``,
``GH_TOKEN``, ``TAGKEEPER_REGISTRY_PASSWORD`` and whatever else a CI job exports. A deploy
command (the ``script`` strategy) gets only:

* the variables tagkeeper sets for it (``IMAGE``, ``IMAGE_DIGEST``, ``IMAGE_TAG``);
* :data:`DEFAULT`, what a process expects to find and what a deploy needs to reach the
  same Docker engine and SSH agent as the person or job that runs it; each of these
  holds a name, a path or an address, never a secret;
* what ``--pass-env`` or the configuration's ``pass-env`` lists: ``NAME``, or ``PREFIX*``
  for every variable whose name starts with ``PREFIX`` (``*`` alone: every variable).

A variable that looks like a secret (:func:`looks_secret`) is passed only when it is named
exactly, and :attr:`CommandEnv.secrets` says so, for a warning; a prefix never passes one
(:attr:`CommandEnv.withheld`). The engine's own commands (a proxy's test and reload) get
:data:`DEFAULT` only.

This keeps secrets out of the logs and tools a script hands its environment to. It is
not a sandbox: the command runs as the same user as tagkeeper.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tagkeeper.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

# name -> why a deploy command gets it without being asked (the README lists the same)
DEFAULT: dict[str, str] = {
    "PATH": "where the command's own programs are found",
    "HOME": "the user's files (~/.docker/config.json, ~/.ssh)",
    "USER": "who runs it",
    "LOGNAME": "who runs it",
    "SHELL": "the user's shell",
    "LANG": "the locale: how text is read and written",
    "LANGUAGE": "the locale",
    "LC_*": "the locale",
    "TZ": "the time zone of the times it prints",
    "TERM": "what the terminal can show",
    "TMPDIR": "where temporary files go",
    "CI": "tools stay non-interactive in CI",
    "DOCKER_HOST": "the same Docker engine tagkeeper uses",
    "DOCKER_CONTEXT": "the same Docker engine tagkeeper uses",
    "DOCKER_CONFIG": "where docker finds its configuration (a path; the credentials stay there)",
    "DOCKER_CERT_PATH": "the engine's TLS certificates (a path)",
    "DOCKER_TLS_VERIFY": "whether the engine's certificate is checked",
    "XDG_RUNTIME_DIR": "per-user sockets: rootless Docker and Podman, systemctl --user",
    "SSH_AUTH_SOCK": "the SSH agent a deploy over SSH uses (a socket the same user can "
    "reach anyway; the keys never leave the agent)",
}

# A name holding one of these is taken for a secret: GITHUB_TOKEN, GH_TOKEN,
# TAGKEEPER_REGISTRY_PASSWORD, AWS_SECRET_ACCESS_KEY, GPG_PASSPHRASE, MYAPIKEY...
SECRET_PARTS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "APIKEY",
                "PRIVATE")  # fmt: skip
# ...and so is one with one of these as a whole word (between underscores): SIGNING_KEY,
# DOCKER_AUTH_CONFIG, GH_PAT, SENTRY_DSN; but not GIT_AUTHOR_NAME or KEYBOARD
SECRET_WORDS = frozenset({"KEY", "KEYS", "AUTH", "PASS", "PAT", "PW", "COOKIE", "COOKIES",
                          "CREDS", "DSN"})  # fmt: skip
_URL_PASSWORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@")
_PATTERN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\*?|\*")


def looks_secret(name: str, value: str = "") -> bool:
    """Whether variable ``name`` (with ``value``) looks like it holds a secret.

    By its name (:data:`SECRET_PARTS` anywhere in it, :data:`SECRET_WORDS` as a word), or
    by its value: a URL with a password in it (``https://user:pass@host``: a proxy's, a
    database's).
    """
    upper = name.upper()
    if any(part in upper for part in SECRET_PARTS):
        return True
    if any(word in SECRET_WORDS for word in upper.split("_")):
        return True
    return bool(_URL_PASSWORD_RE.search(value))


def parse_patterns(values: Iterable[str], *, what: str = "--pass-env") -> tuple[str, ...]:
    """``values`` checked: each a variable name or ``PREFIX*``; :class:`UsageError` if not."""
    out: list[str] = []
    for value in values:
        if not _PATTERN_RE.fullmatch(value):
            raise UsageError(
                f"{what} {value!r} is not a variable name or a NAME* prefix",
                hint="e.g. --pass-env PROFILE or --pass-env 'APP_*' (letters, digits and _, "
                "not starting with a digit; one * at the end)",
            )
        if value not in out:
            out.append(value)
    return tuple(out)


def _matches(pattern: str, name: str) -> bool:
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


@dataclass(frozen=True, slots=True)
class CommandEnv:
    """The environment chosen for a command, and what to tell the user about it.

    ``variables``: exactly what the command gets. ``secrets``: variables that look like
    secrets and are passed because they were named exactly (warn). ``withheld``: variables
    a prefix pattern matched but that look like secrets, so were left out (pattern ->
    names). ``missing``: exact names asked for that are not set.
    """

    variables: dict[str, str]
    secrets: tuple[str, ...] = ()
    withheld: dict[str, tuple[str, ...]] = field(default_factory=dict)
    missing: tuple[str, ...] = ()

    @property
    def passed(self) -> tuple[str, ...]:
        """The names the command gets, sorted."""
        return tuple(sorted(self.variables))


def choose(
    environ: Mapping[str, str],
    patterns: Iterable[str] = (),
    *,
    setting: Mapping[str, str] | None = None,
    defaults: Iterable[str] = tuple(DEFAULT),
) -> CommandEnv:
    """The environment of a command: ``setting`` (what tagkeeper sets, e.g. ``IMAGE``)
    over the variables of ``environ`` that ``defaults`` or ``patterns`` let through.

    Exact names pass whatever they hold (``patterns``' secrets are reported); prefixes
    never pass a variable that :func:`looks_secret`.
    """
    asked = parse_patterns(patterns)
    base = tuple(defaults)
    variables: dict[str, str] = {}
    secrets: list[str] = []
    withheld: dict[str, list[str]] = {}
    for name, value in environ.items():
        if name in asked:
            variables[name] = value
            if name not in base and looks_secret(name, value):
                secrets.append(name)
            continue
        if name in base:
            variables[name] = value
            continue
        globs = [p for p in (*base, *asked) if p.endswith("*") and _matches(p, name)]
        if not globs:
            continue
        if looks_secret(name, value):
            for pattern in globs:
                if pattern in asked:
                    withheld.setdefault(pattern, []).append(name)
            continue
        variables[name] = value
    variables.update(setting or {})
    missing = tuple(p for p in asked if not p.endswith("*") and p not in environ)
    return CommandEnv(
        variables,
        tuple(sorted(secrets)),
        {pattern: tuple(sorted(names)) for pattern, names in withheld.items()},
        missing,
    )


__all__ = [
    "DEFAULT",
    "SECRET_PARTS",
    "SECRET_WORDS",
    "CommandEnv",
    "choose",
    "looks_secret",
    "parse_patterns",
]
