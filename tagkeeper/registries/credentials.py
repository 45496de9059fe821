"""Registry credentials as Docker finds them: flags, environment, then ``config.json``.

Precedence, first match wins:

1. explicit values (``--username`` and ``--password-stdin``),
2. the environment: ``TAGKEEPER_REGISTRY_USERNAME`` and ``TAGKEEPER_REGISTRY_PASSWORD``,
3. Docker's ``config.json`` (``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``):
   a ``credHelpers`` entry for the host, else the ``credsStore``, else the ``auths`` entry
   (base64 ``auth`` of ``user:password``, or an ``identitytoken``).

Credential helpers are run as ``docker-credential-<name> get`` with the server name on
stdin (no shell), exactly as the Docker CLI does; they answer ``{"Username", "Secret"}``.
A ``Username`` of ``<token>`` means the secret is an identity (OAuth2 refresh) token.
Secrets travel as :class:`~tagkeeper.secret.Secret` and are never printed.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagkeeper.errors import AuthError, UsageError
from tagkeeper.secret import Secret, check_credential

ENV_USERNAME = "TAGKEEPER_REGISTRY_USERNAME"
ENV_PASSWORD = "TAGKEEPER_REGISTRY_PASSWORD"  # noqa: S105 - the variable's name, not a secret
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io")
_DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_HELPER_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and its secret; ``identity_token`` marks an OAuth2 refresh token."""

    username: str
    secret: Secret
    identity_token: bool = False
    source: str = ""  # where they came from, for messages: "flags", "DOCKER_CONFIG/config.json"

    def __repr__(self) -> str:
        kind = "identity token" if self.identity_token else "password"
        return f"Credentials(username={self.username!r}, {kind}=***, source={self.source!r})"


HelperRunner = Callable[[str, str], "str | None"]
"""Runs credential helper ``name`` for ``server``: its stdout, or ``None`` when it has none."""


def run_helper(name: str, server: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Run ``docker-credential-<name> get`` with ``server`` on stdin (no shell).

    The program is looked up on ``environ["PATH"]`` and runs with ``environ``
    (default: this process's environment).
    """
    env = dict(os.environ if environ is None else environ)
    program = f"docker-credential-{name}"
    path = shutil.which(program, path=env.get("PATH"))
    if path is None:
        raise AuthError(
            f"the Docker credential helper {program} is not installed",
            hint=f"install {program}, or remove it from your Docker config.json "
            "(credsStore/credHelpers), or pass --username and --password-stdin",
        )
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [path, "get"],
            input=server,
            capture_output=True,
            text=True,
            timeout=_HELPER_TIMEOUT,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise AuthError(
            f"the Docker credential helper {program} did not answer within {_HELPER_TIMEOUT:.0f}s",
            hint="unlock your keychain or pass --username and --password-stdin",
        ) from None
    except OSError as exc:
        raise AuthError(f"cannot run the Docker credential helper {program}: {exc}") from None
    if done.returncode != 0:
        text = (done.stdout + done.stderr).strip()
        if "credentials not found" in text.lower():
            return None
        raise AuthError(
            f"the Docker credential helper {program} failed (exit {done.returncode}): {text[:200]}",
            hint=f"run 'echo {server} | {program} get' to see why, or pass --username and "
            "--password-stdin",
        )
    return done.stdout


def config_path(environ: Mapping[str, str]) -> Path:
    """Where Docker keeps ``config.json`` for this environment."""
    folder = environ.get("DOCKER_CONFIG")
    if folder:
        return Path(folder) / "config.json"
    home = environ.get("HOME")
    base = Path(home) if home else Path.home()
    return base / ".docker" / "config.json"


def _normalise(key: str) -> str:
    """``https://host:5000/v1/`` -> ``host:5000``: how a config key names a registry."""
    text = key.strip()
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text.split("/", 1)[0].lower()


def _is_hub(host: str) -> bool:
    return host.lower() in _DOCKER_HUB_HOSTS


def _find_key(entries: Mapping[str, Any], host: str) -> str | None:
    """The key of ``entries`` that names ``host`` (exact first, then normalised)."""
    if host in entries:
        return host
    wanted = host.lower()
    for key in entries:
        if _normalise(key) == wanted:
            return key
    if _is_hub(host):
        for key in _DOCKER_HUB_KEYS:
            if key in entries:
                return key
    return None


def _from_helper(name: str, server: str, runner: HelperRunner, source: str) -> Credentials | None:
    out = runner(name, server)
    if out is None:
        return None
    try:
        data = json.loads(out)
    except (json.JSONDecodeError, RecursionError):
        raise AuthError(
            f"the Docker credential helper docker-credential-{name} printed no JSON",
        ) from None
    if not isinstance(data, dict):
        raise AuthError(f"the Docker credential helper docker-credential-{name} answered no object")
    username = data.get("Username")
    secret = data.get("Secret")
    if not isinstance(username, str) or not isinstance(secret, str) or not secret:
        return None
    if username == "<token>":
        return Credentials("<token>", Secret(secret), identity_token=True, source=source)
    return Credentials(username, Secret(secret), source=source)


def _from_auths(entry: Any, source: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    token = entry.get("identitytoken")
    encoded = entry.get("auth")
    username = entry.get("username")
    password = entry.get("password")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError(
                f"{source}: the 'auth' entry is not base64 of 'user:password'",
                hint="run 'docker login' again to rewrite it",
            ) from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise AuthError(
                f"{source}: the 'auth' entry has no ':' between user and password",
                hint="run 'docker login' again to rewrite it",
            )
    if isinstance(token, str) and token:
        name = username if isinstance(username, str) and username else "<token>"
        return Credentials(name, Secret(token), identity_token=True, source=source)
    if isinstance(username, str) and username and isinstance(password, str) and password:
        return Credentials(username, Secret(password), source=source)
    return None


def from_docker_config(
    host: str,
    *,
    environ: Mapping[str, str],
    runner: HelperRunner | None = None,
) -> Credentials | None:
    """Credentials for ``host`` from Docker's ``config.json``, or ``None``."""
    if runner is None:

        def runner(name: str, server: str) -> str | None:
            return run_helper(name, server, environ)

    path = config_path(environ)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuthError(f"{path}: cannot be read ({exc})") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise AuthError(
            f"{path}: not valid JSON ({exc})", hint="fix or remove the Docker config file"
        ) from None
    if not isinstance(data, dict):
        raise AuthError(f"{path}: not a JSON object", hint="fix or remove the Docker config file")
    source = str(path)
    helpers = data.get("credHelpers")
    if isinstance(helpers, dict):
        key = _find_key(helpers, host)
        if key is not None and isinstance(helpers[key], str) and helpers[key]:
            server = key if not _is_hub(host) else "https://index.docker.io/v1/"
            return _from_helper(helpers[key], server, runner, f"{source} (credHelpers)")
    auths = data.get("auths")
    auth_key = _find_key(auths, host) if isinstance(auths, dict) else None
    store = data.get("credsStore")
    if isinstance(store, str) and store:
        server = auth_key or ("https://index.docker.io/v1/" if _is_hub(host) else host)
        found = _from_helper(store, server, runner, f"{source} (credsStore)")
        if found is not None:
            return found
    if isinstance(auths, dict) and auth_key is not None:
        return _from_auths(auths[auth_key], f"{source} (auths)")
    return None


def resolve(
    host: str,
    *,
    username: str | None = None,
    password: Secret | None = None,
    environ: Mapping[str, str] | None = None,
    runner: HelperRunner | None = None,
) -> Credentials | None:
    """The credentials to use for ``host``, or ``None`` for anonymous access.

    Explicit values win, then the environment, then Docker's configuration.
    A user name without a password (or the reverse) is a :class:`UsageError`.
    """
    env = os.environ if environ is None else environ
    if username is not None or password is not None:
        if not username or not password:
            raise UsageError(
                "--username and --password-stdin go together",
                hint="pass both, or neither to use the environment or Docker's config.json",
            )
        return checked(Credentials(username, password, source="command line"))
    env_user = env.get(ENV_USERNAME) or None
    env_password = env.get(ENV_PASSWORD) or None
    if env_user is not None or env_password is not None:
        if not env_user or not env_password:
            raise UsageError(
                f"{ENV_USERNAME} and {ENV_PASSWORD} go together",
                hint="set both, or neither to use Docker's config.json",
            )
        return checked(Credentials(env_user, Secret(env_password), source="environment"))
    found = from_docker_config(host, environ=env, runner=runner)
    return checked(found) if found is not None else None


def checked(creds: Credentials) -> Credentials:
    """``creds`` when they can be sent as they are, else :class:`UsageError` (exit 2)
    naming where they came from (see :func:`tagkeeper.secret.check_credential`)."""
    where = f"the registry {{}} from {creds.source or 'the caller'}"
    check_credential(
        Secret(creds.username), what=where.format("user name"), kind="password"
    )
    if ":" in creds.username and not creds.identity_token:
        raise UsageError(
            f"{where.format('user name')} contains ':', which basic authentication cannot "
            "carry",
            hint="check the user name",
        )
    if creds.identity_token:
        check_credential(creds.secret, what=where.format("identity token"))
    else:
        check_credential(creds.secret, what=where.format("password"), kind="password")
    return creds
