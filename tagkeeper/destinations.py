"""Where the GitHub token and the registry credentials may be sent.

A configuration file (``tagkeeper.toml``, ``pyproject.toml``) lives in the checkout, and
inside GitHub Actions the checkout can be anyone's code (a pull request's). Its
``api-url`` and ``registry-url`` name the hosts that receive the GitHub token (REST API,
GitHub Deployments, ghcr.io's ``/v2``) and the registry credentials found for GHCR. So
inside Actions (``GITHUB_ACTIONS=true``) a URL that came from a configuration file is
used only when it names the GitHub instance the run belongs to:

- ``api-url``: the host of ``$GITHUB_API_URL`` (default ``https://api.github.com``);
- ``registry-url``: that instance's container registry: ``ghcr.io`` on github.com,
  ``containers.HOST`` on GitHub Enterprise (``HOST`` from ``$GITHUB_SERVER_URL``).

Any other host is a :class:`~tagkeeper.errors.ConfigError` (exit 9) before a request is
sent. The command line (``--api-url``, ``--registry-url``, the action's inputs) may name
any host: the workflow that runs the command decides, not the code it checks out.
Outside Actions a configured URL is used as written (GitHub Enterprise, an emulator).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from tagkeeper.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from tagkeeper.config import Config

UrlKey = Literal["api-url", "registry-url"]
DEFAULT_API_URL = "https://api.github.com"
DEFAULT_SERVER_URL = "https://github.com"
GITHUB_COM_REGISTRY = "ghcr.io"


def in_actions(environ: Mapping[str, str]) -> bool:
    """Whether this process runs as a GitHub Actions step."""
    return environ.get("GITHUB_ACTIONS") == "true"


def _origin(url: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``url``, lower case, the scheme's port when none is written."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower().rstrip(".")
    if not host or parts.scheme.lower() not in ("http", "https"):
        return None
    return host, port or (443 if parts.scheme.lower() == "https" else 80)


def allowed_hosts(key: UrlKey, environ: Mapping[str, str]) -> frozenset[tuple[str, int]]:
    """The ``(host, port)`` pairs a configured ``key`` may name inside Actions."""
    if key == "api-url":
        found = _origin(environ.get("GITHUB_API_URL") or DEFAULT_API_URL)
        return frozenset({found} if found else set())
    server = _origin(environ.get("GITHUB_SERVER_URL") or DEFAULT_SERVER_URL)
    if server is None:
        return frozenset()
    host = GITHUB_COM_REGISTRY if server[0] == "github.com" else f"containers.{server[0]}"
    return frozenset({(host, 443)})


def _shown(hosts: frozenset[tuple[str, int]]) -> str:
    names = sorted(h if p in (443, 80) else f"{h}:{p}" for h, p in hosts)
    return ", ".join(names) or "(none: the runner's variable is not a URL)"


def configured_url(
    key: UrlKey, flag: str | None, config: Config, environ: Mapping[str, str]
) -> str | None:
    """The URL for ``key``: the command line's ``flag`` when given, else the
    configuration's when it may receive the credentials here (see the module docs),
    else ``None`` (the built-in default)."""
    if flag:
        return flag
    value = config.api_url if key == "api-url" else config.registry_url
    if not value or not in_actions(environ):
        return value
    origin = _origin(value)
    hosts = allowed_hosts(key, environ)
    if origin in hosts:
        return value
    from tagkeeper.untrusted import neutralise

    where = f"{config.source}: " if config.source else ""
    who = "the GitHub token" if key == "api-url" else "the GitHub token and registry credentials"
    runner = "$GITHUB_API_URL" if key == "api-url" else "$GITHUB_SERVER_URL's container registry"
    raise ConfigError(
        f"{where}{key} {neutralise(value, limit=200)} would receive {who}, but inside GitHub "
        f"Actions they go only to {runner} ({_shown(hosts)}) unless the command line names "
        "another host",
        hint=f"pass --{key} (or the action's {key} input) to mean it, or remove {key} "
        "from the configuration file",
    )



def check_configured_images(
    hosts: Iterable[str],
    config: Config,
    environ: Mapping[str, str],
    *,
    password_given: bool = False,
) -> None:
    """Refuse, inside Actions, to send registry credentials that name no host (``--username``
    with ``--password-stdin``, or ``TAGKEEPER_REGISTRY_USERNAME``/``_PASSWORD``) to a
    registry that only the configuration file names: ``hosts`` are the registry hosts of
    the images taken from it (``password_given``: the flags gave a password). Docker's
    ``config.json`` holds credentials per host, so those are never sent elsewhere."""
    from tagkeeper.registries.credentials import ENV_PASSWORD

    named = sorted({h for h in hosts if h})
    unbound = password_given or bool(environ.get(ENV_PASSWORD))
    if not named or not unbound or not in_actions(environ):
        return
    from tagkeeper.untrusted import neutralise

    where = f"{config.source}: " if config.source else ""
    shown = ", ".join(neutralise(h, limit=100) for h in named[:5])
    what = "--password-stdin" if password_given else f"${ENV_PASSWORD}"
    raise ConfigError(
        f"{where}image names the registry {shown}, which would receive the password of "
        f"{what}, but inside GitHub Actions a password that names no registry goes only "
        "to images named on the command line",
        hint="pass --image (or the action's image input) for each image, or log in with "
        "docker login (credentials per registry host) instead",
    )
