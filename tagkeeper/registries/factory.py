"""Opening the right backend for an image: GHCR, any OCI registry, or the local engine.

:func:`open_backend` is what the CLI (and a library user) calls::

    from tagkeeper.transport import build_client
    from tagkeeper.registries.factory import BackendOptions, open_backend

    with build_client() as client:
        backend = open_backend("ghcr.io/acme/app", BackendOptions(token=token), client)

The kind is ``options.kind`` when given, else detected from the image: ``ghcr.io/...``
is GHCR. Each kind has one opener function in :data:`OPENERS`; adding a backend means
writing ``_open_<kind>`` and one entry there (and, if it can be detected from the image
name, one line in :func:`detect_kind`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from tagkeeper.errors import UsageError
from tagkeeper.refs import parse_reference

# re-exported: the one token lookup lives in tagkeeper.secret (no heavy imports there)
from tagkeeper.secret import token_from_env as token_from_env  # noqa: PLC0414
from tagkeeper.transport import DEFAULT_MAX_WAIT

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

    from tagkeeper.inventory import Backend
    from tagkeeper.registries.ghcr_api import GhcrSession
    from tagkeeper.secret import Secret

Kind = Literal["ghcr", "oci", "local"]
KINDS: tuple[str, ...] = ("ghcr", "oci", "local")
GHCR_HOST = "ghcr.io"


@dataclass(frozen=True)
class BackendOptions:
    """How to reach an image's repository. ``None`` means "the default / from the env".

    ``kind``: force a backend instead of detecting it. ``api_url``/``registry_url``:
    GitHub Enterprise or an emulator. ``max_wait``: seconds a run may wait when told
    to (``retry-after``, a rate limit's reset) before it stops (exit 10).
    ``insecure``: the OCI registry's host may be plain http or have a certificate that
    is not verified (the caller's client must not verify it: see
    :func:`tagkeeper.transport.build_client`); never any other host.
    """

    kind: Kind | None = None
    token: Secret | None = None
    api_url: str | None = None
    registry_url: str | None = None
    manifest_cache: Path | None = None
    max_wait: float = DEFAULT_MAX_WAIT
    insecure: bool = False
    username: str | None = None  # OCI registries: with ``password``; else env / Docker config
    password: Secret | None = field(default=None, repr=False)
    # Which versions' creation times can change a decision (see tagkeeper.retention.times); backends
    # that pay a request per time read may skip the others. ``None``: read every time.
    time_needed: Callable[[frozenset[str]], bool] | None = field(default=None, repr=False)
    dangling: bool = False  # local backend: also list the repository's untagged leftovers
    environ: Mapping[str, str] | None = field(default=None, repr=False)
    # GHCR: what a run of several packages learns once (token owner, owner kinds, the
    # rate-limit budget); None: each backend asks for itself
    ghcr_session: GhcrSession | None = field(default=None, repr=False, compare=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def env(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ


def detect_kind(image: str, options: BackendOptions) -> Kind:
    """The backend kind for ``image``: ``options.kind``, else from the host."""
    if options.kind is not None:
        if options.kind not in KINDS:
            raise UsageError(
                f"unknown backend kind {options.kind!r}", hint="use ghcr, oci or local"
            )
        return options.kind
    ref = parse_reference(image)
    if ref.host == GHCR_HOST:
        return "ghcr"
    # Extension point: other backends add their detection here (e.g. a registry host
    # -> "oci").
    if ref.host is not None:  # any other registry host speaks the OCI distribution API
        return "oci"
    raise UsageError(
        f"cannot tell which registry {image!r} lives in",
        hint="images on ghcr.io are detected; for others pass --kind (ghcr, oci or local)",
    )


def _open_ghcr(image: str, options: BackendOptions, client: httpx.Client) -> Backend:
    """GHCR: the GitHub token for the REST API and ghcr.io; without one, Docker's
    credentials for the host (``docker login ghcr.io``) for ``/v2`` reads, else none."""
    from tagkeeper.registries import credentials as dockerauth
    from tagkeeper.registries.ghcr import DEFAULT_API_URL, DEFAULT_REGISTRY_URL, GhcrBackend
    from tagkeeper.transport import check_base_url

    env = options.env()
    api_url = options.api_url or env.get("GITHUB_API_URL") or DEFAULT_API_URL
    registry_url = options.registry_url or DEFAULT_REGISTRY_URL
    def docker_credentials() -> dockerauth.Credentials | None:  # read on first use only
        return dockerauth.resolve(
            parse_reference(image).host or GHCR_HOST,
            username=options.username,
            password=options.password,
            environ=env,
        )

    credentials = None if options.token else docker_credentials
    return GhcrBackend(
        image,
        client,
        token=options.token,
        credentials=credentials,
        api_url=check_base_url(api_url, what="--api-url"),
        registry_url=check_base_url(registry_url, what="--registry-url"),
        manifest_cache=options.manifest_cache,
        max_wait=options.max_wait,
        sleep=options.sleep,
        clock=options.clock,
        session=options.ghcr_session,
    )


Opener = Callable[[str, BackendOptions, "httpx.Client"], "Backend"]

# kind -> opener. Backends for "oci" and "local" register here.
OPENERS: dict[str, Opener] = {"ghcr": _open_ghcr}


def _open_local(image: str, options: BackendOptions, client: httpx.Client) -> Backend:
    """The local Docker engine (``DOCKER_HOST`` or the default socket); ``client`` unused."""
    from tagkeeper.registries.local import LocalEngine, connect, engine_repository

    del client
    repository = engine_repository(image)
    return LocalEngine(connect(), repository, dangling=options.dangling)


OPENERS["local"] = _open_local


def _open_oci(image: str, options: BackendOptions, client: httpx.Client) -> Backend:
    """Any OCI distribution registry; credentials from options, env, or Docker's config."""
    from tagkeeper.registries import credentials as dockerauth
    from tagkeeper.registries.oci import OciBackend

    ref = parse_reference(image)
    credentials = dockerauth.resolve(
        ref.host or "", username=options.username, password=options.password,
        environ=options.env(),
    )
    return OciBackend(
        ref,
        client,
        credentials=credentials,
        insecure=options.insecure,
        time_needed=options.time_needed,
        sleep=options.sleep,
        manifest_cache=options.manifest_cache,
        max_wait=options.max_wait,
    )


OPENERS["oci"] = _open_oci


def open_backend(image: str, options: BackendOptions, client: httpx.Client) -> Backend:
    """A :class:`~tagkeeper.inventory.Backend` for ``image`` (a repository, no tag).

    Pass ``options.kind`` to use what :func:`detect_kind` already answered (nothing is
    detected again).
    """
    kind = detect_kind(image, options)
    opener = OPENERS.get(kind)
    if opener is None:
        raise UsageError(
            f"the {kind!r} backend is not available in this build",
            hint="use an image on ghcr.io, or pass --kind ghcr",
        )
    return opener(image, options, client)
