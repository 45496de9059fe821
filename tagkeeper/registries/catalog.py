"""Which repositories a registry holds, for ``prune --image 'HOST/OWNER/*'`` and ``--all``.

- GHCR: the owner's container packages through the Packages REST API, one paginated
  listing (``GET /user/packages``, ``/orgs/ORG/packages`` or ``/users/USER/packages``,
  ``package_type=container``, pages of 100 followed through ``Link: rel="next"``). Each
  package comes with its version count and when it last changed. The owner lookup goes
  through the run's :class:`~tagkeeper.registries.ghcr_api.GhcrSession`, so the
  packages' own backends do not repeat it.
- Any OCI registry: ``GET /v2/_catalog`` with ``n`` and ``Link`` pagination. A registry
  that does not offer it (404, ``UNSUPPORTED``, or a refusal: many registries keep it to
  administrators) raises :class:`~tagkeeper.errors.UsageError` (exit 2): no rerun can
  succeed until the command names the images itself, and nothing was changed.

Names come from outside: one that is not a valid repository name is left out, with a
warning that shows it neutralised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tagkeeper.errors import RegistryError, UsageError
from tagkeeper.inventory import RequestStats
from tagkeeper.refs import _PATH_RE
from tagkeeper.registries.distribution import Registry, error_codes
from tagkeeper.transport import Sender, describe_response, json_body
from tagkeeper.untrusted import neutralise

if TYPE_CHECKING:
    from collections.abc import Iterator

    import httpx

    from tagkeeper.registries.factory import BackendOptions
    from tagkeeper.registries.ghcr_api import GhcrSession

__all__ = ["Listed", "Listing", "list_repositories"]

PAGE = 100
MAX_PAGES = 1_000  # 100,000 packages: a listing that claims more is not believed


@dataclass(frozen=True)
class Listed:
    """One repository the registry listed: its full image name and, where the registry
    says them (GHCR), its number of versions and when it last changed."""

    image: str
    versions: int | None = None
    updated: datetime | None = None

    @property
    def pages(self) -> int:
        """Listing pages of 100 versions its prune reads (at least 1)."""
        return max(1, math.ceil((self.versions or 0) / PAGE))


@dataclass(frozen=True)
class Listing:
    """What a registry listed, the names it left out and the requests it cost."""

    repositories: tuple[Listed, ...]
    warnings: tuple[str, ...] = ()
    requests: int = 0


def _left_out(bad: list[str], where: str) -> tuple[str, ...]:
    if not bad:
        return ()
    shown = ", ".join(repr(neutralise(b, limit=60)) for b in bad[:3])
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    return (f"{where} listed {len(bad)} name(s) that are not repository names, left out: "
            f"{shown}{more}",)


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def list_repositories(
    host: str,
    owner: str | None,
    *,
    kind: str,
    options: BackendOptions,
    client: httpx.Client,
    session: GhcrSession | None = None,
) -> Listing:
    """Every repository of ``owner`` on ``host`` (GHCR: ``owner`` is required), or of the
    whole registry (OCI: ``_catalog``; ``owner`` only filters)."""
    if kind == "ghcr":
        if owner is None:
            raise UsageError(
                f"on {host} the owner part of --image cannot be a wildcard",
                hint="the Packages API lists one owner's packages: write "
                f"--image '{host}/OWNER/*', once per owner",
            )
        return _ghcr(host, owner, options, client, session)
    if kind == "oci":
        return _oci(host, owner, options, client)
    raise UsageError(
        f"--image patterns and --all list a registry; the {kind} backend has no listing",
        hint="name each repository with --image",
    )


# -- GHCR ----------------------------------------------------------------------------------


def _ghcr(
    host: str,
    owner: str,
    options: BackendOptions,
    client: httpx.Client,
    session: GhcrSession | None,
) -> Listing:
    from tagkeeper.errors import AuthError
    from tagkeeper.registries.ghcr import DEFAULT_API_URL
    from tagkeeper.registries.ghcr_api import PackagesApi
    from tagkeeper.registries.pacing import DeletePacer
    from tagkeeper.transport import check_base_url

    if not options.token:
        raise AuthError(
            f"{host}/{owner}: no GitHub token to list the owner's packages",
            hint="set GITHUB_TOKEN (or GH_TOKEN, or pass --token) to a token with "
            "read:packages",
        )
    env = options.env()
    api_url = check_base_url(
        options.api_url or env.get("GITHUB_API_URL") or DEFAULT_API_URL, what="--api-url"
    )
    stats = RequestStats()
    sender = Sender(
        client,
        stats=stats,
        sleep=options.sleep,
        clock=options.clock,
        secret=options.token,
        where="the GitHub API",
        max_wait=options.max_wait,
    )
    api = PackagesApi(
        sender,
        display=f"{host}/{owner}",
        owner=owner,
        package="",
        api_url=api_url,
        token=options.token,
        pacer=DeletePacer(options.clock),
        max_wait=options.max_wait,
        sleep=options.sleep,
        clock=options.clock,
        session=session,
    )
    _, owner_url = api.owner_segment(owner)
    found: list[Listed] = []
    bad: list[str] = []
    url: str | None = f"{owner_url}/packages"
    params: dict[str, str | int] | None = {"package_type": "container", "per_page": PAGE}
    seen: set[str] = set()
    while url is not None:
        if url in seen or len(seen) >= MAX_PAGES:
            raise RegistryError(
                f"{host}/{owner}: the package listing loops or never ends",
                hint="GitHub's pagination looks broken; rerun later",
            )
        seen.add(url)
        response = api.rest("GET", url, kind="packages-list", params=params)
        api.expect_ok(response, "listing the owner's container packages")
        body = api.json(response, "the package listing")
        if not isinstance(body, list):
            raise RegistryError(f"{host}/{owner}: the package listing is not a JSON array")
        for item in body:
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str) or not _PATH_RE.fullmatch(name):
                bad.append(str(name))
                continue
            count = item.get("version_count")
            found.append(
                Listed(
                    f"{host}/{owner}/{name}",
                    count if isinstance(count, int) and count >= 0 else None,
                    _time(item.get("updated_at")),
                )
            )
        url, params = _next_url(response, api_url), None
    return Listing(
        tuple(sorted(found, key=lambda x: x.image)),
        _left_out(bad, f"{host}/{owner}"),
        stats.total,
    )


def _next_url(response: httpx.Response, api_url: str) -> str | None:
    link = response.links.get("next")
    target = link.get("url") if link else None
    if not target:
        return None
    if not target.startswith(api_url.rstrip("/") + "/"):
        raise RegistryError(
            "the package listing links outside the GitHub API "
            f"({neutralise(target, limit=120)})",
            hint="check --api-url",
        )
    return target


# -- OCI -----------------------------------------------------------------------------------


class _CatalogRegistry(Registry):
    """The registry-wide ``/v2/_catalog`` (scope ``registry:catalog:*``)."""

    def _scope(self, action: str) -> str:
        del action
        return "registry:catalog:*"

    def names(self, page_size: int) -> Iterator[httpx.Response]:
        return self._pages(f"_catalog?n={page_size}", "catalog", "the catalog")


def _oci(
    host: str, owner: str | None, options: BackendOptions, client: httpx.Client
) -> Listing:
    from tagkeeper.errors import AuthError
    from tagkeeper.registries import credentials as dockerauth

    stats = RequestStats()
    sender = Sender(
        client,
        stats=stats,
        sleep=options.sleep,
        clock=options.clock,
        where=host,
        max_wait=options.max_wait,
    )
    registry = _CatalogRegistry(
        sender,
        host=host,
        name="",
        display=host,
        insecure=options.insecure,
        credentials=dockerauth.resolve(
            host, username=options.username, password=options.password, environ=options.env()
        ),
    )
    not_offered = UsageError(
        f"{host} does not list its repositories to tagkeeper (GET /v2/_catalog)",
        hint=f"name each repository: --image {host}/NAME, repeated (many registries offer "
        "the catalog to administrators only, or not at all)",
    )
    found: list[Listed] = []
    bad: list[str] = []
    try:
        for response in registry.names(PAGE):
            if response.status_code in (401, 403, 404, 405) or (
                error_codes(response) & {"UNSUPPORTED", "UNAUTHORIZED", "DENIED"}
            ):
                raise UsageError(
                    f"{not_offered.message}: it answered {response.status_code}",
                    hint=not_offered.hint,
                )
            if response.status_code != 200:
                raise RegistryError(
                    f"{host}: cannot list the catalog "
                    f"({describe_response(response, registry.scrub)})",
                    hint="the registry may be having trouble; rerun later",
                )
            body = json_body(response, what=f"{host}: the catalog", scrub=registry.scrub)
            names = body.get("repositories") if isinstance(body, dict) else None
            if not isinstance(names, list):
                raise RegistryError(f"{host}: the catalog has no 'repositories' array")
            for name in names:
                if not isinstance(name, str) or not _PATH_RE.fullmatch(name):
                    bad.append(str(name))
                elif owner is None or name.startswith(owner + "/"):
                    found.append(Listed(f"{host}/{name}"))
    except AuthError as exc:  # refused the catalog scope: kept to administrators
        raise UsageError(
            f"{not_offered.message}: {exc.message}", hint=not_offered.hint
        ) from None
    return Listing(
        tuple(sorted(set(found), key=lambda x: x.image)), _left_out(bad, host), stats.total
    )
